"""Views of the Tokenization tab: pure functions from tokenization data to a plotly Figure or to HTML.

The token chips are HTML (thousands of small coloured spans read better as text than as a plot);
every string that comes from the user or a vocabulary is escaped. Only the first `char_limit`
characters become chips, so a 100k-character text never sends the browser 100k elements.
"""

from __future__ import annotations

import html
from typing import Mapping, Sequence

import plotly.graph_objects as go

from playground.figures.style import styled
from playground.tokenization import (
    BYTES_NAME,
    BpeTraining,
    ChatTemplateView,
    Comparison,
    CostEstimate,
    Tokenization,
    TokenizerComparison,
    piece_to_bytes,
    readable_bytes,
    segmentation_at,
    visible,
)

CHIP_CHAR_LIMIT = 1000  # characters of text shown as chips (counts always cover the whole text)
JSON_TOKEN_LIMIT = 5000  # per-token lists in the page's JSON; ~1 s of browser time per MB of JSON
ALIGNMENT_CHAR_LIMIT = 80  # characters drawn in the alignment figure (~10 px each: token labels fit)
SHADES = ("#dbeafe", "#fde68a", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa")  # neighbour separation only
ROLE_COLOURS = {"content": "#bbf7d0", "template": "#fde68a", "special": "#374151"}

# Scoped to the gr.HTML component by gradio (css_template).
CHIP_CSS = """
.pgt-legend { font-size: 13px; color: var(--body-text-color-subdued); margin: 2px 0 8px; line-height: 1.6; }
.pgt-note { font-size: 13px; margin: 4px 0 8px; padding: 4px 8px; border-left: 3px solid #f59e0b; }
.pgt-error { font-size: 13px; margin: 4px 0 8px; padding: 4px 8px; border-left: 3px solid #dc2626; color: #b91c1c; }
.pgt-row { margin: 6px 0 14px; }
.pgt-head { font-size: 14px; font-weight: 600; margin-bottom: 3px; }
.pgt-head span { font-weight: 400; color: var(--body-text-color-subdued); }
.pgt-chips { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 14px;
             line-height: 2.0; word-break: break-word; max-height: 420px; overflow-y: auto; padding: 2px; }
.pgt-t { position: relative; color: #111827; border-radius: 3px; padding: 1px 1px; margin: 0 1px;
         white-space: pre; cursor: default; }
.pgt-t:focus { outline: 2px solid #2563eb; }
.pgt-detail { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px;
              white-space: pre-line; min-height: 1.5em; padding: 4px 8px; margin: 4px 0 8px; border-radius: 6px;
              border: 1px solid var(--border-color-primary); background: var(--block-background-fill); }
.pgt-s0 { background: #dbeafe; } .pgt-s1 { background: #fde68a; } .pgt-s2 { background: #bbf7d0; }
.pgt-s3 { background: #fbcfe8; } .pgt-s4 { background: #ddd6fe; } .pgt-s5 { background: #fed7aa; }
.pgt-special { background: #374151; color: #f9fafb; border: 1px dashed #9ca3af; }
.pgt-diff { box-shadow: inset 3px 0 0 #dc2626; padding-left: 4px; }
.pgt-new { outline: 2px solid #dc2626; }
.pgt-gap { color: #9ca3af; white-space: pre; }
.pgt-split { border-bottom: 2px solid #6b7280; padding-bottom: 1px; white-space: nowrap; }
.pgt-char { font-family: system-ui, sans-serif; margin: 0 2px 0 1px; }
.pgt-content { background: #bbf7d0; } .pgt-template { background: #fde68a; }
.pgt-merge { font-size: 15px; margin: 4px 0 8px; }
.pgt-merge code { background: #e5e7eb; color: #111827; padding: 1px 4px; border-radius: 3px; }
"""

# A selected chip (click, tap or Tab key) pins its details in the box, for touch screens and keyboards
# where a hover tooltip does not exist. One listener on the component: it survives value updates.
CHIP_JS = """
element.addEventListener('focusin', (event) => {
  const chip = event.target.closest('.pgt-t');
  const box = element.querySelector('.pgt-detail');
  if (chip && box && chip.title) { box.textContent = chip.title; }
});
"""
DETAIL_BOX = '<div class="pgt-detail">Select a token (click it, or Tab to it) to pin its details here.</div>'

LEGEND = (
    '<div class="pgt-legend">Hover a token (or click it) for its id, exact text, bytes and character span. '
    "Colours only tell neighbouring tokens apart. "
    '<span class="pgt-t pgt-special">dark</span> = special token; '
    '<span class="pgt-t pgt-s0 pgt-diff">red edge</span> = a token boundary some other tokenizer does not have '
    "(whitespace ignored); "
    '<span class="pgt-gap">grey</span> = text the tokenizer dropped; '
    "<code>&lt;F0&gt;</code> = a byte that is only part of a character; "
    '<span class="pgt-split"><span class="pgt-char">🤗</span></span> = a character split into byte tokens, drawn '
    "as itself before them; · space, ↵ newline, → tab.</div>"
)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _token_title(tokens: Tokenization, index: int, differs: bool) -> str:
    data = tokens.bytes_of(index)
    start, end = int(tokens.starts[index]), int(tokens.ends[index])
    lines = [
        f"token #{index} · id {tokens.ids[index]}",
        f"piece: {tokens.pieces[index]}",
        f"text: {_chip_text(tokens, index)}",
        "bytes: " + (" ".join(f"{value:02X}" for value in data) if data else "(none: inserted by the tokenizer)"),
        f"characters {start}–{end}" + (" (rest of the previous token's character)" if start == end and data else ""),
    ]
    if index in tokens.special:
        lines.append("special token")
    if differs:
        lines.append("boundary not shared by every tokenizer")
    return "\n".join(lines)


def _chip_text(tokens: Tokenization, index: int) -> str:
    shown = tokens.shown_text(index)
    return shown if shown else tokens.pieces[index]  # an inserted special token has no text: show its name


def _chip(tokens: Tokenization, index: int, css_class: str, differs: bool = False) -> str:
    classes = f"pgt-t {css_class}" + (" pgt-diff" if differs else "")
    text = _chip_text(tokens, index)
    line_break = "<br>" if "↵" in text and index not in tokens.special else ""
    return (f'<span class="{classes}" tabindex="0" title="{_escape(_token_title(tokens, index, differs))}">'
            f"{_escape(text)}</span>{line_break}")


def _split_groups(tokens: Tokenization, shown: int) -> list[tuple[int, int, str]]:
    """(first token, last token, characters) for each run of tokens holding a split character (an emoji in 3-4 byte
    tokens); runs that share a token are one group."""
    groups: list[tuple[int, int, str]] = []
    for split in tokens.split_characters():
        if split.first_token >= shown:
            break
        if groups and split.first_token <= groups[-1][1]:
            first, last, characters = groups[-1]
            groups[-1] = (first, max(last, split.last_token), characters + split.char)
        else:
            groups.append((split.first_token, split.last_token, split.char))
    return groups


def _split_title(characters: str) -> str:
    return (f"{characters}: no single token holds {'this character' if len(characters) == 1 else 'these characters'}; "
            f"the tokens after it are its UTF-8 bytes ({' '.join(f'{b:02X}' for b in characters.encode('utf-8'))})")


def chips_html(tokens: Tokenization, differing: frozenset[int] = frozenset(), char_limit: int = CHIP_CHAR_LIMIT,
               role_classes: Sequence[str] | None = None) -> str:
    """The first `char_limit` characters' tokens as chips; text a lossy tokenizer dropped shown grey."""
    shown = tokens.tokens_starting_before(char_limit)
    starts, ends = tokens.starts[:shown].tolist(), tokens.ends[:shown].tolist()
    parts = ['<div class="pgt-chips">']
    groups = {group[0]: group for group in _split_groups(tokens, shown)}  # first token -> (first, last, characters)
    group_end = -1
    position = 0
    for index in range(shown):
        start = starts[index]
        if index in groups:  # a character split into byte tokens: itself, then its bytes, underlined together
            _, group_end, characters = groups[index]
            parts.append(f'<span class="pgt-split" title="{_escape(_split_title(characters))}">'
                         f'<span class="pgt-char">{_escape(characters)}</span>')
        if start > position:  # a gap: whitespace (or other text) the tokenizer dropped
            parts.append(f'<span class="pgt-gap">{_escape(visible(tokens.text[position:start]))}</span>')
        if role_classes is not None:
            css_class = role_classes[index]
        else:
            css_class = "pgt-special" if index in tokens.special else f"pgt-s{index % len(SHADES)}"
        parts.append(_chip(tokens, index, css_class, index in differing))
        if index == group_end:
            parts.append("</span>")
        position = max(position, ends[index])
    if group_end >= shown:  # the chip view was cut inside a split character
        parts.append("</span>")
    if shown == len(tokens) and position < len(tokens.text):
        parts.append(f'<span class="pgt-gap">{_escape(visible(tokens.text[position:]))}</span>')
    parts.append("</div>")
    return "".join(parts)


def _truncation_note(text_length: int, char_limit: int) -> str:
    if text_length <= char_limit:
        return ""
    return (f'<div class="pgt-note">The text has {text_length:,} characters: the chips show the tokens of the first '
            f"{char_limit:,} only, so the page stays responsive. Every count covers the whole text; the JSON lists the "
            f"first {JSON_TOKEN_LIMIT:,} tokens per tokenizer (the <code>tokenize_full</code> API returns them all)."
            "</div>")


def comparison_html(tokenizations: Sequence[Tokenization], comparison: Comparison, errors: Mapping[str, str],
                    char_limit: int = CHIP_CHAR_LIMIT) -> str:
    """One row of chips per tokenizer, the same text aligned by rows, differing boundaries marked."""
    errors_html = "".join(f'<div class="pgt-error"><b>{_escape(name)}</b>: {_escape(message)}</div>'
                          for name, message in errors.items())
    if not tokenizations or not tokenizations[0].text:
        return ('<div class="pgt-legend">Type or paste some text above (or pick an example) to see its tokens.</div>'
                + errors_html)
    parts = [LEGEND, DETAIL_BOX, _truncation_note(len(tokenizations[0].text), char_limit)]
    for tokens in tokenizations:
        counts = tokens.counts
        shown = tokens.tokens_starting_before(char_limit)
        differing = comparison.differing.get(tokens.name, frozenset())
        more = f", chips for the first {shown:,}" if shown < len(tokens) else ""
        parts.append(
            f'<div class="pgt-row"><div class="pgt-head">{_escape(tokens.label)} '
            f"<span>{counts.tokens:,} tokens{more} · {counts.chars_per_token:.2f} characters per token"
            f"{' · lossless' if tokens.lossless else ' · lossy (normalises or drops text)'}"
            f"{f' · {len(differing):,} boundaries not shared' if differing else ''}</span></div>"
            f"{chips_html(tokens, differing, char_limit)}</div>")
    return "".join(parts) + errors_html


def chat_html(view: ChatTemplateView, char_limit: int = CHIP_CHAR_LIMIT) -> str:
    """The rendered prompt's tokens coloured by where they come from: message text, template, special."""
    classes = [f"pgt-{role}" if role != "special" else "pgt-special" for role in view.roles]
    legend = ('<div class="pgt-legend"><span class="pgt-t pgt-content">green</span> = your messages\' text; '
              '<span class="pgt-t pgt-template">amber</span> = text the template added; '
              '<span class="pgt-t pgt-special">dark</span> = special tokens. Hover a token for its id and bytes.</div>')
    return (legend + DETAIL_BOX + _truncation_note(len(view.prompt), char_limit)
            + chips_html(view.tokens, char_limit=char_limit, role_classes=classes))


def _piece_text(piece: str) -> str:
    return readable_bytes(piece_to_bytes(piece))


def bpe_step_html(training: BpeTraining, step: int) -> str:
    """Merge `step` (1-based): the pair, its count, and the text's tokens just before and after it."""
    if not training.merges:
        return '<div class="pgt-legend">The training text had no pair to merge: use a longer text.</div>'
    merge = training.merges[step - 1]
    before = segmentation_at(training, step - 1)
    after = segmentation_at(training, step)
    header = (f'<div class="pgt-merge">Merge <b>{step}</b> of {len(training.merges)}: '
              f"<code>{_escape(_piece_text(merge.left))}</code> + <code>{_escape(_piece_text(merge.right))}</code> → "
              f"<code>{_escape(_piece_text(merge.merged))}</code>, the most frequent pair at this step "
              f"({merge.count:,} times in the training words). The text goes from "
              f"{len(before):,} to {len(after):,} tokens.</div>")
    return (header + '<div class="pgt-legend">Red outline: tokens this merge just created.</div>'
            + _segmentation_row("before", before) + _segmentation_row("after", after))


def _segmentation_row(title: str, pieces: Sequence[tuple[str, bool]]) -> str:
    chips = []
    for index, (piece, is_new) in enumerate(pieces):
        text = _piece_text(piece)
        chips.append(f'<span class="pgt-t pgt-s{index % len(SHADES)}{" pgt-new" if is_new else ""}" tabindex="0" '
                     f'title="{_escape(f"{text} · {len(piece_to_bytes(piece))} bytes")}">{_escape(text)}</span>'
                     + ("<br>" if "↵" in text else ""))
    return (f'<div class="pgt-row"><div class="pgt-head">{title} <span>({len(pieces):,} tokens)</span></div>'
            f'<div class="pgt-chips">{"".join(chips)}</div></div>')


# ---------------------------------------------------------------------------------------------
# Tables (rows for gr.Dataframe)
# ---------------------------------------------------------------------------------------------

COUNT_HEADERS = ["tokenizer", "tokens", "characters", "words", "chars / token", "words / token", "% of context",
                 "unshared boundaries"]
MERGE_HEADERS = ["merge", "left", "right", "new token", "count"]
COST_HEADERS = ["price row", "input tokens", "output tokens", "requests", "input cost", "output cost", "total cost"]


def counts_rows(result: TokenizerComparison) -> list[list[object]]:
    rows = []
    for tokens in result.tokenizations:
        counts = tokens.counts
        context = (f"{counts.context_percent:.2f}% of {counts.context_length:,}"
                   if counts.context_percent is not None else "—")
        rows.append([tokens.label, counts.tokens, counts.characters, counts.words, round(counts.chars_per_token, 2),
                     round(counts.words_per_token, 2), context, len(result.comparison.differing.get(tokens.name, ()))])
    return rows


def merge_rows(training: BpeTraining) -> list[list[object]]:
    return [[merge.rank + 1, _piece_text(merge.left), _piece_text(merge.right), _piece_text(merge.merged), merge.count]
            for merge in training.merges]


def cost_rows(estimates: Sequence[CostEstimate]) -> list[list[object]]:
    return [[item.name, item.input_tokens, item.output_tokens, item.requests, round(item.input_cost, 4),
             round(item.output_cost, 4), round(item.total_cost, 4)] for item in estimates]


# ---------------------------------------------------------------------------------------------
# Plotly figures
# ---------------------------------------------------------------------------------------------


def _empty_figure(title: str, message: str, height: int = 220) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False})
    return styled(figure, title, height)


def _lane_label(label: str) -> str:
    return label.replace(": ", ":<br>").replace(" (", "<br>(")  # long tokenizer names on short lines


def alignment_figure(tokenizations: Sequence[Tokenization], comparison: Comparison,
                     char_limit: int = ALIGNMENT_CHAR_LIMIT) -> go.Figure:
    """Tokens as bars along the character axis, one lane per tokenizer, so splits line up."""
    if not tokenizations or not tokenizations[0].text:
        return _empty_figure("Where each tokenizer splits the text",
                             "Type some text to see where each tokenizer splits it.")
    length = min(len(tokenizations[0].text), char_limit)
    lanes = [_lane_label(tokens.label) for tokens in tokenizations]
    categories = {"token": ([], [], [], [], [], []), "differs": ([], [], [], [], [], []),
                  "special": ([], [], [], [], [], [])}
    for tokens in tokenizations:
        differing = comparison.differing.get(tokens.name, frozenset())
        shown = tokens.tokens_starting_before(length)
        starts, ends = tokens.starts[:shown + 4].tolist(), tokens.ends[:shown + 4].tolist()
        for index in range(shown):
            start, end = starts[index], ends[index]
            if end == start:
                continue  # the rest of a character: drawn as part of the token that started it
            extra = 0  # following tokens that hold the rest of this token's last character (empty spans)
            while index + 1 + extra < len(starts) and starts[index + 1 + extra] == ends[index + 1 + extra] == end:
                extra += 1
            if index in tokens.special:
                kind = "special"
            elif index in differing:
                kind = "differs"
            else:
                kind = "token"
            lane, base, width, text, hover, shade = categories[kind]
            lane.append(_lane_label(tokens.label))
            base.append(start)
            width.append(min(end, length) - start)
            text.append("" if tokens.name == BYTES_NAME else _chip_text(tokens, index))  # one byte: no room
            hover.append(f"{_escape(tokens.label)}<br>token #{index} · id {tokens.ids[index]}<br>"
                         f"text: {_escape(_chip_text(tokens, index))}<br>characters {start}–{end}"
                         + (f"<br>+{extra} more token(s) holding the rest of this character's bytes" if extra else ""))
            shade.append(SHADES[index % 2])
    figure = go.Figure()
    styles = {
        "token": ("token (two shades only separate neighbours)", None, "#1f2937"),
        "differs": ("token starting at a boundary another tokenizer lacks", "#fca5a5", "#111827"),
        "special": ("special token", "#374151", "#f9fafb"),
    }
    for kind, (lane, base, width, text, hover, shade) in categories.items():
        if not lane:
            continue
        name, colour, text_colour = styles[kind]
        figure.add_trace(go.Bar(
            y=lane, x=width, base=base, orientation="h", name=name, text=text, textposition="inside",
            insidetextanchor="middle", textangle=0, textfont={"color": text_colour}, hovertext=hover,
            hoverinfo="text", marker={"color": colour or shade, "line": {"color": "#ffffff", "width": 1.5}},
        ))
    styled(figure, f"Where each tokenizer splits the first {length} characters", 170 + 100 * len(lanes))  # three-line lane labels, also at presenter sizes
    figure.update_layout(
        barmode="overlay", bargap=0.25,
        xaxis={"title": {"text": "character position in the text"}, "range": [0, length]},
        yaxis={"title": {"text": "tokenizer"}, "categoryorder": "array", "categoryarray": lanes[::-1],
               "automargin": True},
        legend={"yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0},
        uniformtext={"minsize": 12, "mode": "hide"},  # labels that do not fit are hidden, never shrunk
        margin={"t": 100},
    )
    return figure


def bpe_curve_figure(training: BpeTraining | None, step: int) -> go.Figure:
    """Tokens the text needs as the vocabulary grows, one point per merge, the chosen step marked."""
    if training is None or not training.merges:
        return _empty_figure("Bigger vocabulary, fewer tokens",
                             "No merges learned yet: train on a text with repeated pairs.")
    steps = list(range(len(training.tokens_per_step)))
    vocab = [training.vocab_size_at(n) for n in steps]
    tokens = list(training.tokens_per_step)
    characters = max(len(training.text), 1)
    hover = [f"after {n} merges<br>vocabulary {v:,}<br>{t:,} tokens for the text<br>{characters / t:.2f} characters "
             f"per token" if t else f"after {n} merges" for n, v, t in zip(steps, vocab, tokens)]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=vocab, y=tokens, mode="lines", name="tokens needed for the text",
                                hovertext=hover, hoverinfo="text", line={"color": "#2563eb", "width": 2}))
    figure.add_trace(go.Scatter(x=[vocab[step]], y=[tokens[step]], mode="markers", name=f"after merge {step}",
                                hovertext=[hover[step]], hoverinfo="text",
                                marker={"color": "#dc2626", "size": 12, "symbol": "diamond"}))
    styled(figure, "Bigger vocabulary, fewer tokens", 380)
    figure.update_layout(
        xaxis={"title": {"text": f"vocabulary size ({training.alphabet_size} bytes + merges)"}},
        yaxis={"title": {"text": "tokens for the text"}, "rangemode": "tozero"},
    )
    return figure

"""Tokenization tab: token chips for several tokenizers side by side, the chat template's tokens, a BPE
merge replay and a cost estimator. Handlers are thin adapters over playground.tokenization (numbers),
playground.figures.tokenization (views) and playground.runtime.tokenizers (loading)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gradio as gr

from playground import tokenization as tok
from playground.engine.tokenization import engine_tokenization
from playground.figures import tokenization as views
from playground.limits import check_text_length
from playground.runtime import ModelLoadError
from playground.runtime.tokenizers import GEMMA, MINILM, load_tokenizers, tokenizer_label, unavailable_reason
from playground.ui.common import LATEX_DELIMITERS, explanation
from playground.ui.context import AppContext
from playground.ui.engine import engine_or_local
from playground.ui.errors import user_errors

EXAMPLES_FILE = Path(__file__).resolve().parents[2] / "assets" / "tokenization" / "examples.json"
MODEL = "model"  # the loaded model's own tokenizer
DEFAULT_MESSAGES = [
    ["system", "You are a concise assistant."],
    ["user", "What is a token?"],
    ["assistant", "A piece of text the model reads as one unit."],
]
DEFAULT_MERGES = 300
# the counts table's columns (views.COUNT_HEADERS): the tokenizer's name wraps in the first
COUNT_WIDTHS = ["26%", "8%", "10%", "8%", "11%", "11%", "14%", "12%"]

EXPLANATION = r"""
### What you are seeing
A language model never sees letters. A **tokenizer** cuts text into pieces from a fixed vocabulary of
$V$ entries and hands the model their ids: $x \mapsto (t_1, \dots, t_n)$ with $t_i \in \{0, \dots, V-1\}$.
The context window, the compute and the bill are all counted in $n$, so *characters per token*
$= |x| / n$ is the number to watch. Byte-pair encoding (BPE) builds its vocabulary from the 256 bytes
by merging, again and again, the most frequent neighbouring pair: $(a, b)^\star = \arg\max_{(a, b)}
\mathrm{count}(a\,b)$, and $ab$ becomes a new token.

**Takeaway:** the same text costs a different number of tokens under each tokenizer, and non-English
text, code, numbers and rare words usually cost the most.
"""


# Every visitor's page trains the same default BPE: keep the last few results (they are immutable).


def load_examples() -> dict[str, str]:
    return json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))


def tokenizer_choices() -> list[tuple[str, str]]:
    gemma = tokenizer_label(GEMMA) + (" (not installed)" if unavailable_reason(GEMMA) else "")
    return [("Loaded model's tokenizer", MODEL), (tokenizer_label(MINILM), MINILM), (gemma, GEMMA),
            (tok.BYTES_LABEL, tok.BYTES_NAME)]


def default_tokenizers() -> list[str]:
    return [MODEL, MINILM] + ([] if unavailable_reason(GEMMA) else [GEMMA]) + [tok.BYTES_NAME]


# ---------------------------------------------------------------------------------------------
# Adapters (no math here: it is all in playground.tokenization)
# ---------------------------------------------------------------------------------------------


def _model_tokenizer(ctx: AppContext) -> tok.NamedTokenizer:
    loaded = ctx.model()
    name = loaded.spec.label.split(" (")[0]
    label = f"Loaded model: {name} ({tok.tokenizer_kind(loaded.tokenizer)})"
    return tok.NamedTokenizer(MODEL, label, loaded.tokenizer, loaded.context_length)


def _extra_names(extra: str) -> list[str]:
    return list(dict.fromkeys(name.strip() for name in re.split(r"[,\n]", extra or "") if name.strip()))


def selected_tokenizers(ctx: AppContext, names: list[str],
                        extra: str) -> tuple[list[tok.NamedTokenizer], dict[str, str]]:
    """The chosen tokenizers in a fixed order; one that cannot load becomes an error, never a failure."""
    chosen: list[tok.NamedTokenizer] = []
    errors: dict[str, str] = {}
    if MODEL in names:
        try:
            chosen.append(_model_tokenizer(ctx))
        except ModelLoadError as error:
            errors["Loaded model's tokenizer"] = str(error)
    wanted = [name for name in (MINILM, GEMMA) if name in names] + _extra_names(extra)
    loaded, failures = load_tokenizers(wanted, ctx.settings)
    for name, tokenizer in loaded.items():
        kind = "" if name in (MINILM, GEMMA) else f" ({tok.tokenizer_kind(tokenizer)})"  # built-in labels name it
        chosen.append(tok.NamedTokenizer(name, tokenizer_label(name) + kind, tokenizer))
    errors.update({tokenizer_label(name): message for name, message in failures.items()})
    return chosen, errors


def _model_token_count(result: tok.TokenizerComparison) -> int:
    counts = {item.name: item.counts.tokens for item in result.tokenizations}
    return counts.get(MODEL, next(iter(counts.values()), 0))


def compare_selected(ctx: AppContext, text: str, names: list[str], extra: str,
                     add_special: bool) -> tok.TokenizerComparison:
    text, names = text or "", list(names or [])
    engine_tables = []
    if text and MODEL in names and ctx.engine is not None:  # the engine's tokenizer is the model's
        engine_tables = engine_or_local(ctx, lambda engine: [engine_tokenization(engine, text, bool(add_special))],
                                        lambda: [])
        names = [name for name in names if name != MODEL] if engine_tables else names
    # An empty text is the empty state: nothing to load, nothing to wait for.
    tokenizers, errors = selected_tokenizers(ctx, names, extra) if text else ([], {})
    return tok.tokenize_all(text, tokenizers, include_bytes=bool(text) and tok.BYTES_NAME in names,
                            add_special_tokens=bool(add_special), errors=errors, tokenized=engine_tables)


def tokenize_view(ctx: AppContext, text: str, names: list[str], extra: str, add_special: bool) -> tuple[Any, ...]:
    result = compare_selected(ctx, text, names, extra, add_special)
    return (views.counts_rows(result), views.comparison_html(result.tokenizations, result.comparison, result.errors),
            views.alignment_figure(result.tokenizations, result.comparison),
            result.payload(views.CHIP_CHAR_LIMIT, views.JSON_TOKEN_LIMIT), _model_token_count(result))


def tokenize_full(ctx: AppContext, text: str, names: list[str], extra: str, add_special: bool) -> dict[str, Any]:
    """Every token of every tokenizer, for scripts: no view, no cap on the per-token lists, so the text itself is
    bounded (`tokenize_full_chars`, tighter on a public Space): the JSON is ~40 bytes per character."""
    check_text_length("tokenize_full's text", text or "", ctx.limits.tokenize_full_chars)
    return compare_selected(ctx, text, names, extra, add_special).payload(views.CHIP_CHAR_LIMIT)


def chat_view(ctx: AppContext, rows: list[list[Any]], add_generation_prompt: bool) -> tuple[Any, ...]:
    messages = tok.clean_messages(rows or [])
    loaded = ctx.model()
    view = tok.chat_template_view(loaded.tokenizer, messages, bool(add_generation_prompt), MODEL)
    summary = (f"**{len(view.tokens):,} tokens** in the prompt: {view.role_count('content'):,} from your messages, "
               f"{view.role_count('template'):,} of template text, {view.role_count('special'):,} special. "
               f"The messages' texts alone take {view.content_alone_tokens:,} tokens, so the template costs "
               f"**{view.overhead_tokens:,} tokens** here ({loaded.spec.label.split(' (')[0]}'s template).")
    return summary, views.chat_html(view), view.prompt, view.payload()


BPE_LIVE_CHARS = 2_000  # the BPE explorer follows typing up to here (a longer step view is too many chips to redraw)


def step_slider(merges: int, value: int = 1) -> Any:
    """The merge-step slider's update. gradio refuses a slider whose minimum equals its maximum (1..1), so
    0 or 1 merges still get 1..2 (bpe_step_view clamps the step to the merges there are)."""
    return gr.Slider(maximum=max(merges, 2), value=value)


def bpe_view(text: str, source: str, merges: int) -> tuple[Any, ...]:
    text = text or ""
    if not text.strip():
        empty = "Type or pick some text above: the explorer shows how *that* text is split at every merge."
        return empty, step_slider(0), "", views.bpe_curve_figure(None, 0), [], {}, None
    training = tok.train_bpe(text if source == "text" else tok.example_corpus(), text, int(merges))
    agreement = (f"✓ Our Python replay of the training picks the same {len(training.merges):,} merges in the same "
                 "order as the `tokenizers` trainer." if training.matches_trainer else
                 f"✗ Our replay first differs from the trainer at merge {training.first_mismatch}.")
    corpus_name = "your text" if source == "text" else "Python's language reference (shipped with Python)"
    notes = [f"Trained on {'the first ' if training.corpus_truncated else ''}{training.corpus_chars:,} characters of "
             f"{corpus_name}: {len(training.merges):,} merges, "
             f"vocabulary {training.vocab_size_at(len(training.merges)):,}. "
             f"Your text: {training.tokens_per_step[0]:,} bytes → {training.tokens_per_step[-1]:,} tokens.", agreement]
    if training.text_truncated:
        notes.append(f"The explorer segments the first {tok.BPE_TEXT_CHAR_LIMIT:,} characters of your text.")
    step = training.first_visible_step()  # opening on a merge that changes nothing in the text teaches nothing
    return ("\n\n".join(notes), step_slider(len(training.merges), step),
            *bpe_step_view(training, step), views.merge_rows(training), training.payload(), training)


def bpe_follow(text: str, source: str, merges: int) -> tuple[Any, ...]:
    """The BPE explorer as the text is edited: re-segmented at once up to BPE_LIVE_CHARS characters; a longer text
    (its step view is tens of thousands of chips) marks the view out of date until Train BPE is pressed."""
    if len(text or "") > BPE_LIVE_CHARS:
        return (f"⚠ The text above changed ({len(text):,} characters): the explorer below still shows the previous "
                f"text. Press **Train BPE** to segment this one (it follows your typing up to {BPE_LIVE_CHARS:,} "
                "characters).", *([gr.skip()] * 6))
    return bpe_view(text, source, merges)


def bpe_step_view(training: tok.BpeTraining | None, step: int) -> tuple[str, Any]:
    if training is None or not training.merges:
        return "", gr.skip()
    step = max(1, min(int(step), len(training.merges)))
    return views.bpe_step_html(training, step), views.bpe_curve_figure(training, step)


def cost_view(rows: list[list[Any]], input_tokens: float, output_tokens: float, requests: float) -> tuple[Any, ...]:
    prices = tok.parse_prices(rows or [])
    estimates = tok.estimate_costs(input_tokens, output_tokens, requests, prices)
    return views.cost_rows(estimates), tok.costs_payload(estimates)


# ---------------------------------------------------------------------------------------------
# Layout and events
# ---------------------------------------------------------------------------------------------


def create_tokenization_tab(ctx: AppContext) -> dict[str, Any]:
    examples = load_examples()
    first_example = next(iter(examples))
    explanation(EXPLANATION)

    gr.Markdown("## 1. Text → tokens, several tokenizers side by side")
    with gr.Row():
        example = gr.Dropdown(list(examples), value=first_example, label="Example", scale=1, min_width=220)
        names = gr.CheckboxGroup(tokenizer_choices(), value=default_tokenizers(), label="Tokenizers", scale=3)
    gemma_missing = unavailable_reason(GEMMA)
    if gemma_missing:
        gr.Markdown(f"Gemma 3's tokenizer is optional and {gemma_missing.replace('pip', '`pip', 1)}`",
                    elem_id="tokenization-gemma-note")
    text = gr.Textbox(examples[first_example], lines=6, max_lines=16, label="Text", elem_id="tokenization-text")
    with gr.Row(equal_height=True):
        extra = gr.Textbox(label="More tokenizers: hub ids (online) or local folders, comma-separated",
                           placeholder="Qwen/Qwen2.5-0.5B-Instruct, /path/to/tokenizer", scale=3)
        add_special = gr.Checkbox(label="Add each tokenizer's own special tokens (BOS, [CLS] … [SEP])", scale=2)
        run = gr.Button("Tokenize", variant="primary", scale=1, elem_id="tokenization-run")
    # wrapped, the first column widest: unwrapped, the tokenizer names pushed the table past 1400 px
    counts = gr.Dataframe(headers=views.COUNT_HEADERS, label="Counts (the whole text, whatever its length)",
                          interactive=False, wrap=True, column_widths=COUNT_WIDTHS, elem_id="tokenization-counts")
    chips = gr.HTML(css_template=views.CHIP_CSS, js_on_load=views.CHIP_JS, elem_id="tokenization-chips")
    alignment = gr.Plot(label="Alignment", elem_id="tokenization-alignment")
    with gr.Accordion("Raw numbers: ids, tokens, offsets, counts (JSON, as the `tokenize` API returns them)",
                      open=False):
        tokens_json = gr.JSON(label="tokenize")

    gr.Markdown("## 2. Chat template: what the model really reads\nThe messages below go through the loaded "
                "model's chat template. The template wraps them in role markers and special tokens; all of it "
                "takes room in the context window.")
    with gr.Row():
        messages = gr.Dataframe(DEFAULT_MESSAGES, headers=["role", "content"], datatype=["str", "str"], type="array",
                                interactive=True, scale=3,
                                label="Messages (role: system, user or assistant)", elem_id="tokenization-messages")
        with gr.Column(scale=1, min_width=200):
            generation_prompt = gr.Checkbox(True, label="Add the assistant's turn header (generation prompt)")
            render = gr.Button("Render through the chat template", variant="primary")
    chat_summary = gr.Markdown(elem_id="tokenization-chat-summary")
    chat_chips = gr.HTML(css_template=views.CHIP_CSS, js_on_load=views.CHIP_JS, elem_id="tokenization-chat-chips")
    with gr.Accordion("The exact prompt string, and the raw numbers (JSON)", open=False):
        prompt = gr.Textbox(label="prompt", lines=6, max_lines=20, interactive=False, buttons=["copy"])
        chat_json = gr.JSON(label="chat_template")

    gr.Markdown("## 3. BPE explorer: watch a vocabulary being learned\nA small byte-level BPE is trained with the "
                "`tokenizers` library; then step through its merges and see your text (section 1) change.")
    with gr.Row(equal_height=True):
        source = gr.Radio([("Python's language reference (example corpus)", "corpus"), ("the text above", "text")],
                          value="corpus", label="Train on", scale=2)
        merge_count = gr.Slider(1, tok.BPE_MAX_MERGES, value=DEFAULT_MERGES, step=1, label="Merges to learn", scale=2)
        train = gr.Button("Train BPE", variant="primary", scale=1)
    bpe_summary = gr.Markdown(elem_id="tokenization-bpe-summary")
    step = gr.Slider(1, 300, value=1, step=1, label="Merge step", elem_id="tokenization-bpe-step")
    step_html = gr.HTML(css_template=views.CHIP_CSS, js_on_load=None, elem_id="tokenization-bpe-step-view")
    curve = gr.Plot(label="Vocabulary size vs tokens")
    with gr.Accordion("All merges in order, and the raw numbers (JSON)", open=False):
        merges_table = gr.Dataframe(headers=views.MERGE_HEADERS, interactive=False, max_height=360)
        bpe_json = gr.JSON(label="bpe_merges")
    training = gr.State(None)

    gr.Markdown("## 4. What would it cost?\n$\\text{cost} = \\text{requests} \\times (n_{in} \\cdot p_{in} + "
                "n_{out} \\cdot p_{out}) / 10^6$ with prices per million tokens. **The default prices are made-up "
                "examples, not live prices**: edit them to your provider's. Input tokens come from the loaded "
                "model's tokenizer on the text above; other providers' tokenizers count differently.",
                latex_delimiters=LATEX_DELIMITERS)
    with gr.Row():
        prices = gr.Dataframe([[p.name, p.input_per_million, p.output_per_million] for p in tok.EXAMPLE_PRICES],
                              headers=["price row (EXAMPLES: edit them)", "input per 1M tokens",
                                       "output per 1M tokens"],
                              datatype=["str", "number", "number"], type="array", interactive=True,
                              scale=3, label="Prices")
        with gr.Column(scale=1, min_width=200):
            input_tokens = gr.Number(0, precision=0, minimum=0, label="Input tokens per request")
            output_tokens = gr.Number(500, precision=0, minimum=0, label="Output tokens per request")
            requests = gr.Number(1000, precision=0, minimum=0, label="Requests")
            estimate = gr.Button("Estimate cost", variant="primary")
    costs = gr.Dataframe(headers=views.COST_HEADERS, interactive=False,
                         label="Estimated cost (same currency as the prices)")
    with gr.Accordion("Raw numbers (JSON)", open=False):
        cost_json = gr.JSON(label="estimate_cost")

    # -- events ------------------------------------------------------------------------------------
    @user_errors
    def on_tokenize(text_value: str, chosen: list[str], extra_value: str, special: bool) -> tuple[Any, ...]:
        return tokenize_view(ctx, text_value, chosen, extra_value, special)

    @user_errors
    def on_chat(rows: list[list[Any]], add_prompt: bool) -> tuple[Any, ...]:
        return chat_view(ctx, rows, add_prompt)

    @user_errors
    def api_tokenize_full(text: str, tokenizers: list[str], extra: str = "", add_special_tokens: bool = False) -> dict:
        """Every token of every tokenizer (ids, tokens, starts, ends, counts), uncapped, without the views."""
        return tokenize_full(ctx, text, tokenizers, extra, add_special_tokens)

    on_bpe, on_step, on_cost = user_errors(bpe_view), user_errors(bpe_step_view), user_errors(cost_view)
    on_bpe_follow = user_errors(bpe_follow)

    cost_inputs = [prices, input_tokens, output_tokens, requests]
    tokenize_inputs = [text, names, extra, add_special]
    tokenize_outputs = [counts, chips, alignment, tokens_json, input_tokens]
    bpe_inputs = [text, source, merge_count]
    bpe_outputs = [bpe_summary, step, step_html, curve, merges_table, bpe_json, training]
    # Every key typed, a paste or a picked example updates the tokens (like tiktokenizer): `change` (gradio's
    # textbox `input` misses a paste); always_last keeps at most one update waiting behind the running one, so
    # fast typing never queues a backlog.
    gr.on([run.click, text.change, names.input, add_special.input, extra.submit], on_tokenize, tokenize_inputs,
          tokenize_outputs, api_name="tokenize", trigger_mode="always_last", show_progress="hidden").then(
        on_cost, cost_inputs, [costs, cost_json], api_visibility="private", show_progress="hidden")
    example.input(examples.get, example, text, queue=False, api_visibility="private")  # text.change does the rest
    render.click(on_chat, [messages, generation_prompt], [chat_summary, chat_chips, prompt, chat_json],
                 api_name="chat_template")
    gr.on([train.click, source.input, merge_count.input], on_bpe, bpe_inputs, bpe_outputs, api_name="bpe_merges",
          trigger_mode="always_last", show_progress="hidden")
    # The BPE explorer segments the text above: it follows the text too (training on the example corpus is cached,
    # so a new text costs only its segmentation; "train on the text above" retrains on the short text).
    text.change(on_bpe_follow, bpe_inputs, bpe_outputs, api_visibility="private", trigger_mode="always_last",
                show_progress="hidden")
    step.input(on_step, [training, step], [step_html, curve], trigger_mode="always_last",
               show_progress="hidden", api_visibility="private")
    estimate.click(on_cost, cost_inputs, [costs, cost_json], api_name="estimate_cost")
    # The page's JSON carries the first JSON_TOKEN_LIMIT tokens per tokenizer (a 100k-character text
    # would otherwise send the browser megabytes); scripts that want every token call this one.
    gr.api(api_tokenize_full, api_name="tokenize_full")
    # On page load the tab opens full: the first example's tokens, the chat template and a BPE on the
    # example corpus, from the components' initial values. (No inputs on purpose: gr.on(None, ...) with
    # inputs would also fire on every change of them.) Each part shows its progress on its main view only: a status
    # per output would stay in the page's loading-status table (queueing.quiet_progress_on).
    gr.on(None, lambda: on_tokenize(examples[first_example], default_tokenizers(), "", False), None,
          tokenize_outputs, api_visibility="private", show_progress_on=chips).then(
        on_cost, cost_inputs, [costs, cost_json], api_visibility="private", show_progress_on=costs).then(
        lambda: on_chat(DEFAULT_MESSAGES, True), None, [chat_summary, chat_chips, prompt, chat_json],
        api_visibility="private", show_progress_on=chat_chips).then(
        lambda: on_bpe(examples[first_example], "corpus", DEFAULT_MERGES), None, bpe_outputs, api_visibility="private",
        show_progress_on=step_html)
    return {"example": example, "names": names, "text": text, "extra": extra, "add_special": add_special, "run": run,
            "counts": counts, "chips": chips, "alignment": alignment, "tokens_json": tokens_json,
            "messages": messages, "render": render, "chat_summary": chat_summary, "chat_chips": chat_chips,
            "prompt": prompt, "chat_json": chat_json, "source": source, "merge_count": merge_count, "train": train,
            "bpe_summary": bpe_summary, "step": step, "step_html": step_html, "curve": curve,
            "merges_table": merges_table, "bpe_json": bpe_json, "prices": prices, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "requests": requests, "estimate": estimate, "costs": costs,
            "cost_json": cost_json}

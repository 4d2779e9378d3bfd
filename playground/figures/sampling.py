"""Figures for the Sampling tab: the pipeline stage by stage, samples vs the math, a temperature
sweep, and a generation trace. Data in (the dataclasses of playground.sampling), plotly Figure out.

Token axes are categorical; labels make whitespace visible ('·Paris', '↵') and stay unique when two
tokens decode to the same text. Hover text always carries the exact probabilities.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import plotly.graph_objects as go
import plotly.io as pio

from playground.figures.style import MUTED, PALETTE, legend_below, probability_axis, step_axis, styled
from playground.sampling import (
    STAGE_LABELS,
    STAGE_NAMES,
    GenerationTrace,
    NextTokenView,
    SampleHistogram,
    TemperatureSweep,
    TraceStep,
)
from playground.tokenization import token_label, visible_token

KEPT_COLOR = PALETTE[0]  # blue: still in play
CUT_HERE_COLOR = PALETTE[3]  # vermillion: removed by this stage
SAMPLED_COLOR = PALETTE[1]  # orange: empirical counts, sampled trace
GREEDY_COLOR = "#4B5563"
LABEL_CHARS = 14
CHOSEN_MARK = "★ "
ROW_HEIGHT = 26
TEMPLATE = pio.templates["plotly_white"]  # the style's template, resolved once (see _figure)


def token_labels(texts: Sequence[str], ids: Sequence[int], chosen: int | None = None) -> list[str]:
    """Axis labels: visible whitespace, cut to LABEL_CHARS, '#id' added when two labels collide, and
    a star on the chosen token."""
    shown = [token_label(text) for text in texts]
    shown = [label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…" for label in shown]
    labels = [label if shown.count(label) == 1 else f"{label} #{token_id}" for label, token_id in zip(shown, ids)]
    return [CHOSEN_MARK + label if token_id == chosen else label for label, token_id in zip(labels, ids)]


def _stage_title(stage: str, view: NextTokenView) -> str:
    settings = view.settings
    detail = {
        "raw": "",
        "repetition_penalty": f" {settings.repetition_penalty:g}",
        "temperature": " 0 = greedy" if settings.is_greedy else f" T={settings.temperature:g}",
        "top_k": f" k={settings.top_k}",
        "top_p": f" p={settings.top_p:g}",
        "min_p": f" {settings.min_p:g}",
    }[stage]
    return f"{STAGE_LABELS[stage]}{detail}<br>{view.kept[stage]:,} tokens · H = {view.entropy_bits[stage]:.2f} bits"


def shown_stages(view: NextTokenView) -> tuple[str, ...]:
    """Active stages; with T = 0 the filters after temperature cannot change anything, so they are left out."""
    if view.settings.is_greedy:
        return tuple(s for s in view.active_stages if STAGE_NAMES.index(s) <= STAGE_NAMES.index("temperature"))
    return view.active_stages


def _panels(titles: list[str], x_title: str, ranges: list[list[float]], spacing: float = 0.025,
            tickformat: str = ".0%") -> dict[str, Any]:
    """Layout for side-by-side panels that share one categorical y axis (what make_subplots with
    shared_yaxes builds, written directly: this figure is redrawn on every slider move and
    make_subplots alone takes tens of milliseconds)."""
    width = (1 - spacing * (len(titles) - 1)) / len(titles)
    layout: dict[str, Any] = {"annotations": []}
    for index, (title, value_range) in enumerate(zip(titles, ranges)):
        left = index * (width + spacing)
        layout[_axis_key("xaxis", index)] = {"domain": [left, left + width], "anchor": "y", "range": value_range,
                                             "title": {"text": x_title}, "tickformat": tickformat}
        # a tick at a panel's end would run into the next panel's 0% (below 5%, whole-percent labels are too
        # coarse to choose from: plotly's own ticks)
        if index < len(titles) - 1 and value_range[1] >= 0.05:
            layout[_axis_key("xaxis", index)]["tickvals"] = _inner_ticks(value_range[1])
        layout["annotations"].append({"text": title, "x": left + width / 2, "y": 1.0, "xref": "paper",
                                      "yref": "paper", "yanchor": "bottom", "showarrow": False})
    return layout


def _figure(data: list[dict[str, Any]], layout: dict[str, Any], title: str, height: int,
            **after_style: Any) -> go.Figure:
    """Assemble a figure in the house style (then `after_style` layout updates) without plotly's
    per-property validation.

    These figures are redrawn on every slider move; validating them costs tens of milliseconds each
    on these CPUs, building them unvalidated a few. The unit tests re-validate every figure
    (go.Figure(figure.to_plotly_json())), so a wrong property name still fails there.
    """
    figure = styled(go.Figure(data=data, layout=layout, _validate=False), title, height=height)
    figure.update_layout(template=TEMPLATE, **after_style)
    return figure


def _axis_key(kind: str, index: int) -> str:
    return kind if index == 0 else f"{kind}{index + 1}"


def _bar(x: list[float], y: list[str], panel: int, **style: Any) -> dict[str, Any]:
    """A horizontal bar trace (as a dict: cheaper than go.Bar) drawn in panel `panel`."""
    return {"type": "bar", "orientation": "h", "x": x, "y": y, "xaxis": _axis_key("x", panel), "yaxis": "y",
            "hoverinfo": "text", **style}


def _probability_top(longest: float) -> float:
    """The right end of a probability axis: room for the text beside the longest bar, but never past 100%."""
    return min(1.0, longest * 1.4 + 1e-9)


def _inner_ticks(top: float) -> list[float]:
    """Round probability ticks on [0, top], none in the last 10% of the axis (where a label would meet the next
    panel's first).

    >>> _inner_ticks(1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8]
    >>> _inner_ticks(0.3)
    [0.0, 0.1, 0.2]
    """
    step = next(step for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25) if top / step <= 5 + 1e-9)
    return [round(index * step, 2) for index in range(int(top / step) + 1) if index * step < 0.9 * top]


def _text_positions(values: Sequence[float], top: float) -> list[str]:
    """A bar's text outside it, unless the bar reaches near the axis' end: then inside (outside it would
    run into the next panel)."""
    return ["inside" if value > 0.72 * top else "outside" for value in values]


def _categorical_y(labels: list[str], title: str) -> dict[str, Any]:
    return {"anchor": "x", "categoryorder": "array", "categoryarray": labels, "autorange": "reversed",
            "title": {"text": title}}


STAGE_TRACES = (("kept", KEPT_COLOR, "kept: probability after the stage"),
                ("cut here", CUT_HERE_COLOR, "cut by this stage"),
                ("cut earlier", MUTED, "cut by an earlier stage"))


def _stage_rows(view: NextTokenView, labels: list[str], stage: str) -> dict[str, list[tuple[str, float, str]]]:
    """(label, bar length, hover) per token of one panel, grouped as kept / cut here / cut earlier."""
    index = STAGE_NAMES.index(stage)
    previous = STAGE_NAMES[index - 1] if index else stage
    groups: dict[str, list[tuple[str, float, str]]] = {name: [] for name, _, _ in STAGE_TRACES}
    for token, label in zip(view.tokens, labels):
        cut_index = STAGE_NAMES.index(token.cut_by) if token.cut_by else len(STAGE_NAMES)
        hover = (f"<b>{visible_token(token.text)}</b> (id {token.token_id}, raw rank {token.rank})<br>"
                 f"after {STAGE_LABELS[stage]}: {token.probs[stage]:.6g}<br>before: {token.probs[previous]:.6g}"
                 + (f"<br>cut by {STAGE_LABELS[token.cut_by]}" if token.cut_by else ""))
        if cut_index > index:
            groups["kept"].append((label, token.probs[stage], hover))
        elif cut_index == index:
            groups["cut here"].append((label, token.probs[previous], hover))
        else:  # stays visible at the probability it had when it was cut
            groups["cut earlier"].append((label, token.probs[STAGE_NAMES[max(cut_index - 1, 0)]], hover))
    return groups


def stage_figure(view: NextTokenView) -> go.Figure:
    """One panel per active stage, the same tokens on every row. Blue bars: probability after the
    stage (renormalised over the tokens left). A token a stage removes is drawn in vermillion at the
    probability it had going in; in later panels it stays as a grey bar at that same height."""
    stages = shown_stages(view)
    ids = [token.token_id for token in view.tokens]
    labels = token_labels([token.text for token in view.tokens], ids, view.chosen.token_id)
    titles = [_stage_title(stage, view) for stage in stages]
    titles[-1] = "= final: " + titles[-1]
    data, ranges, in_legend = [], [], set()
    for panel, stage in enumerate(stages):
        groups = _stage_rows(view, labels, stage)
        top = _probability_top(max(value for rows in groups.values() for _, value, _ in rows))
        ranges.append([0, top])
        for name, color, legend_name in STAGE_TRACES:
            rows = groups[name]
            if rows:
                data.append(_bar([value for _, value, _ in rows], [label for label, _, _ in rows], panel,
                                 marker={"color": color}, name=legend_name, legendgroup=name,
                                 showlegend=name not in in_legend, hovertext=[hover for _, _, hover in rows],
                                 text=[f"{value:.1%}" if name == "kept" else "✂" for _, value, _ in rows],
                                 textposition=_text_positions([value for _, value, _ in rows], top),
                                 cliponaxis=False))
                in_legend.add(name)
    layout = _panels(titles, "probability", ranges)
    layout["yaxis"] = _categorical_y(labels, "token (★ = drawn with this seed)")
    figure = _figure(data, layout, "Next-token distribution, stage by stage", 240 + ROW_HEIGHT * len(ids),
                     margin={"t": 130}, barmode="overlay")
    return legend_below(figure)  # above, it would sit on the panel titles


def sweep_figure(sweep: TemperatureSweep) -> go.Figure:
    """Small multiples: the same tokens' final probabilities at each temperature, shared x range, so
    low T piles the mass on the top token and high T spreads it."""
    labels = token_labels(sweep.texts, sweep.token_ids) + ["all others"]
    titles = [("T=0 greedy" if panel.temperature == 0 else f"T={panel.temperature:g}")
              + f"<br>H={panel.entropy_bits:.2f} bits" for panel in sweep.panels]
    data = []
    for index, panel in enumerate(sweep.panels):
        values = list(panel.probs) + [panel.other_mass]
        data.append(_bar(values, labels, index, marker={"color": [KEPT_COLOR] * len(panel.probs) + [MUTED]},
                         showlegend=False,
                         hovertext=[f"T={panel.temperature:g} · <b>{label}</b>: {value:.6g}<br>{panel.kept:,} "
                                    "tokens possible" for label, value in zip(labels, values)]))
    layout = _panels(titles, "probability", [[0, 1]] * len(titles), spacing=0.025)
    for index in range(len(titles)):  # seven narrow panels: two ticks each
        layout[_axis_key("xaxis", index)]["tickvals"] = [0, 0.5]
    layout["yaxis"] = _categorical_y(labels, "token")
    return _figure(data, layout, "Temperature sweep, other settings as chosen<br>blue: the token's final "
                   "probability · grey: all other tokens together",  # one size: a smaller span fell under the floor
                   190 + ROW_HEIGHT * len(labels), margin={"t": 130})


def samples_figure(histogram: SampleHistogram) -> go.Figure:
    """Theoretical probability vs the share of n draws, per token (+ all others), with the ±2σ band
    a fair draw lands in ~95% of the time."""
    labels = token_labels(histogram.texts, histogram.token_ids) + ["all others"]
    expected = list(histogram.expected) + [histogram.other_expected]
    counts = list(histogram.counts) + [histogram.other_count]
    n = histogram.n
    spread = [2 * math.sqrt(max(p * (1 - p), 0.0) / n) for p in expected]
    data = [
        {"type": "bar", "x": labels, "y": expected, "name": "theoretical (final distribution), ±2σ",
         "marker": {"color": KEPT_COLOR}, "hoverinfo": "text",
         "error_y": {"type": "data", "array": spread, "color": "#1F2937", "thickness": 1.2},
         "hovertext": [f"<b>{label}</b><br>p = {p:.6g}<br>expected {p * n:.1f} of {n:,}"
                       for label, p in zip(labels, expected)]},
        {"type": "bar", "x": labels, "y": [count / n for count in counts], "name": f"empirical ({n:,} draws)",
         "marker": {"color": SAMPLED_COLOR}, "hoverinfo": "text",
         "hovertext": [f"<b>{label}</b><br>drawn {count:,} of {n:,} = {count / n:.6g}"
                       for label, count in zip(labels, counts)]},
    ]
    test = histogram.chi_square
    verdict = (f"χ² = {test.statistic:.1f}, {test.dof} dof, p-value = {test.p_value:.3f}" if test
               else "one possible token: nothing to test")
    if test and test.smallest_expected < 5:  # too few draws for ~5 per bin: the χ² approximation is rough
        verdict += f" (rough: a bin expects only {test.smallest_expected:.1f} draws)"
    layout = {"xaxis": {"title": {"text": "token"}, "tickangle": -40},
              "yaxis": {"title": {"text": "probability / share of draws"}, "tickformat": ".0%"}}
    return _figure(data, layout, f"{n:,} draws vs the math · {verdict}", 440, barmode="group", bargap=0.25)


# Output text coloured by the model's probability of each chosen token (legend shown with the text).
PROBABILITY_BINS = ((0.9, "model p ≥ 90%"), (0.5, "50–90%"), (0.2, "20–50%"), (0.05, "5–20%"), (0.0, "< 5%"))
FORCED_CATEGORY = "forced token"
TEXT_COLORS = {"model p ≥ 90%": "#BBF7D0", "50–90%": "#D9F99D", "20–50%": "#FEF08A", "5–20%": "#FED7AA",
               "< 5%": "#FECACA", FORCED_CATEGORY: "#DDD6FE"}


def probability_bin(probability: float) -> str:
    return next(name for lower, name in PROBABILITY_BINS if probability >= lower)


def highlighted_tokens(trace: GenerationTrace) -> list[tuple[str, str]]:
    """(text, category) per step, one entry per token so a click's index is the step. The text as every tab
    shows a token (visible_token): spaces as '·' (the chips' edges do not show them), newlines as '↵' (gradio
    would turn them into bare line breaks that cannot be clicked), an empty text (half of a multi-byte
    character) as '∅'."""
    return [(visible_token(step.text), FORCED_CATEGORY if step.forced else probability_bin(step.raw_prob))
            for step in trace.steps]


def _step_hover(step: TraceStep) -> str:
    return (f"step {step.index}: <b>{token_label(step.text)}</b> (id {step.token_id})"
            + (" — forced" if step.forced else "")
            + f"<br>model probability {step.raw_prob:.6g} (rank {step.rank})<br>sampling probability {step.prob:.6g}"
              f"<br>entropy {step.entropy_bits:.2f} bits")


def trace_figure(trace: GenerationTrace, greedy: GenerationTrace | None = None) -> go.Figure:
    """The model's probability of each chosen token, step by step: dips are the surprising picks."""
    series = [("sampled" if not trace.settings.is_greedy else "this run", trace.steps,
               {"mode": "lines+markers", "line": {"color": SAMPLED_COLOR}, "marker": {"size": 7}})]
    if greedy is not None:
        series.append(("greedy (T=0)", greedy.steps,
                       {"mode": "lines+markers", "line": {"color": GREEDY_COLOR, "dash": "dot"}, "marker": {"size": 7}}))
    forced = [step for step in trace.steps if step.forced]
    if forced:
        series.append(("forced token", forced,
                       {"mode": "markers", "marker": {"symbol": "x", "size": 13, "color": CUT_HERE_COLOR}}))
    data = [{"type": "scatter", "name": name, "x": [step.index for step in steps],
             "y": [step.raw_prob for step in steps], "hovertext": [_step_hover(step) for step in steps],
             "hoverinfo": "text", **style} for name, steps, style in series]
    steps = max((step.index for _, steps, _ in series for step in steps), default=1)
    layout = {"xaxis": {"title": {"text": "step (generated token)"}, "rangemode": "tozero", **step_axis(steps)},
              "yaxis": {"title": {"text": "model probability of the chosen token"}, **probability_axis()}}
    for trace in data:  # a marker at exactly 100% is drawn whole, over the axis' top edge
        trace["cliponaxis"] = False
    return _figure(data, layout, "How likely was each chosen token? (model probability, T = 1, before filters)", 340)


def step_figure(step: TraceStep) -> go.Figure:
    """The alternatives at one step: what the model thought (grey) and what sampling drew from (blue)."""
    alternatives = step.alternatives
    labels = token_labels([alt.text for alt in alternatives], [alt.token_id for alt in alternatives], step.token_id)
    hover = [f"<b>{token_label(alt.text)}</b> (id {alt.token_id}, raw rank {alt.rank})<br>model probability "
             f"{alt.raw_prob:.6g}<br>sampling probability {alt.prob:.6g}" for alt in alternatives]
    data = [_bar([alt.raw_prob for alt in alternatives], labels, 0, name="model probability (T=1, no filter)",
                 marker={"color": MUTED}, hovertext=hover),
            _bar([alt.prob for alt in alternatives], labels, 0, name="sampling probability (after the pipeline)",
                 marker={"color": KEPT_COLOR}, hovertext=hover, text=[f"{alt.prob:.1%}" for alt in alternatives],
                 textposition="outside", cliponaxis=False, constraintext="none")]
    longest = max([alt.prob for alt in alternatives] + [alt.raw_prob for alt in alternatives])
    layout = {"xaxis": {"title": {"text": "probability"}, **probability_axis(range=[0, _probability_top(longest)])},
              "yaxis": _categorical_y(labels, "alternative (★ = chosen)")}
    how = "forced" if step.forced else "chosen"
    return _figure(data, layout, f"Step {step.index}: {how} '{token_label(step.text)}' · sampling p = "
                   f"{step.prob:.3f}, model p = {step.raw_prob:.3f}, rank {step.rank}",
                   140 + ROW_HEIGHT * len(labels), barmode="group", bargap=0.2)

"""Figures for the Speculative decoding tab: acceptance by draft position, accepted length per step,
tokens per target forward, and where the time went. Data in (playground.speculative's dataclasses),
plotly Figure out. Hover text carries the exact counts, rates and seconds.
"""

from __future__ import annotations

import plotly.graph_objects as go

from playground.figures.style import MUTED, PALETTE, probability_axis, step_axis, styled
from playground.speculative import AcceptanceStats, PlainRun, SpeculativeRun

# One colour per fate, shared with the tab's coloured text (Okabe-Ito: colour-blind safe).
FATE_COLORS = {
    "accepted": PALETTE[2],  # green: a draft token the target kept
    "rejected": PALETTE[3],  # vermillion: the first draft token the target refused
    "unchecked": MUTED,  # grey: drafted after a rejection, never looked at
    "resampled": PALETTE[1],  # orange: drawn from the residual max(0, p - q) after a rejection
    "bonus": PALETTE[0],  # blue: the target's own next token after every draft was accepted
}
TIME_COLORS = {"draft": PALETTE[4], "target": PALETTE[0], "other": MUTED}
MAX_LINE_POINTS = 400  # longer runs are thinned for the line chart (hover still shows exact values)


def _geometric_expectation(alpha: float, drafted: int, accepted: int) -> float:
    """P(a step that drafted d tokens accepts exactly n) when each is accepted with probability alpha
    until the first rejection: alpha^n (1 - alpha) for n < d, alpha^d for n = d."""
    if accepted > drafted:
        return 0.0
    if accepted == drafted:
        return alpha ** drafted
    return alpha ** accepted * (1.0 - alpha)


def acceptance_by_position_figure(stats: AcceptanceStats) -> go.Figure:
    """Bars: the share of checked draft tokens accepted at each position 1..k; a line at the overall alpha."""
    positions = [row.position for row in stats.by_position]
    rates = [row.acceptance_rate if row.checked else None for row in stats.by_position]
    hover = [f"position {row.position}<br>checked {row.checked}, accepted {row.accepted}<br>"
             f"acceptance rate {row.acceptance_rate:.3f}<br>mean min(1, p/q) {row.mean_accept_probability:.3f}"
             if row.checked else f"position {row.position}<br>never checked (an earlier draft was always rejected "
             "or the draft proposed fewer tokens)" for row in stats.by_position]
    figure = go.Figure(go.Bar(x=positions, y=rates, name="accepted / checked at this position",
                              marker_color=FATE_COLORS["accepted"], hovertext=hover, hoverinfo="text",
                              text=[f"{row.accepted}/{row.checked}" if row.checked else "–" for row in stats.by_position],
                              textposition=["inside" if rate and rate > 0.85 else "outside" for rate in rates],
                              cliponaxis=False))
    figure.add_trace(go.Scatter(x=[0.5, max(positions, default=1) + 0.5], y=[stats.alpha, stats.alpha], mode="lines",
                                name=f"α over all positions = {stats.alpha:.3f}",
                                line={"color": "#374151", "dash": "dash"},
                                hovertemplate=f"α = mean min(1, p/q) over all {stats.checked} checked drafts: "
                                              f"{stats.alpha:.4f}<extra></extra>"))
    figure.update_xaxes(title="draft position in the step (1 = first drafted token)", dtick=1)
    figure.update_yaxes(title="acceptance rate", **probability_axis())
    return styled(figure, f"Acceptance by draft position ({stats.accepted} of {stats.checked} checked drafts accepted)",
                  height=380)


def accepted_length_figure(run: SpeculativeRun, stats: AcceptanceStats) -> go.Figure:
    """Histogram of drafts accepted per step, beside what an independent acceptance at rate alpha predicts."""
    lengths = list(range(run.k + 1))
    counts = list(stats.accepted_length_counts)
    drafted = [len(step.drafted) for step in run.steps]
    expected = [sum(_geometric_expectation(stats.alpha, d, n) for d in drafted) for n in lengths]
    total = max(stats.steps, 1)
    figure = go.Figure(go.Bar(
        x=lengths, y=counts, name="steps (measured)", marker_color=PALETTE[0],
        hovertext=[f"{count} of {stats.steps} steps ({count / total:.1%}) accepted {n} draft token(s)"
                   for n, count in zip(lengths, counts)], hoverinfo="text"))
    figure.add_trace(go.Scatter(
        x=lengths, y=expected, mode="markers", name=f"expected if each draft is accepted with α = {stats.alpha:.2f}",
        marker={"color": PALETTE[1], "size": 11, "symbol": "diamond"},
        hovertemplate="accepting %{x}: %{y:.2f} steps expected<extra></extra>"))
    figure.update_xaxes(title="draft tokens accepted in the step", dtick=1)
    figure.update_yaxes(title="number of steps")
    return styled(figure, "Accepted length per step", height=380)


def tokens_per_forward_figure(run: SpeculativeRun) -> go.Figure:
    """Tokens generated against target forwards: plain decoding is the diagonal (1 token per forward)."""
    forwards = list(range(1, len(run.steps) + 1))
    cumulative = []
    total = 0
    for step in run.steps:
        total += len(step.emitted)
        cumulative.append(total)
    stride = max(1, -(-len(forwards) // MAX_LINE_POINTS))  # ceil: at most MAX_LINE_POINTS points
    shown = list(range(0, len(forwards), stride))
    if forwards and shown[-1] != len(forwards) - 1:
        shown.append(len(forwards) - 1)
    figure = go.Figure(go.Scatter(
        x=[forwards[i] for i in shown], y=[cumulative[i] for i in shown], mode="lines+markers", name="speculative",
        line={"color": FATE_COLORS["bonus"], "width": 3}, marker={"size": 6},
        hovertext=[f"after {forwards[i]} target forward(s): {cumulative[i]} tokens<br>this step added "
                   f"{len(run.steps[i].emitted)} ({run.steps[i].accepted} accepted draft(s))" for i in shown],
        hoverinfo="text"))
    figure.add_trace(go.Scatter(x=[0, len(forwards)], y=[0, len(forwards)], mode="lines",
                                name="plain decoding (1 token per forward)",
                                line={"color": MUTED, "dash": "dash", "width": 2}, hoverinfo="skip"))
    rate = total / len(forwards) if forwards else 0.0
    figure.update_xaxes(title="target forwards (one per step)", rangemode="tozero", **step_axis(len(forwards)))
    figure.update_yaxes(title="tokens generated", rangemode="tozero", **step_axis(total))
    return styled(figure, f"Tokens per target forward: {rate:.2f} on average", height=380)


def time_split_figure(stats: AcceptanceStats, run: SpeculativeRun, plain: PlainRun | None) -> go.Figure:
    """Stacked bars: the speculative run's draft / target / bookkeeping seconds, and plain decoding's."""
    rows = ["speculative"] + (["plain decoding"] if plain is not None else [])
    parts = {
        "draft": [stats.draft_seconds] + ([0.0] if plain is not None else []),
        "target": [stats.target_seconds] + ([plain.seconds] if plain is not None else []),
        "other": [stats.other_seconds] + ([0.0] if plain is not None else []),
    }
    totals = [run.seconds] + ([plain.seconds] if plain is not None else [])
    names = {"draft": "draft (proposing)", "target": "target (verifying / decoding)",
             "other": "bookkeeping (records, token texts)"}
    figure = go.Figure()
    for part, values in parts.items():
        figure.add_trace(go.Bar(
            y=rows, x=values, orientation="h", name=names[part], marker_color=TIME_COLORS[part],
            hovertext=[f"{row}: {names[part]} {value:.3f} s ({value / total:.1%} of {total:.3f} s)" if total else row
                       for row, value, total in zip(rows, values, totals)], hoverinfo="text"))
    tokens = [len(run.token_ids)] + ([len(plain.token_ids)] if plain is not None else [])
    for row, total, count in zip(rows, totals, tokens):
        figure.add_annotation(x=total, y=row, text=f"  {total:.2f} s · {count / total if total else 0:.1f} tok/s",
                              showarrow=False, xanchor="left")
    figure.update_layout(barmode="stack")
    figure.update_xaxes(title="wall time (seconds)", range=[0, max(totals) * 1.35 if totals and max(totals) else 1])
    figure.update_yaxes(title="run", autorange="reversed")
    return styled(figure, "Where the time went", height=300)


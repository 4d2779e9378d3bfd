"""Figures for the "Inside the model" tab: the logit-lens heatmap and its per-position curves, before/after
bars of an ablation, the head-importance map (GQA groups marked) and the two attributions side by side.
Data in, plotly Figure out; hover text carries the exact numbers.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.figures.attention import axis_labels
from playground.figures.style import MUTED, PALETTE, colorbar, legend_below, styled
from playground.inside import AblationResult, Attribution, HeadImportance, LogitLens

# What the lens heatmap's colour shows (key -> legend title)
LENS_COLOURS = {
    "top_prob": "probability of the top token at that depth",
    "final_prob": "probability of the token the model finally chose",
    "final_rank": "rank of the token the model finally chose (log scale, 1 = top)",
}
CELL_CHARS = 7  # token text drawn in a heatmap cell (hover has it whole)
COMMIT_OFFSET = 0.38  # ◆ at a cell's left edge, ✕ at its right (a cell spans ±0.5), clear of the centred token


def _cell_text(label: str) -> str:
    return label if len(label) <= CELL_CHARS else label[:CELL_CHARS - 1] + "…"


def lens_heatmap(lens: LogitLens, colour: str = "top_prob") -> go.Figure:
    """Depth x position: each cell names that depth's top token; colour per LENS_COLOURS; ◆ marks the depth
    from which the final token stays on top ("commits"); ✕ marks a top token the sampling settings cut."""
    if colour not in LENS_COLOURS:
        raise ValueError(f"colour must be one of {', '.join(LENS_COLOURS)}, got {colour!r}")
    labels = axis_labels(lens.prompt.tokens)
    # columns at 0..n-1 (named by tick labels), so a marker can sit at a cell's edge: x = i - COMMIT_OFFSET
    x = list(range(len(labels)))
    y = [lens.depth_name(d) for d in range(lens.depths)]
    if colour == "top_prob":
        z, scale, zmin, zmax = lens.top_probs[..., 0], "Viridis", 0.0, 1.0
    elif colour == "final_prob":
        z, scale, zmin, zmax = lens.final_probs, "Viridis", 0.0, 1.0
    else:  # log10 of the rank, so ranks 1, 10, 100... are evenly spaced; bright = near the top
        z = np.log10(lens.final_ranks.astype(float))
        scale, zmin, zmax = "Viridis_r", 0.0, float(max(1.0, z.max()))
    hover = [[_hover(lens, d, i) for i in range(len(x))] for d in range(lens.depths)]
    text = [[_cell_text(row[i][0]) for i in range(len(x))] for row in lens.top_labels]
    figure = go.Figure(go.Heatmap(
        z=z.astype(np.float32), x=x, y=y, colorscale=scale, zmin=zmin, zmax=zmax, text=text,
        texttemplate="%{text}" if len(x) <= 40 else "", textfont={"size": 12}, customdata=hover,
        hovertemplate="%{customdata}<extra></extra>",
        colorbar=colorbar("log₁₀ rank" if colour == "final_rank" else "probability", len=0.7)))
    commit_y = [y[min(d, lens.depths - 1)] for d in lens.commit_depth]
    # at the cell's left edge: on its centre the ◆ hid the commit cell's own token ('·P◆ris')
    figure.add_trace(go.Scatter(x=[i - COMMIT_OFFSET for i in x], y=commit_y, mode="markers",
                                name="final token stays top-1 from here", customdata=labels,
                                marker={"symbol": "diamond", "size": 9, "color": "white",
                                        "line": {"color": "black", "width": 1.5}},
                                hovertemplate="%{customdata}: commits at %{y}<extra></extra>"))
    cut_depth, cut_position = np.nonzero(lens.cut)
    if len(cut_depth):
        figure.add_trace(go.Scatter(x=[i + COMMIT_OFFSET for i in cut_position], y=[y[d] for d in cut_depth],
                                    mode="markers", name="top token here would be cut by the sampling settings",
                                    customdata=[labels[i] for i in cut_position],
                                    marker={"symbol": "x-thin", "size": 10, "color": PALETTE[3],
                                            "line": {"color": PALETTE[3], "width": 2}},
                                    hovertemplate="%{customdata} at %{y}: this token is cut by the filters"
                                                  "<extra></extra>"))
    figure.update_xaxes(title_text="position (the token each column predicts after)", tickmode="array",
                        tickvals=x, ticktext=labels, range=[-0.5, len(x) - 0.5], tickangle=-60)
    figure.update_yaxes(title_text="depth (residual stream after)", type="category")
    styled(figure, f"Logit lens · colour: {LENS_COLOURS[colour]}", height=max(480, 160 + 22 * lens.depths))
    return legend_below(figure, 150)


def _hover(lens: LogitLens, depth: int, position: int) -> str:
    lines = [f"{lens.depth_name(depth)} · after token {position} {lens.prompt.tokens[position]!r}"]
    lines += [f"{label!r}: {p:.4f}" for label, p in zip(lens.top_labels[depth][position],
                                                          lens.top_probs[depth, position])]
    final = lens.top_labels[-1][position][0]
    lines.append(f"final token {final!r}: p {lens.final_probs[depth, position]:.4f}, rank "
                 f"{lens.final_ranks[depth, position]:,}")
    lines.append(f"entropy {lens.entropy_bits[depth, position]:.3f} bits · KL to final "
                 f"{lens.kl_to_final[depth, position]:.4f} nats")
    if lens.cut[depth, position]:
        lines.append("the sampling settings cut this top token")
    return "<br>".join(lines)


def lens_curves(lens: LogitLens, position: int) -> go.Figure:
    """Entropy and KL to the final distribution across depth, for one position, with its commit depth."""
    depths = [lens.depth_name(d) for d in range(lens.depths)]
    figure = make_subplots(rows=1, cols=2, subplot_titles=("entropy (bits)", "KL(final ‖ depth) (nats)"))
    figure.add_trace(go.Scatter(x=depths, y=lens.entropy_bits[:, position], mode="lines+markers", name="entropy",
                                line={"color": PALETTE[0]}, hovertemplate="%{x}: %{y:.4f} bits<extra></extra>"),
                     row=1, col=1)
    figure.add_trace(go.Scatter(x=depths, y=lens.kl_to_final[:, position], mode="lines+markers", name="KL to final",
                                line={"color": PALETTE[1]}, hovertemplate="%{x}: %{y:.4f} nats<extra></extra>"),
                     row=1, col=2)
    commit = depths[int(lens.commit_depth[position])]
    for col in (1, 2):
        figure.add_vline(x=commit, line_dash="dash", line_color=MUTED, row=1, col=col)
        figure.update_xaxes(title_text="depth", type="category", tickangle=-60, row=1, col=col)
    token, final = lens.prompt.tokens[position], lens.top_labels[-1][position][0]
    styled(figure, f"After token {position} {token!r}: the final token {final!r} commits at {commit} (dashed)",
           height=380)
    figure.update_layout(showlegend=False)
    return figure


def ablation_bars(result: AblationResult) -> go.Figure:
    """The top 10 before (left) and after (right), each token with its probability before and after."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("top 10 with everything on", "top 10 with the parts off"),
                           horizontal_spacing=0.18)
    for col, top in ((1, result.top_before), (2, result.top_after)):
        labels = [f"{label!r}" for _, label, _, _ in top][::-1]
        for name, values, colour in (("before", [b for *_, b, _ in top][::-1], PALETTE[0]),
                                     ("after", [a for *_, a in top][::-1], PALETTE[3])):
            figure.add_trace(go.Bar(y=labels, x=values, orientation="h", name=name, marker_color=colour,
                                    showlegend=col == 1, legendgroup=name,
                                    hovertemplate="%{y}: p " + name + " = %{x:.5f}<extra></extra>"), row=1, col=col)
        figure.update_xaxes(title_text="probability of the next token", row=1, col=col)
    styled(figure, f"Next token before vs after · KL(before ‖ after) = {result.kl:.4f} nats", height=460)
    figure.update_layout(barmode="group")
    return legend_below(figure, 110)


def importance_heatmap(result: HeadImportance) -> go.Figure:
    """KL of the next token with each head switched off alone: layers x heads, GQA groups split by lines."""
    shape = result.shape
    x = [f"H{h} (KV{shape.kv_head_of(h)})" for h in range(shape.num_heads)]
    y = [f"layer {layer}" for layer in range(shape.num_layers)]
    hover = [[f"layer {layer}, head {h} (KV head {shape.kv_head_of(h)})<br>KL {result.kl[layer, h]:.5f} nats"
              + ("<br>the top token changes" if result.top1_changed[layer, h] else "")
              + f"<br>click: add {layer}.{h} to the heads to switch off"
              for h in range(shape.num_heads)] for layer in range(shape.num_layers)]
    figure = go.Figure(go.Heatmap(z=result.kl.astype(np.float32), x=x, y=y, colorscale="Magma_r", customdata=hover,
                                  hovertemplate="%{customdata}<extra></extra>",
                                  colorbar=colorbar("KL (nats)", len=0.7)))
    changed_layer, changed_head = np.nonzero(result.top1_changed)
    if len(changed_layer):
        figure.add_trace(go.Scatter(x=[x[h] for h in changed_head], y=[y[layer] for layer in changed_layer],
                                    mode="markers", name="the top token changes",
                                    marker={"symbol": "circle-open", "size": 12, "color": PALETTE[2],
                                            "line": {"width": 2}}, hoverinfo="skip"))
    for group in range(1, shape.num_kv_heads):  # a line between KV groups
        figure.add_vline(x=group * shape.group_size - 0.5, line_color="white", line_width=3)
    figure.update_xaxes(title_text="query head (KV head it shares)", type="category")
    figure.update_yaxes(title_text="layer", type="category", autorange="reversed")
    styled(figure, f"Head importance: KL of the next token with one head {result.mode}-ablated",
           height=max(420, 120 + 16 * shape.num_layers))
    return legend_below(figure, 110)


def attribution_figure(result: Attribution) -> go.Figure:
    """Integrated gradients and leave-one-out per input token, side by side (same token axis)."""
    y = axis_labels(result.prompt.tokens)
    figure = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                           subplot_titles=("integrated gradients", "leave one out"))
    for col, values, name in ((1, result.ig, "IG"), (2, result.loo, "leave one out")):
        colours = [PALETTE[0] if v >= 0 else PALETTE[3] for v in values]
        figure.add_trace(go.Bar(y=y, x=values, orientation="h", marker_color=colours, name=name,
                                hovertemplate="%{y}: %{x:.4f}<extra>" + name + "</extra>"), row=1, col=col)
        figure.update_xaxes(title_text=f"towards {result.target!r} (+) or {result.contrast!r} (−)", row=1, col=col)
    figure.update_yaxes(type="category", autorange="reversed", title_text="input token", row=1, col=1)
    rho = "n/a" if result.spearman is None else f"{result.spearman:.2f}"
    styled(figure, f"Why {result.target!r} and not {result.contrast!r}? Spearman ρ = {rho}",
           height=max(380, 140 + 20 * len(y)))
    figure.update_layout(showlegend=False)
    return figure

"""Figures for the Model & quantization tab: parameter breakdown, the decoder block as configured,
precisions side by side, one weight matrix before/after quantization, and the memory calculator."""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from playground.figures.style import MUTED, PALETTE, legend_below, log_axis, probability_axis, styled
from playground.quantization import ArchitectureSummary, ComponentCount, WeightQuantizationView


def parameter_breakdown_figure(rows: Sequence[ComponentCount]) -> go.Figure:
    total = sum(row.parameters for row in rows)
    figure = go.Figure(go.Bar(
        x=[row.parameters / 1e6 for row in rows],
        y=[row.component for row in rows],
        orientation="h",
        marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))],
        text=[f"{row.parameters / 1e6:.2f} M ({100 * row.parameters / total:.1f}%)" for row in rows],
        textposition="auto",
        customdata=[[row.formula, row.parameters] for row in rows],
        hovertemplate="%{y}: %{customdata[1]:,} parameters<br>= %{customdata[0]}<extra></extra>",
    ))
    figure.update_xaxes(title="parameters (millions)")
    figure.update_yaxes(title="component", autorange="reversed")
    return styled(figure, f"Where the {total / 1e6:.1f} M parameters are", height=320)


def _box(figure: go.Figure, x0: float, y0: float, x1: float, y1: float, text: str, color: str) -> None:
    figure.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, line={"color": color, "width": 2},
                     fillcolor=color, opacity=0.18, layer="below")
    figure.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text, showarrow=False)


def _arrow(figure: go.Figure, x: float, y_from: float, y_to: float) -> None:
    figure.add_annotation(x=x, y=y_to, ax=x, ay=y_from, xref="x", yref="y", axref="x", ayref="y",
                          showarrow=True, arrowhead=2, arrowwidth=1.5, arrowcolor="#444", text="")


def decoder_block_figure(a: ArchitectureSummary) -> go.Figure:
    """One decoder block drawn bottom-up with this model's numbers (pre-norm, residual adds)."""
    figure = go.Figure()
    group = a.attention_heads // max(a.kv_heads, 1)
    steps = [
        (f"hidden state  [tokens x {a.hidden_size}]", "#888888"),
        (f"{a.norm}", PALETTE[5]),
        (f"attention: {a.attention_heads} query heads, {a.kv_heads} KV heads (GQA, {group} queries share a KV head)"
         f"<br>head dim {a.head_dim}, RoPE positions" + (f" (θ = {a.rope_theta:g})" if a.rope_theta else ""),
         PALETTE[0]),
        ("+ residual", "#888888"),
        (f"{a.norm}", PALETTE[5]),
        (f"MLP ({a.activation}-gated, SwiGLU): {a.hidden_size} → 2 x {a.intermediate_size} → {a.hidden_size}",
         PALETTE[1]),
        ("+ residual", "#888888"),
    ]
    height = 1.0
    for index, (text, color) in enumerate(steps):
        y0 = index * 1.5
        _box(figure, 0.5, y0, 9.5, y0 + height, text, color)
        if index:
            _arrow(figure, 5, y0 - 0.5, y0)
    top = (len(steps) - 1) * 1.5 + height
    figure.add_annotation(x=9.9, y=top / 2, text=f"× {a.layers} layers", showarrow=False, textangle=-90,
                          font={"size": 16})
    figure.update_xaxes(visible=False, range=[0, 10.3])
    figure.update_yaxes(visible=False, range=[-0.3, top + 0.3])
    return styled(figure, f"One decoder block of this {a.model_type} model (read bottom-up)", height=520)


def precision_comparison_figure(rows: Sequence[dict]) -> go.Figure:
    """Four panels, one bar per precision: memory, decode speed, KL vs reference, top-1 agreement."""
    labels = [row["precision"] for row in rows]
    panels = [
        ("memory_mb", "memory (MB)", "%{y:.1f} MB"),
        ("decode_tokens_per_second", "decode speed (tokens/s)", "%{y:.1f} tok/s"),
        ("kl_mean", "KL to reference (nats, lower = closer)", "%{y:.5f} nats"),
        ("top1_agreement", "top-1 agreement with reference", "%{y:.1%}"),
    ]
    figure = make_subplots(rows=1, cols=4, subplot_titles=[title for _, title, _ in panels])
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
    for column, (key, title, hover) in enumerate(panels, start=1):
        figure.add_trace(go.Bar(x=labels, y=[row[key] for row in rows], marker_color=colors, showlegend=False,
                                hovertemplate="%{x}: " + hover + "<extra></extra>"), row=1, col=column)
        figure.update_xaxes(title="precision", row=1, col=column)
    figure.update_yaxes(**probability_axis(), row=1, col=4)
    return styled(figure, "Precisions side by side (reference = the first, highest precision)", height=380)


def weight_histogram_figure(view: WeightQuantizationView, max_points: int = 200_000) -> go.Figure:
    """Left: value histograms of one matrix as fp32, int8 and NF4. Right: how often each of the 16 NF4
    codes is used, labelled with its level — the 4-bit grid made visible."""
    has_nf4 = view.nf4_codes is not None
    figure = make_subplots(rows=1, cols=2 if has_nf4 else 1, column_widths=[0.6, 0.4] if has_nf4 else None,
                           subplot_titles=["weight values" + (" (sampled)" if view.original.numel() > max_points else ""),
                                           "NF4 code usage (value = level x block absmax)"][: 2 if has_nf4 else 1])
    step = max(1, view.original.numel() // max_points)
    series = [("fp32", view.original, PALETTE[7]), (f"int8 (scale {view.int8_scale:.2e})", view.int8_dequantized, PALETTE[0])]
    if has_nf4:
        series.append((f"NF4 (blocks of {view.nf4_blocksize})", view.nf4_dequantized, PALETTE[3]))
    for name, values, color in series:
        figure.add_trace(go.Histogram(x=values[::step].numpy(), name=name, nbinsx=160, opacity=0.55,
                                      marker_color=color, hovertemplate="value %{x}<br>count %{y}<extra>" + name + "</extra>"),
                         row=1, col=1)
    figure.update_layout(barmode="overlay")
    figure.update_xaxes(title="weight value", row=1, col=1)
    figure.update_yaxes(title="count", row=1, col=1)
    if has_nf4:
        counts = torch.bincount(view.nf4_codes, minlength=16)
        levels = view.nf4_levels.tolist()
        figure.add_trace(go.Bar(x=[f"{i}: {level:+.3f}" for i, level in enumerate(levels)], y=counts.tolist(),
                                marker_color=PALETTE[3], showlegend=False,
                                hovertemplate="code %{x}<br>used %{y} times<extra></extra>"), row=1, col=2)
        figure.update_xaxes(title="4-bit code: level", tickangle=-60, row=1, col=2)
        figure.update_yaxes(title="weights", row=1, col=2)
    shape = " x ".join(str(s) for s in view.shape)
    styled(figure, f"{view.name} [{shape}] before and after quantization", height=500)
    return legend_below(figure)  # above, it would sit on the panel titles


def memory_fit_figure(table: Sequence[dict], budget_gb: float) -> go.Figure:
    """Grouped bars: estimated memory for each model size and precision, with the GPU budget line."""
    figure = go.Figure()
    precisions = list(dict.fromkeys(row["precision"] for row in table))
    for index, precision in enumerate(precisions):
        rows = [row for row in table if row["precision"] == precision]
        figure.add_trace(go.Bar(
            x=[row["model"] for row in rows], y=[row["total_gb"] for row in rows], name=precision,
            marker_color=PALETTE[index % len(PALETTE)],
            marker_line={"color": ["#000" if row["fits"] else MUTED for row in rows], "width": 1.5},
            customdata=[[row["weights_gb"], row["kv_gb"], "fits" if row["fits"] else "does NOT fit"] for row in rows],
            hovertemplate=precision + ": %{y:.1f} GB (weights %{customdata[0]:.1f} + KV %{customdata[1]:.1f})"
                          "<br>%{customdata[2]}<extra></extra>",
        ))
    figure.add_hline(y=budget_gb, line_dash="dash", line_color=PALETTE[3],
                     annotation_text=f"GPU memory {budget_gb:g} GB", annotation_position="top left")
    figure.update_xaxes(title="model size")
    values = [row["total_gb"] for row in table] + [budget_gb]
    # Explicit log range (in decades): autorange on a log axis with an hline can run away.
    figure.update_yaxes(title="memory needed (GB, log scale)", **log_axis("~g"),
                        range=[math.log10(min(values) / 2), math.log10(max(values) * 2)])
    return styled(figure, "Does it fit? weights x bits + KV cache", height=400)

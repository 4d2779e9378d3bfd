"""Figures for the Serving tab: the batching curve, KV-cache memory vs the formula and free memory, the
static vs continuous batching timeline (a simulation), and a paged KV cache's block table."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.figures.style import MUTED, PALETTE, legend_below, log_axis, styled
from playground.serving import BatchingCurve, BlockTable, KVMemoryReport, Schedule

MB = 1e6


def batching_figure(curve: BatchingCurve) -> go.Figure:
    """Left: total tokens/s against the ideal (batch x the first point's rate), log-log so the ideal is a straight
    line and every doubling is the same distance. Right: tokens/s per sequence."""
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                           subplot_titles=("All sequences together (server throughput)", "One sequence (what a user sees)"))
    batches = [p.batch for p in curve.points]
    first = curve.points[0]
    hover = [f"batch {p.batch}<br>step {p.step_seconds * 1000:.2f} ms (median of {len(p.step_times)})<br>"
             f"total {p.total_tokens_per_second:,.1f} tok/s ({curve.speedup(p):.2f}x batch {first.batch})<br>"
             f"per sequence {p.sequence_tokens_per_second:,.1f} tok/s" for p in curve.points]
    figure.add_trace(go.Scatter(x=batches, y=[first.sequence_tokens_per_second * b for b in batches], mode="lines",
                                name="ideal: step time stays flat", line={"color": MUTED, "dash": "dash", "width": 2},
                                hoverinfo="skip"), row=1, col=1)
    figure.add_trace(go.Scatter(x=batches, y=[p.total_tokens_per_second for p in curve.points], mode="lines+markers",
                                name="measured total tokens/s", line={"color": PALETTE[0], "width": 3},
                                marker={"size": 10}, hovertext=hover, hoverinfo="text"), row=1, col=1)
    figure.add_trace(go.Scatter(x=batches, y=[p.sequence_tokens_per_second for p in curve.points],
                                mode="lines+markers", name="measured tokens/s per sequence",
                                line={"color": PALETTE[3], "width": 3}, marker={"size": 10}, hovertext=hover,
                                hoverinfo="text"), row=1, col=2)
    for col in (1, 2):
        figure.update_xaxes(title="batch size (log)", type="log", tickvals=batches,
                            ticktext=[str(b) for b in batches], row=1, col=col)
    rates = [p.total_tokens_per_second for p in curve.points] + [first.sequence_tokens_per_second * b for b in batches]
    ticks = [2.0 ** k for k in range(math.floor(math.log2(min(rates))), math.ceil(math.log2(max(rates))) + 1)]
    figure.update_yaxes(title="total tok/s (log)", type="log", tickvals=ticks,
                        ticktext=[f"{t:g}" for t in ticks], row=1, col=1)  # doublings, like the x axis
    figure.update_yaxes(title="tok/s per sequence", rangemode="tozero", row=1, col=2)
    styled(figure, f"Batched decoding measured on {curve.device}: prompt {curve.prompt_tokens} tokens, "
                   f"{curve.decode_steps} timed steps per batch size", height=500)
    return legend_below(figure)


def kv_memory_figure(report: KVMemoryReport) -> go.Figure:
    """Cache bytes against cached tokens (batch x positions), log-log: measured points on the formula's line,
    and the device's free memory as the ceiling the line runs into."""
    figure = go.Figure()
    per_token = report.bytes_per_token
    top = max(report.tokens_that_fit, max((p.batch * p.tokens for p in report.points), default=1)) * 2
    line_x = [1, top]
    figure.add_trace(go.Scatter(x=line_x, y=[x * per_token / MB for x in line_x], mode="lines",
                                name=f"formula: {per_token:,} bytes per token", line={"color": PALETTE[0], "width": 2},
                                hoverinfo="skip"))
    figure.add_trace(go.Scatter(
        x=[p.batch * p.tokens for p in report.points], y=[p.measured_bytes / MB for p in report.points],
        mode="markers", name="measured: sum of the cache tensors' bytes",
        marker={"color": PALETTE[1], "size": 13, "symbol": "diamond", "line": {"color": "#000", "width": 1}},
        hovertext=[f"batch {p.batch} x {p.tokens} tokens = {p.batch * p.tokens:,} cached tokens<br>"
                   f"measured {p.measured_bytes:,} bytes<br>formula {p.formula_bytes:,} bytes" for p in report.points],
        hoverinfo="text"))
    figure.add_trace(go.Scatter(x=line_x, y=[report.free_bytes / MB] * 2, mode="lines",
                                name=f"free memory on {report.device}: {report.free_bytes / 1e9:.1f} GB "
                                     f"= {report.tokens_that_fit:,} more cached tokens",
                                line={"color": PALETTE[3], "dash": "dot", "width": 2}, hoverinfo="name"))
    figure.update_xaxes(title="cached tokens (batch x context)", **log_axis())
    figure.update_yaxes(title="KV cache (MB, log)", **log_axis("~g"))  # once per decade: no small '2 5' minor labels
    styled(figure, f"KV cache = 2 x {report.shape.num_layers} layers x {report.shape.num_kv_heads} KV heads x "
                   f"{report.shape.head_dim} dims x {report.bytes_per_value} bytes x tokens x batch", height=440)
    return legend_below(figure, 140)


def schedule_figure(static: Schedule, continuous: Schedule) -> go.Figure:
    """A Gantt-like timeline per policy: grey = waiting for a slot, coloured = generating."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14, subplot_titles=[
        f"{s.policy} batching: done at {s.total_seconds:.2f} s, {s.throughput:,.1f} useful tok/s, mean wait "
        f"{s.mean_waiting_seconds:.2f} s" for s in (static, continuous)])
    for row, (schedule, color) in enumerate(((static, PALETTE[1]), (continuous, PALETTE[2])), start=1):
        labels = [f"req {r.index} ({r.length} tok)" for r in schedule.requests]
        figure.add_trace(go.Bar(y=labels, x=[r.start_seconds for r in schedule.requests], base=0, orientation="h",
                                marker_color=MUTED, name="waiting for a slot", legendgroup="wait", showlegend=row == 1,
                                hovertemplate="%{y}: waits %{x:.3f} s<extra></extra>"), row=row, col=1)
        figure.add_trace(go.Bar(
            y=labels, x=[r.finish_seconds - r.start_seconds for r in schedule.requests],
            base=[r.start_seconds for r in schedule.requests], orientation="h", marker_color=color,
            name=f"generating ({schedule.policy})",
            customdata=[[r.start_step, r.finish_step, r.start_seconds, r.finish_seconds] for r in schedule.requests],
            hovertemplate="%{y}: steps %{customdata[0]}–%{customdata[1]}, %{customdata[2]:.3f}–%{customdata[3]:.3f} s"
                          "<extra></extra>"), row=row, col=1)
        figure.update_yaxes(title="request", autorange="reversed", row=row, col=1)
    figure.update_xaxes(title="seconds (simulated from the measured step costs)", row=2, col=1)
    figure.update_layout(barmode="overlay")
    height = 260 + 2 * 22 * len(static.requests)
    styled(figure, f"Simulation: {len(static.requests)} requests arriving together, {static.slots} batch slots",
           height=min(max(height, 480), 1400))
    return legend_below(figure)


def paged_figure(table: BlockTable, bytes_per_token: int) -> go.Figure:
    """Left: the block table (logical block -> physical block, shade = how full). Right: wasted cache memory."""
    figure = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.12,
                           subplot_titles=(f"Block table: {table.block_size} tokens per block, number = physical "
                                           "block, darker = fuller", "Cache memory wasted"))
    width = max(len(blocks) for blocks in table.physical_blocks)
    fill, text = [], []
    for request, blocks in enumerate(table.physical_blocks):
        row_fill = [1.0] * (len(blocks) - 1) + [table.last_block_fill(request) / table.block_size]
        fill.append(row_fill + [None] * (width - len(blocks)))
        text.append([str(b) for b in blocks] + [""] * (width - len(blocks)))
    labels = [f"req {i} ({n} tok)" for i, n in enumerate(table.lengths)]
    figure.add_trace(go.Heatmap(z=fill, x=list(range(width)), y=labels, text=text, texttemplate="%{text}",
                                colorscale=[[0, "#FDE2C4"], [1, PALETTE[0]]], zmin=0, zmax=1, showscale=False,
                                xgap=2, ygap=2,
                                hovertemplate="%{y}, logical block %{x} -> physical block %{text}<br>"
                                              "%{z:.0%} full<extra></extra>"), row=1, col=1)
    figure.update_xaxes(title="logical block", tickvals=list(range(width)), row=1, col=1)
    figure.update_yaxes(title="request", autorange="reversed", row=1, col=1)
    wasted = [("reserve max length", table.wasted_tokens_reserved, PALETTE[3]),
              ("paged", table.wasted_tokens_paged, PALETTE[2])]
    figure.add_trace(go.Bar(x=[name for name, _, _ in wasted], y=[tokens * bytes_per_token / MB for _, tokens, _ in wasted],
                            marker_color=[color for _, _, color in wasted], showlegend=False,
                            text=[f"{tokens:,} tok" for _, tokens, _ in wasted], textposition="auto",
                            hovertemplate="%{x}: %{y:.3f} MB wasted<extra></extra>"), row=1, col=2)
    figure.update_xaxes(title=f"reserve {table.reserve_tokens} tokens each vs blocks", row=1, col=2)
    figure.update_yaxes(title="MB wasted", rangemode="tozero", row=1, col=2)
    return styled(figure, f"Paged KV cache: {table.blocks_used} blocks for {table.tokens:,} tokens",
                  height=min(max(300 + 24 * len(table.lengths), 420), 1200))

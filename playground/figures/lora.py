"""Figures for the LoRA tab: loss curves, training dynamics, the "why LoRA" parameter budget and the
next-token shift before/after. Data in (the dataclasses of playground.lora), plotly Figure out."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.figures.style import MUTED, PALETTE, legend_below, log_axis, probability_axis, step_axis, styled
from playground.lora import SMOOTHING, LoraBudget, NextTokenShift, TrainingProgress
from playground.tokenization import token_label

MAX_POINTS = 500  # a longer curve is thinned to this many points (every n-th step; the note says so)
BEFORE_COLOR = MUTED  # grey: the base model
AFTER_COLOR = PALETTE[0]  # blue: the adapted model
EVAL_COLOR = PALETTE[3]  # vermillion: held-out eval loss
SMOOTH_COLOR = PALETTE[0]


def thin(xs: Sequence[float], *series: Sequence[float], limit: int = MAX_POINTS) -> tuple[list, ...]:
    """Every n-th point (always keeping the last) so a curve has at most `limit` points."""
    stride = max(1, -(-len(xs) // limit))
    keep = list(range(0, len(xs), stride))
    if xs and keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return tuple([values[i] for i in keep] for values in (xs, *series))


def _thinning_note(n: int) -> str:
    return f" (every {-(-n // MAX_POINTS)}th of {n} steps shown)" if n > MAX_POINTS else ""


def loss_figure(progress: TrainingProgress) -> go.Figure:
    """Train loss (raw, thin; smoothed, bold) and eval loss per optimizer step."""
    figure = go.Figure()
    steps, raw, smooth = thin(progress.steps, progress.train_loss, progress.smoothed_loss)
    figure.add_trace(go.Scatter(x=steps, y=raw, mode="lines+markers", name="train loss (each step)",
                                    line={"color": MUTED, "width": 1}, marker={"size": 4},
                                    hovertemplate="step %{x}<br>train loss %{y:.4f} nats/token<extra></extra>"))
    figure.add_trace(go.Scatter(x=steps, y=smooth, mode="lines", name=f"train loss (smoothed, EMA {SMOOTHING})",
                                line={"color": SMOOTH_COLOR, "width": 3},
                                hovertemplate="step %{x}<br>smoothed %{y:.4f} nats/token<extra></extra>"))
    figure.add_trace(go.Scatter(x=list(progress.eval_steps), y=list(progress.eval_loss), mode="lines+markers",
                                name="eval loss (held-out)", line={"color": EVAL_COLOR, "width": 2, "dash": "dot"},
                                marker={"size": 9, "symbol": "diamond"},
                                hovertemplate="step %{x}<br>eval loss %{y:.4f} nats/token<extra></extra>"))
    title = "Loss on the " + ("response tokens" if progress.start.get("settings", {}).get("mask_prompt", True)
                              else "whole sequence") + _thinning_note(len(progress.steps))
    figure.update_xaxes(title_text="optimizer step", range=[-0.5, progress.total_steps + 0.5],
                        **step_axis(progress.total_steps))
    figure.update_yaxes(title_text="cross-entropy (nats per token)")
    return legend_below(styled(figure, title, height=480))


def dynamics_figure(progress: TrainingProgress) -> go.Figure:
    """Learning rate, gradient norm (before clipping) and throughput per step, stacked on one step axis."""
    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=("learning rate", "gradient norm (before clipping)", "tokens per second"))
    steps, lr, norm, speed = thin(progress.steps, progress.learning_rate, progress.grad_norm,
                                  progress.tokens_per_second)
    rows = ((lr, "learning rate", PALETTE[2], "%{y:.3g}"), (norm, "gradient norm", PALETTE[1], "%{y:.4f}"),
            (speed, "tokens/s", PALETTE[4], "%{y:.1f} tokens/s"))
    for row, (values, name, color, fmt) in enumerate(rows, start=1):
        figure.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=name, marker={"size": 4},
                                    line={"color": color}, hovertemplate=f"step %{{x}}<br>{name} {fmt}<extra></extra>"),
                         row=row, col=1)
    clip = progress.start.get("settings", {}).get("max_grad_norm")
    if clip is not None and steps:
        figure.add_hline(y=clip, line={"dash": "dash", "color": MUTED}, row=2, col=1,
                         annotation_text=f"clipped to {clip:g} above this line", annotation_position="top left")
    figure.update_yaxes(title_text="lr", row=1, col=1)
    figure.update_yaxes(title_text="‖g‖₂", row=2, col=1)
    figure.update_yaxes(title_text="tokens/s", row=3, col=1)
    figure.update_xaxes(title_text="optimizer step", row=3, col=1)
    figure.update_xaxes(**step_axis(progress.total_steps))
    figure = styled(figure, "Training dynamics", height=480)
    figure.update_layout(showlegend=False)  # each panel is titled; one trace per panel
    return figure


def budget_figure(budget: LoraBudget) -> go.Figure:
    """Per targeted matrix type: parameters full fine-tuning would train vs LoRA's r(d + k), log scale."""
    names = [f"{m.name}<br>{m.d_out}×{m.k_in} ×{m.count}" for m in budget.matrices]
    figure = go.Figure()
    figure.add_trace(go.Bar(
        x=names, y=[m.full for m in budget.matrices], name="full fine-tuning: d·k per matrix", marker_color=BEFORE_COLOR,
        customdata=[[m.d_out, m.k_in, m.count] for m in budget.matrices],
        hovertemplate="%{customdata[2]} matrices of %{customdata[0]}×%{customdata[1]}<br>"
                      "full: %{y:,} parameters<extra></extra>"))
    figure.add_trace(go.Bar(
        x=names, y=[m.lora for m in budget.matrices], name=f"LoRA: r·(d + k) per matrix, r = {budget.rank}",
        marker_color=AFTER_COLOR, customdata=[[m.full / m.lora] for m in budget.matrices],
        hovertemplate="LoRA: %{y:,} parameters<br>%{customdata[0]:.1f}× fewer<extra></extra>"))
    figure.update_layout(barmode="group")
    figure.update_xaxes(title_text="targeted matrix (shape d×k, how many)")
    figure.update_yaxes(title_text="trainable parameters (log scale)", **log_axis())
    return styled(figure, f"Why LoRA: {budget.lora_total:,} instead of {budget.full_total:,} parameters "
                          f"({budget.reduction_factor:.0f}× fewer)", height=460)


def token_shift_figure(shift: NextTokenShift) -> go.Figure:
    """The first answer token's probabilities before and after, for the tokens that gained or lost most."""
    labels = [f"{token_label(t.text)}  #{t.token_id}" for t in shift.tokens]
    figure = go.Figure()
    for name, values, color in (("before (base model)", [t.before for t in shift.tokens], BEFORE_COLOR),
                                ("after (with the LoRA adapter)", [t.after for t in shift.tokens], AFTER_COLOR)):
        figure.add_trace(go.Bar(
            y=labels, x=values, orientation="h", name=name, marker_color=color,
            customdata=[[t.before, t.after, t.delta] for t in shift.tokens],
            hovertemplate="%{y}<br>before %{customdata[0]:.4f}<br>after %{customdata[1]:.4f}"
                          "<br>change %{customdata[2]:+.4f}<extra></extra>"))
    figure.update_layout(barmode="group")
    figure.update_yaxes(title_text="token (biggest gain on top)", autorange="reversed")
    largest = max((max(t.before, t.after) for t in shift.tokens), default=1.0)
    figure.update_xaxes(title_text="probability of being the first answer token", **probability_axis(range=[0, min(1.0, 1.1 * largest)]))
    height = max(320, 80 + 34 * len(labels))
    return styled(figure, f"Next token: '{token_label(shift.top_before)}' → '{token_label(shift.top_after)}' "
                          f"(KL after‖before = {shift.kl_bits:.2f} bits)", height=height)

"""Calibration figures: reliability diagrams (one or several panels side by side) and the confidence
histogram. Plain numbers in (playground.calibration dataclasses), plotly Figure out."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.calibration import ReliabilityBin
from playground.figures.style import MUTED, PALETTE, legend_below, probability_axis, styled

CORRECT_COLOUR = PALETTE[0]  # blue
WRONG_COLOUR = PALETTE[3]  # vermillion
GAP_COLOUR = PALETTE[1]  # orange
COUNT_SCALE = [[0.0, "#C6DBEF"], [1.0, "#08306B"]]  # light blue (few items) to navy, never white
MIN_BAR_WIDTH = 0.004  # a bin whose confidences are all equal still gets a bar; thin enough not to hide neighbours


def _bin_hover(bin_: ReliabilityBin) -> str:
    direction = "over-confident" if bin_.gap > 0 else "under-confident"  # type: ignore[operator]
    return (f"confidence {bin_.lower:.3f}–{bin_.upper:.3f}<br>{bin_.count} items<br>"
            f"mean confidence {bin_.mean_confidence:.4f}<br>accuracy {bin_.accuracy:.4f}<br>"
            f"gap {bin_.gap:+.4f} ({direction})")


def _add_reliability_panel(figure: go.Figure, bins: Sequence[ReliabilityBin], column: int, max_count: int,
                           show_legend: bool) -> None:
    filled = [b for b in bins if b.count > 0]
    centres = [(b.lower + b.upper) / 2 for b in filled]
    widths = [max(b.upper - b.lower, MIN_BAR_WIDTH) for b in filled]
    hover = [_bin_hover(b) for b in filled]
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": "#444", "dash": "dash", "width": 1.5},
                                name="perfect calibration", legendgroup="diag", showlegend=show_legend,
                                hoverinfo="skip"), row=1, col=column)
    figure.add_trace(go.Bar(
        x=centres, y=[b.accuracy for b in filled], width=widths, name="accuracy (colour: items)",
        legendgroup="acc", showlegend=show_legend, hovertext=hover, hoverinfo="text",
        marker={"color": [b.count for b in filled], "coloraxis": "coloraxis", "line": {"color": "#1f3b57", "width": 1}},
    ), row=1, col=column)
    # The gap: a translucent band from accuracy up (or down) to the bin's mean confidence.
    figure.add_trace(go.Bar(
        x=centres, y=[abs(b.gap) for b in filled], base=[min(b.accuracy, b.mean_confidence) for b in filled],
        width=widths, name="gap to confidence", legendgroup="gap", showlegend=show_legend,
        hovertext=hover, hoverinfo="text",
        marker={"color": GAP_COLOUR, "opacity": 0.45, "pattern": {"shape": "/", "fgcolor": WRONG_COLOUR},
                "line": {"color": WRONG_COLOUR, "width": 1}},
    ), row=1, col=column)
    figure.add_trace(go.Scatter(
        x=[b.mean_confidence for b in filled], y=[b.accuracy for b in filled], mode="markers",
        marker={"color": "black", "size": 7, "symbol": "diamond"}, name="bin (confidence, accuracy)",
        legendgroup="points", showlegend=show_legend, hovertext=hover, hoverinfo="text",
    ), row=1, col=column)
    figure.update_xaxes(title_text="confidence", range=[0, 1], dtick=0.2, row=1, col=column)
    figure.update_yaxes(title_text="accuracy" if column == 1 else None, **probability_axis(dtick=0.2), row=1,
                        col=column)
    figure.layout.coloraxis.cmax = max(max_count, 1)


def reliability_figure(panels: Sequence[tuple[str, Sequence[ReliabilityBin]]], title: str,
                       height: int = 460) -> go.Figure:
    """Reliability diagrams side by side, one per (subtitle, bins): bars at each bin's accuracy
    (coloured by how many items it holds, one colour scale for all panels), the diagonal of perfect
    calibration, and the gap to the bin's mean confidence shaded."""
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=[name for name, _ in panels],
                           horizontal_spacing=0.08)
    max_count = max((b.count for _, bins in panels for b in bins), default=1)
    figure.update_layout(coloraxis={"colorscale": COUNT_SCALE, "cmin": 0,
                                    "colorbar": {"title": {"text": "items"}, "thickness": 14}})
    for column, (_, bins) in enumerate(panels, start=1):
        _add_reliability_panel(figure, bins, column, max_count, show_legend=column == 1)
    figure.update_layout(barmode="overlay", bargap=0)
    figure = styled(figure, title, height)
    figure.update_layout(margin={"t": 90})
    return legend_below(figure, margin_bottom=130)


def confidence_histogram(confidence: np.ndarray, correct: np.ndarray, title: str, n_bins: int = 20,
                         height: int = 380) -> go.Figure:
    """How many predictions fall at each confidence, stacked into right (blue) and wrong (vermillion)."""
    edges = np.arange(n_bins + 1) / n_bins
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    right = np.bincount(index[correct], minlength=n_bins)
    wrong = np.bincount(index[~correct], minlength=n_bins)
    centres = (edges[:-1] + edges[1:]) / 2
    hover = [f"confidence {lo:.2f}–{hi:.2f}<br>{r} right, {w} wrong" + (f" ({r / (r + w):.1%} right)" if r + w else "")
             for lo, hi, r, w in zip(edges[:-1], edges[1:], right, wrong)]
    figure = go.Figure([
        go.Bar(x=centres, y=right, width=1 / n_bins, name="right", marker_color=CORRECT_COLOUR, hovertext=hover,
               hoverinfo="text", marker_line={"color": "white", "width": 1}),
        go.Bar(x=centres, y=wrong, width=1 / n_bins, name="wrong", marker_color=WRONG_COLOUR, hovertext=hover,
               hoverinfo="text", marker_line={"color": "white", "width": 1}),
    ])
    figure.update_layout(barmode="stack")
    figure.update_xaxes(title_text="confidence", range=[0, 1], dtick=0.1, gridcolor=MUTED)
    figure.update_yaxes(title_text="predictions")
    return styled(figure, title, height)

"""One look for every figure: readable fonts, a clean template, titled axes, and the axes every tab shares
(probabilities end at 100%, steps tick on whole numbers, log axes tick once per decade)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

FONT_SIZE = 14
# Colour-blind-safe palette (Okabe-Ito), used in this order across the app.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MUTED = "#B0B7C3"


def styled(figure: go.Figure, title: str, height: int = 420) -> go.Figure:
    """Apply the house layout: title, white template, readable fonts, hover labels with full numbers."""
    figure.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        # The template object, not its name: a name is looked up and validated again on every call
        # (~40 ms per figure here); the object gives the same figure JSON.
        template=pio.templates["plotly_white"],
        font={"size": FONT_SIZE},
        height=height,
        margin={"l": 70, "r": 30, "t": 70, "b": 60},
        hoverlabel={"font_size": FONT_SIZE},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
    )
    if sum(trace.showlegend is not False for trace in figure.data) > 1:
        # a legend above the plot runs into the title on a phone or at presenter sizes: below it, always
        legend_below(figure, max(figure.layout.margin.b or 0, 120))
    return figure


def legend_below(figure: go.Figure, margin_bottom: int = 120) -> go.Figure:
    """Put the legend at the bottom edge of the figure, under the x-axis title.

    Anchored to the container, not the plot area: at a paper-relative y the legend covers the axis title
    as soon as fonts grow (presenter mode) or the plot gets shorter, and within the plot area's width
    its entries wrap one per row. `margin_bottom` (px) holds the tick
    labels, the axis title and the legend rows."""
    figure.update_layout(legend={"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom",
                                 "xref": "container", "x": 0.01, "xanchor": "left"}, margin={"b": margin_bottom})
    return figure


def colorbar(title: str, **extra: Any) -> dict[str, Any]:
    """A colour bar with its title along its right side: a title on top meets the top tick label (the '1' of a
    weight scale) as soon as fonts grow (presenter mode) or the bar gets short."""
    return {"title": {"text": title, "side": "right"}, **extra}


def probability_axis(**extra: Any) -> dict[str, Any]:
    """An axis of probabilities (or shares, rates, scores in 0..1): 0% to exactly 100%, never beyond
    (a 105% tick reads as a bug). Pass `range` to zoom in on a small top value."""
    return {"range": [0, 1], "tickformat": ".0%", **extra}


def whole_dtick(count: int, ticks: int = 10) -> int:
    """A whole-number tick step giving about `ticks` ticks over `count` steps (steps are integers: no 1.5)."""
    return max(1, -(-int(count) // ticks))


def step_axis(count: int, **extra: Any) -> dict[str, Any]:
    """An axis of steps, positions or counts: ticks on whole numbers only, starting at 0."""
    return {"tick0": 0, "dtick": whole_dtick(count), "tickformat": "d", **extra}


def log_axis(tickformat: str = "~s", **extra: Any) -> dict[str, Any]:
    """A log axis with one labelled tick per decade (1k, 10k, 100k …) instead of plotly's '2 5 100 2 5'."""
    return {"type": "log", "dtick": 1, "tickformat": tickformat, **extra}


def empty_figure(message: str, title: str = "", height: int = 260) -> go.Figure:
    """A friendly empty state: a sentence in the middle of a blank plot, instead of an empty axis."""
    figure = go.Figure()
    figure.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                          font={"size": 15, "color": "#4B5563"})
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return styled(figure, title, height)

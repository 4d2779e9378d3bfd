"""Figures for the Attention tab: masks, weight heatmaps, the per-token bar chart, small multiples,
the scores -> mask -> softmax story, and KV-cache memory. Data in, plotly Figure out.

Token axes are categorical with labels "i token" (the index keeps repeated tokens apart and plotly
thins the tick labels when there are many); hover text always shows both tokens and the exact value.
Masked cells are NaN, which plotly leaves blank.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from playground.attention import (
    AttentionGrid,
    AttentionRow,
    AttentionView,
    KVCacheEstimate,
    MaskView,
    ScoreStory,
    head_name,
)
from playground.figures.style import MUTED, PALETTE, colorbar, styled

MASKED_COLOR = "#E5E7EB"
ALLOWED_COLOR = PALETTE[0]
WEIGHT_SCALE = "Viridis"
WEIGHT_STOPS = [list(stop) for stop in go.Heatmap(colorscale=WEIGHT_SCALE).colorscale]  # as validation writes them
SCORE_SCALE = "RdBu_r"
LABEL_CHARS = 12  # token labels longer than this are cut on the axes (hover shows them whole)
STORY_TOKENS = 64  # the three story panels show at most the first 64 tokens (each panel is a third as wide)
# Heatmap values travel to the browser as float32 arrays (base64 in the figure JSON): half of float64.


def axis_labels(tokens: tuple[str, ...] | list[str]) -> list[str]:
    """'12 ·Paris': unique even when a token repeats."""
    return [f"{i} {token if len(token) <= LABEL_CHARS else token[: LABEL_CHARS - 1] + '…'}"
            for i, token in enumerate(tokens)]


def _square_height(n: int, minimum: int = 560, maximum: int = 1000) -> int:
    """Tall enough for one readable label per row up to ~25 tokens, also at presenter mode's larger fonts
    (plotly skips every other label once they touch); plotly thins labels beyond that."""
    return int(min(maximum, max(minimum, 260 + 28 * n)))


def _axis_names(index: int) -> tuple[str, str, str]:
    """Layout keys of subplot `index` (1-based, plotly's order) and the x axis id its y axis scales with."""
    suffix = "" if index == 1 else str(index)
    return f"xaxis{suffix}", f"yaxis{suffix}", f"x{suffix}"


def _token_axes(index: int = 1, x_title: str = "key (attended to)", y_title: str = "query (attending)") -> dict:
    """Layout entries for a token-by-token subplot: square cells, query 0 at the top like a matrix.
    Returned as one dict so a figure applies all its axes in one update (per-axis updates are slow)."""
    x_name, y_name, x_id = _axis_names(index)
    return {x_name: {"title": {"text": x_title}, "type": "category", "tickangle": -60, "constrain": "domain"},
            y_name: {"title": {"text": y_title}, "type": "category", "autorange": "reversed", "scaleanchor": x_id,
                     "constrain": "domain"}}


def _panels(count: int, cols: int, titles: list[str], h_gap: float, v_gap: float = 0.0) -> tuple[dict, list[str]]:
    """Layout of `count` panels in rows of `cols` (what make_subplots builds, ~10x cheaper: one dict the
    figure validates once, instead of one validated update per axis) and each panel's x axis id."""
    rows = math.ceil(count / cols)
    width, height = (1 - h_gap * (cols - 1)) / cols, (1 - v_gap * (rows - 1)) / rows
    layout: dict = {"annotations": []}
    x_ids = []
    for index in range(count):
        row, col = divmod(index, cols)
        x_name, y_name, x_id = _axis_names(index + 1)
        left, top = col * (width + h_gap), 1 - row * (height + v_gap)
        layout[x_name] = {"domain": [max(0.0, left), min(1.0, left + width)], "anchor": x_id.replace("x", "y")}
        layout[y_name] = {"domain": [max(0.0, top - height), min(1.0, top)], "anchor": x_id}
        layout["annotations"].append({"text": titles[index], "x": left + width / 2, "y": top, "xref": "paper",
                                      "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                      "showarrow": False, "font": {}})
        x_ids.append(x_id)
    return layout, x_ids


def _merge_axes(layout: dict, axes: dict) -> dict:
    """Add axis properties (e.g. from _token_axes) to a _panels layout without losing the domains."""
    for name, properties in axes.items():
        layout[name] = {**layout.get(name, {}), **properties}
    return layout


def _gaps(n: int) -> dict[str, int]:
    return {"xgap": 1, "ygap": 1} if n <= 48 else {}


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def mask_figure(view: MaskView) -> go.Figure:
    """The boolean mask(s) as two-colour heatmaps: blue = the query may attend to the key, grey = masked."""
    count = len(view.sequences)
    layout, x_ids = _panels(count, count, [f"{s.name}: {s.allowed_pairs} of {s.total_pairs} pairs allowed"
                                           for s in view.sequences], h_gap=0.12)
    scale = [[0.0, MASKED_COLOR], [0.5, MASKED_COLOR], [0.5, ALLOWED_COLOR], [1.0, ALLOWED_COLOR]]
    traces = []
    for index, (sequence, x_id) in enumerate(zip(view.sequences, x_ids), start=1):
        labels = axis_labels(sequence.tokens)
        traces.append(go.Heatmap(
            z=sequence.allowed.numpy().astype(np.int8), x=labels, y=labels, zmin=0, zmax=1, colorscale=scale,
            xaxis=x_id, yaxis=x_id.replace("x", "y"), showscale=index == count, name=sequence.name,
            colorbar=colorbar("mask", tickvals=[0.25, 0.75], ticktext=["masked (−∞)", "allowed (0)"], len=0.5),
            hovertemplate="query %{y}<br>key %{x}<br>%{z} (1 = allowed, 0 = masked)<extra></extra>",
            **_gaps(len(labels))))
        _merge_axes(layout, _token_axes(index))
    figure = go.Figure(data=traces, layout=layout)
    return styled(figure, f"{view.label}: {view.description}", height=_square_height(len(view.sequences[0].tokens)))


# ---------------------------------------------------------------------------------------------
# Real weights
# ---------------------------------------------------------------------------------------------


def _masked(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    return np.where(allowed, values, np.nan)


def attention_heatmap(view: AttentionView) -> go.Figure:
    """Token-by-token weights of one layer and head (or the mean over heads); masked keys blank."""
    labels = axis_labels(view.tokens)
    weights = _masked(view.weights.numpy().astype(np.float32), view.allowed.numpy())
    # Query 0 can only attend to itself (weight 1); the colour scale tops out at the largest other weight.
    top = float(np.nanmax(weights[1:])) if len(labels) > 1 else 1.0
    # Unvalidated (this figure is redrawn at every layer or head move: validation took ~6 ms of ~10); the unit tests
    # validate it.
    figure = go.Figure(data=[{
        "type": "heatmap", "z": weights, "x": labels, "y": labels, "colorscale": WEIGHT_STOPS, "zmin": 0, "zmax": top,
        **_gaps(len(labels)), "colorbar": colorbar("attention weight", len=0.6),
        "hovertemplate": "query %{y}<br>key %{x}<br>weight %{z:.6f}<extra></extra>",
    }], layout=_token_axes(), _validate=False)
    where = head_name(view.head) + ("" if view.kv_head is None else f" (reads KV head {view.kv_head})")
    return styled(figure, f"Layer {view.layer}, {where}<br><sup>each row sums to 1 · blank = masked (future) keys</sup>",
                  height=_square_height(len(labels)))


def query_row_figure(row: AttentionRow, view: AttentionView) -> go.Figure:
    """Bar chart: how much one query token attends to each earlier token."""
    labels = axis_labels(row.keys)
    figure = go.Figure(data=[{  # unvalidated, as attention_heatmap (it follows the query slider)
        "type": "bar", "x": labels, "y": list(row.weights), "marker": {"color": ALLOWED_COLOR}, "name": "weight",
        "hovertemplate": "key %{x}<br>weight %{y:.6f}<extra></extra>",
    }], layout={"xaxis": {"title": {"text": "key token (position and text)"}, "type": "category", "tickangle": -60},
                "yaxis": {"title": {"text": "attention weight"}, "rangemode": "tozero"}}, _validate=False)
    title = (f"What token {row.position} “{row.token}” attends to<br><sup>layer {view.layer}, {head_name(view.head)}"
             f" · its weights sum to {sum(row.weights):.4f}</sup>")
    return styled(figure, title, height=380)


def attention_grid_figure(grid: AttentionGrid) -> go.Figure:
    """Small multiples of the weights. In 'heads' mode each row of the grid is one GQA group: the query
    heads in a row share one KV head. Thumbnails are block maxima, so thin lines stay visible."""
    count = len(grid.views)
    if grid.mode == "heads":
        cols = max(len(group) for group in grid.kv_groups)
    else:
        cols = min(6, count)
    rows = math.ceil(count / cols)
    titles = []
    for view, pattern in zip(grid.views, grid.patterns):
        name = f"h{view.head} · KV {view.kv_head}" if grid.mode == "heads" else f"layer {view.layer}"
        kind, value = pattern.dominant
        titles.append(f"{name}<br>{kind} {value:.2f}{' bits' if kind == 'spread' else ''}")
    layout, x_ids = _panels(count, cols, titles, h_gap=0.03, v_gap=0.5 / rows)
    traces = []
    for index, (view, thumbnail, x_id) in enumerate(zip(grid.views, grid.thumbnails, x_ids)):
        row, col = divmod(index, cols)
        x_name, y_name, _ = _axis_names(index + 1)
        name = titles[index].split("<br>")[0]
        positions = np.arange(thumbnail.shape[0]) * grid.block  # first token of each block
        allowed = _block_allowed(view, grid.block, thumbnail.shape[0])
        traces.append(go.Heatmap(
            z=_masked(thumbnail.numpy().astype(np.float32), allowed), x=positions, y=positions, xaxis=x_id,
            yaxis=x_id.replace("x", "y"), coloraxis="coloraxis", name=name,
            hovertemplate=(f"{name}<br>query from %{{y}}, key from %{{x}}"
                           f"<br>{'max ' if grid.block > 1 else ''}weight %{{z:.4f}}<extra></extra>"),
        ))
        _merge_axes(layout, {
            x_name: {"showticklabels": False, "title": {"text": "key" if row == rows - 1 else None, "standoff": 2}},
            y_name: {"showticklabels": False, "autorange": "reversed",
                     "title": {"text": "query" if col == 0 else None, "standoff": 2}}})
        if grid.mode == "heads":  # one title colour per GQA group
            layout["annotations"][index]["font"]["color"] = PALETTE[view.kv_head % len(PALETTE)]
    layout["coloraxis"] = {"colorscale": WEIGHT_SCALE, "cmin": 0,
                           "colorbar": colorbar("weight", len=0.6)}
    figure = go.Figure(data=traces, layout=layout)
    block_note = f"block max over {grid.block}×{grid.block} tokens" if grid.block > 1 else "one cell per token pair"
    title = ("All heads of layer " + str(grid.views[0].layer) + ": one row per GQA group (heads sharing a KV head)"
             if grid.mode == "heads" else f"{head_name(grid.views[0].head).capitalize()} across all layers")
    styled(figure, f"{title} — {block_note}", height=170 * rows + 120)
    return figure.update_layout(margin={"t": 110})


def _block_allowed(view: AttentionView, block: int, cells: int) -> np.ndarray:
    """A thumbnail cell is blank only when every token pair in its block is masked."""
    allowed = view.allowed.numpy()
    padded = np.zeros((cells * block, cells * block), dtype=bool)
    padded[: allowed.shape[0], : allowed.shape[1]] = allowed
    return padded.reshape(cells, block, cells, block).any(axis=(1, 3))


# ---------------------------------------------------------------------------------------------
# Scores -> mask -> softmax
# ---------------------------------------------------------------------------------------------


def score_story_figure(story: ScoreStory) -> go.Figure:
    """Three panels: raw scores QKᵀ·scale (all pairs), the same with masked pairs blank (−∞), the softmax."""
    shown = min(len(story.tokens), STORY_TOKENS)  # queries < shown only ever see keys < shown (causal)
    labels = axis_labels(story.tokens[:shown])
    scores = story.scores[:shown, :shown].numpy().astype(np.float32)
    allowed = story.allowed[:shown, :shown].numpy()
    layout, x_ids = _panels(3, 3, [f"1. raw scores q·k × {story.scale:.4f} (=1/√d)", "2. + mask: blank = −∞",
                                   "3. softmax per row = weights"], h_gap=0.09)
    limit = float(np.abs(scores).max()) or 1.0
    panels = [(scores, "coloraxis", "score %{z:.4f}"), (_masked(scores, allowed), "coloraxis", "score %{z:.4f}"),
              (_masked(story.probabilities[:shown, :shown].numpy().astype(np.float32), allowed), "coloraxis2",
               "weight %{z:.6f}")]
    traces = [go.Heatmap(z=values, x=labels, y=labels, coloraxis=axis, xaxis=x_id, yaxis=x_id.replace("x", "y"),
                         hovertemplate=f"query %{{y}}<br>key %{{x}}<br>{value_text}<extra></extra>",
                         **_gaps(len(labels)))
              for (values, axis, value_text), x_id in zip(panels, x_ids)]
    for index in (1, 2, 3):
        _merge_axes(layout, _token_axes(index, y_title="query (attending)" if index == 1 else ""))
    for name in ("yaxis2", "yaxis3"):  # one query axis, labelled once, for the three panels
        layout[name].update(matches="y", showticklabels=False)
    layout["coloraxis"] = {"colorscale": SCORE_SCALE, "cmin": -limit, "cmax": limit,
                           "colorbar": colorbar("score", x=0.64, len=0.7, thickness=12)}
    layout["coloraxis2"] = {"colorscale": WEIGHT_SCALE, "cmin": 0,
                            "colorbar": colorbar("weight", x=1.01, len=0.7, thickness=12)}
    figure = go.Figure(data=traces, layout=layout)
    title = (f"Layer {story.layer}, head {story.head} (KV head {story.kv_head}): max |our softmax − the model's "
             f"weights| = {story.max_abs_diff_vs_model:.1e}")
    if shown < len(story.tokens):
        title += f" — first {shown} of {len(story.tokens)} tokens"
    return styled(figure, title, height=_square_height(len(labels), 480, 640))


# ---------------------------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------------------------


def kv_cache_figure(estimate: KVCacheEstimate, model_label: str = "") -> go.Figure:
    """Cache size against context length for MHA, the model's layout and MQA; markers at the chosen length."""
    figure = go.Figure()
    contexts = np.array(estimate.curve_contexts)
    for index, variant in enumerate(estimate.variants):
        name = f"{variant.name}: {variant.kv_heads} KV head{'s' if variant.kv_heads > 1 else ''}"
        name += " (this model)" if variant.is_this_model else ""
        chosen = estimate.megabytes(variant.kv_heads)
        # the size at the chosen length goes in the legend: beside the marker it runs into the axis on a phone
        shown = f"{name} · {chosen:,.1f} MB at {estimate.context_length:,}"
        sizes = np.array([estimate.megabytes(variant.kv_heads, int(c)) for c in contexts])
        figure.add_trace(go.Scatter(
            x=contexts, y=sizes, mode="lines", name=shown, legendgroup=name,
            line={"color": PALETTE[index], "width": 4 if variant.is_this_model else 2,
                  "dash": "solid" if variant.is_this_model else "dot"},
            hovertemplate=f"{name}<br>context %{{x}} tokens<br>%{{y:.3f}} MB<extra></extra>",
        ))
        figure.add_trace(go.Scatter(
            x=[estimate.context_length], y=[chosen], mode="markers", showlegend=False, legendgroup=name,
            marker={"color": PALETTE[index], "size": 10}, name=name,
            hovertemplate=f"{name}<br>context %{{x}} tokens<br>%{{y:.3f}} MB<extra></extra>",
        ))
    figure.add_vline(x=estimate.context_length, line={"color": MUTED, "dash": "dash"},
                     annotation_text=f"chosen context: {estimate.context_length:,} tokens",
                     annotation_position="top")  # above the plot: clear of the markers and their texts
    figure.update_xaxes(title_text="context length (tokens)", rangemode="tozero")
    figure.update_yaxes(title_text="KV cache (MB = 10⁶ bytes)", rangemode="tozero")
    shape = estimate.shape
    title = (f"{model_label + ': ' if model_label else ''}2 (K,V) × {shape.num_layers} layers × KV heads × "
             f"{shape.head_dim} dims × {estimate.bytes_per_value} B ({estimate.dtype})"
             f"{f' × batch {estimate.batch_size}' if estimate.batch_size > 1 else ''}")
    return styled(figure, title, height=440)

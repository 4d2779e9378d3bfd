"""Figures for the RAG tab: chunk sizes, the scores of the retrieved chunks, each score's distribution
over the whole corpus with the top-k cutoff, the 2D embedding map, and the evaluation table.

Data in (the dataclasses of playground.rag), plotly Figure out. Hover text carries the exact
numbers; colours are named in legends or axis titles.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.figures.style import MUTED, PALETTE, empty_figure, legend_below, probability_axis, styled
from playground.rag.chunking import ChunkSet
from playground.rag.evaluation import EvaluationReport
from playground.rag.projection import Projector
from playground.rag.ranking import Retrieval, ScoredChunk

SCORE_COLORS = {"dense": PALETTE[0], "bm25": PALETTE[1], "hybrid": PALETTE[2], "rerank": PALETTE[3]}
SCORE_TITLES = {"dense": "dense cosine", "bm25": "BM25", "hybrid": "hybrid (RRF)", "rerank": "rerank P(Yes)"}
RETRIEVED_COLOR = PALETTE[3]
QUERY_COLOR = "#000000"
MAX_MAP_POINTS = 3000  # beyond this the map shows a fixed-seed sample (retrieved chunks always kept)
HOVER_CHARS = 90


def _hover_text(text: str) -> str:
    flat = " ".join(text.split())
    return (flat[: HOVER_CHARS - 1] + "…") if len(flat) > HOVER_CHARS else flat


def chunk_length_figure(chunk_set: ChunkSet, window_tokens: int) -> go.Figure:
    """Histogram of chunk lengths in embedder tokens, with the embedder's window marked."""
    counts = [chunk.token_count for chunk in chunk_set.chunks]
    if not counts:
        return empty_figure("No chunks.", "Chunk lengths")
    figure = go.Figure(go.Histogram(x=counts, nbinsx=min(40, max(5, len(set(counts)))), marker_color=PALETTE[0],
                                    name="chunks", hovertemplate="%{x} tokens: %{y} chunks<extra></extra>"))
    over = sum(count > window_tokens for count in counts)
    figure.add_vline(x=window_tokens, line_dash="dash", line_color=PALETTE[3])
    figure.add_annotation(x=window_tokens, y=1, yref="paper", showarrow=False, xanchor="right", yanchor="bottom",
                          text=f"embedder reads {window_tokens} tokens ({over} chunks longer)",
                          font={"color": PALETTE[3]})
    figure.update_xaxes(title="chunk length (embedding-model tokens)", range=[0, max(max(counts), window_tokens) * 1.05])
    figure.update_yaxes(title="chunks")
    return styled(figure, f"{len(counts)} chunks ({chunk_set.settings.describe()})", 320)


def _row_label(row: ScoredChunk) -> str:
    return f"#{row.rank} {row.chunk.source} · c{row.chunk.index}"


def _rank(value: int | None) -> str:
    return "-" if value is None else str(value)


def score_bars_figure(retrieval: Retrieval) -> go.Figure:
    """One panel per score, one bar per retrieved chunk (best at the top)."""
    rows = retrieval.rows
    if not rows:
        return empty_figure("No chunk matched.", "Scores of the retrieved chunks")
    kinds = ["dense", "bm25", "hybrid"] + (["rerank"] if retrieval.reranked else [])
    figure = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, horizontal_spacing=0.03)
    labels = [_row_label(row) for row in rows]
    values = {"dense": [r.dense_score for r in rows], "bm25": [r.bm25_score for r in rows],
              "hybrid": [r.hybrid_score for r in rows], "rerank": [r.rerank_score or 0.0 for r in rows]}
    ranks = {"dense": [r.dense_rank for r in rows], "bm25": [r.bm25_rank for r in rows],
             "hybrid": [r.hybrid_rank for r in rows], "rerank": [r.rank if retrieval.reranked else None for r in rows]}
    for column, kind in enumerate(kinds, start=1):
        hover = [f"{label}<br>{SCORE_TITLES[kind]} = {value:.4f}<br>rank by {SCORE_TITLES[kind]}: {_rank(rank)}"
                 for label, value, rank in zip(labels, values[kind], ranks[kind])]
        figure.add_trace(go.Bar(y=labels, x=values[kind], orientation="h", marker_color=SCORE_COLORS[kind],
                                name=SCORE_TITLES[kind], hovertext=hover, hoverinfo="text",
                                text=[f"{v:.3f}" for v in values[kind]], textposition="auto"), row=1, col=column)
        figure.update_xaxes(title_text=SCORE_TITLES[kind], row=1, col=column)
    figure.update_yaxes(autorange="reversed", title_text="retrieved chunk (final rank)", row=1, col=1)
    figure.update_layout(showlegend=False, bargap=0.25)
    return styled(figure, f"Scores of the top {len(rows)} ({retrieval.method}"
                          f"{' + rerank' if retrieval.reranked else ''})", 140 + 34 * len(rows))


def score_distribution_figure(retrieval: Retrieval) -> go.Figure:
    """Each score over the whole corpus (histogram), its own top-k cutoff (dashed line), and where
    the finally retrieved chunks fall (red ticks). Hybrid is over the fused candidates only."""
    panels = [("dense", retrieval.dense_scores, "all chunks"),
              ("bm25", retrieval.bm25_scores, "all chunks"),
              ("hybrid", retrieval.hybrid_scores[retrieval.hybrid_scores > 0], "fused candidates")]
    cutoffs = retrieval.cutoffs()
    figure = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                           subplot_titles=[f"{SCORE_TITLES[kind]} — {scope}" for kind, _, scope in panels])
    chosen = {"dense": [r.dense_score for r in retrieval.rows], "bm25": [r.bm25_score for r in retrieval.rows],
              "hybrid": [r.hybrid_score for r in retrieval.rows]}
    for column, (kind, scores, scope) in enumerate(panels, start=1):
        figure.add_trace(go.Histogram(x=np.asarray(scores, dtype=float), nbinsx=40, marker_color=MUTED,
                                      name="chunks in the corpus" if column == 1 else None, showlegend=column == 1,
                                      hovertemplate=f"{SCORE_TITLES[kind]} %{{x}}: %{{y}} chunks<extra></extra>"),
                         row=1, col=column)
        figure.add_trace(go.Scatter(x=chosen[kind], y=[0] * len(chosen[kind]), mode="markers",
                                    marker={"symbol": "line-ns-open", "size": 18, "color": RETRIEVED_COLOR,
                                            "line": {"width": 3}},
                                    name="retrieved chunks", showlegend=column == 1,
                                    hovertext=[f"{_row_label(r)}: {SCORE_TITLES[kind]} = {v:.4f}"
                                               for r, v in zip(retrieval.rows, chosen[kind])], hoverinfo="text"),
                         row=1, col=column)
        cutoff = cutoffs[kind]
        if cutoff is not None:
            figure.add_vline(x=cutoff, line_dash="dash", line_color=SCORE_COLORS[kind], row=1, col=column)
            figure.add_annotation(x=cutoff, y=1.0, xref=f"x{column if column > 1 else ''}", yref="paper",
                                  text=f"top-{retrieval.k} cutoff {cutoff:.3f}", showarrow=False, xanchor="left",
                                  yanchor="top", font={"color": SCORE_COLORS[kind]})
        figure.update_xaxes(title_text=SCORE_TITLES[kind], row=1, col=column)
        figure.update_yaxes(title_text="chunks" if column == 1 else None, row=1, col=column)
    styled(figure, "Where the retrieved chunks sit among all scores (dashed: each method's own top-k cutoff)", 400)
    return legend_below(figure)  # under the plots: above, it would sit on the panel titles


def embedding_map_figure(projector: Projector, chunks: Sequence, retrieval: Retrieval | None = None,
                         seed: int = 0) -> go.Figure:
    """Chunks on the 2D map (colour = cosine to the question), the retrieved chunks ringed, the question
    as a star. More than MAX_MAP_POINTS chunks are sampled with a fixed seed."""
    n = len(chunks)
    shown = np.arange(n)
    retrieved = [row.chunk.index for row in retrieval.rows] if retrieval is not None else []
    if n > MAX_MAP_POINTS:
        sample = np.random.default_rng(seed).choice(n, MAX_MAP_POINTS, replace=False)
        shown = np.union1d(sample, retrieved).astype(int)
    xy = projector.chunk_xy[shown]
    scores = retrieval.dense_scores[shown] if retrieval is not None else None
    hover = [f"c{chunks[i].index} · {chunks[i].source}<br>{_hover_text(chunks[i].text)}"
             + (f"<br>cosine to question = {retrieval.dense_scores[i]:.4f}" if retrieval is not None else "")
             for i in shown]
    marker: dict = {"size": 7, "opacity": 0.8}
    if scores is not None:
        marker.update(color=scores, colorscale="Viridis", showscale=True,
                      colorbar={"title": {"text": "cosine to<br>question"}, "thickness": 14})
    else:
        marker.update(color=PALETTE[0])
    figure = go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, name="chunks",
                                    hovertext=hover, hoverinfo="text"))
    if retrieval is not None:
        rows = retrieval.rows
        ring = projector.chunk_xy[[row.chunk.index for row in rows]]
        figure.add_trace(go.Scatter(
            x=ring[:, 0], y=ring[:, 1], mode="markers+text", text=[f"#{row.rank}" for row in rows],
            textposition="top center", textfont={"color": RETRIEVED_COLOR},
            marker={"size": 15, "color": "rgba(0,0,0,0)", "line": {"color": RETRIEVED_COLOR, "width": 2.5}},
            name=f"retrieved top {len(rows)}",
            hovertext=[f"#{row.rank} c{row.chunk.index} · {row.chunk.source}<br>{_hover_text(row.chunk.text)}"
                       f"<br>dense {row.dense_score:.4f} · BM25 {row.bm25_score:.3f}" for row in rows],
            hoverinfo="text"))
        query_xy = projector.transform(retrieval.query_embedding)
        figure.add_trace(go.Scatter(x=[query_xy[0]], y=[query_xy[1]], mode="markers", name="question",
                                    marker={"symbol": "star", "size": 20, "color": QUERY_COLOR},
                                    hovertext=[f"question: {_hover_text(retrieval.question)}"], hoverinfo="text"))
    figure.update_xaxes(title=projector.axis_titles[0], zeroline=False)
    figure.update_yaxes(title=projector.axis_titles[1], zeroline=False)
    note = f" ({len(shown)} of {n} chunks shown)" if len(shown) < n else ""
    return styled(figure, f"Chunk embeddings on a 2D map ({projector.method.upper()}){note}", 520)


def evaluation_figure(report: EvaluationReport) -> go.Figure:
    """Grouped bars: each metric (x) for each method (colour)."""
    metrics = [f"recall@{k}" for k in report.ks] + ["MRR"] + [f"nDCG@{k}" for k in report.ks]
    figure = go.Figure()
    for color, scores in zip(PALETTE, report.methods):
        values = [scores.recall[k] for k in report.ks] + [scores.mrr] + [scores.ndcg[k] for k in report.ks]
        figure.add_trace(go.Bar(x=metrics, y=values, name=scores.method, marker_color=color,
                                hovertemplate=f"{scores.method}<br>%{{x}} = %{{y:.4f}}<extra></extra>"))
    figure.update_xaxes(title="metric")
    figure.update_yaxes(title="score (0-1, higher is better)", **probability_axis(tickformat=".1f"))
    figure.update_layout(barmode="group")
    return styled(figure, f"Retrieval quality on {len(report.questions)} questions", 400)

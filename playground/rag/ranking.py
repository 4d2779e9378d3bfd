"""One question against an index: every chunk's dense and BM25 score, the fused ranking, the top k,
and (optionally) the same candidates reordered by a reranker's scores.

Each method ranks the corpus its own way; the result keeps all three scores for every returned
chunk so the table can show why a chunk was (or was not) retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from playground.rag.chunking import Chunk
from playground.rag.embedding import embed_query
from playground.rag.index import RetrievalIndex
from playground.rag.search import RRF_K, reciprocal_rank_fusion, top_indices
from playground.limits import LIMITS

METHODS = ("dense", "bm25", "hybrid")
MAX_K = LIMITS.retrieval_k
MAX_RERANK = LIMITS.rerank_candidates
CANDIDATE_POOL = 100  # RRF fuses the top 100 of each list
MAX_QUESTION_CHARS = LIMITS.question_chars


class RetrievalInputError(ValueError):
    """A retrieval setting or the question is unusable; the message says what to change."""


@dataclass(frozen=True)
class ScoredChunk:
    rank: int  # final rank, from 1 (after reranking when reranked)
    chunk: Chunk
    dense_score: float  # cosine with the question
    dense_rank: int | None  # rank in the dense list (None: not in its top CANDIDATE_POOL)
    bm25_score: float
    bm25_rank: int | None  # rank among chunks with BM25 > 0 (None: no query term, or beyond the pool)
    hybrid_score: float  # reciprocal rank fusion score (0 when in neither list)
    hybrid_rank: int | None
    first_stage_rank: int  # rank under the chosen method before reranking
    rerank_score: float | None = None  # the reranker's relevance (here: P(Yes) from the LLM judge)
    rank_change: int | None = None  # first_stage_rank - rank: positive = moved up by the reranker

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "chunk_index": self.chunk.index, "source": self.chunk.source,
            "start": self.chunk.start, "end": self.chunk.end, "tokens": self.chunk.token_count,
            "text": self.chunk.text, "dense_score": self.dense_score, "dense_rank": self.dense_rank,
            "bm25_score": self.bm25_score, "bm25_rank": self.bm25_rank, "hybrid_score": self.hybrid_score,
            "hybrid_rank": self.hybrid_rank, "first_stage_rank": self.first_stage_rank,
            "rerank_score": self.rerank_score, "rank_change": self.rank_change,
        }


@dataclass(frozen=True)
class Retrieval:
    question: str
    method: str
    k: int
    candidates: tuple[ScoredChunk, ...]  # best first; the top k are the answer, the rest were reranked too
    query_embedding: np.ndarray  # [dim]
    dense_scores: np.ndarray  # [n_chunks]: cosine of every chunk (the score distribution)
    bm25_scores: np.ndarray  # [n_chunks]
    hybrid_scores: np.ndarray  # [n_chunks]: RRF, 0 outside both top lists
    query_terms: tuple[str, ...]
    dense_backend: str
    reranked: bool = False
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> tuple[ScoredChunk, ...]:
        return self.candidates[: self.k]

    def cutoffs(self) -> dict[str, float | None]:
        """Each method's own score at its k-th place: chunks below it were not retrieved by it."""
        def kth(scores: np.ndarray, positive_only: bool) -> float | None:
            top = top_indices(scores, self.k, positive_only)
            return float(scores[top[-1]]) if len(top) == self.k else None

        return {"dense": kth(self.dense_scores, False), "bm25": kth(self.bm25_scores, True),
                "hybrid": kth(self.hybrid_scores, True)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question, "method": self.method, "k": self.k, "reranked": self.reranked,
            "dense_backend": self.dense_backend, "rrf_k": RRF_K, "candidate_pool": CANDIDATE_POOL,
            "query_terms": list(self.query_terms), "cutoffs": self.cutoffs(), "notes": list(self.notes),
            "results": [row.as_dict() for row in self.rows],
            "reranked_candidates": [row.as_dict() for row in self.candidates[self.k:]] if self.reranked else [],
            "corpus_chunks": int(len(self.dense_scores)),
        }


def validate_question(question: str | None) -> tuple[str, tuple[str, ...]]:
    """The trimmed question (capped, with a note) or RetrievalInputError when there is none."""
    question = (question or "").strip()
    if not question:
        raise RetrievalInputError("Type a question first.")
    if len(question) > MAX_QUESTION_CHARS:
        note = f"The question was cut to its first {MAX_QUESTION_CHARS} of {len(question)} characters."
        return question[:MAX_QUESTION_CHARS], (note,)
    return question, ()


def check_settings(method: str, k: int, rerank_candidates: int = 0) -> None:
    if method not in METHODS:
        raise RetrievalInputError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RetrievalInputError(f"k must be a whole number in 1..{MAX_K}, got {k!r}")
    if not isinstance(rerank_candidates, int) or not 0 <= rerank_candidates <= MAX_RERANK:
        raise RetrievalInputError(f"rerank candidates must be a whole number in 0..{MAX_RERANK}, got "
                                  f"{rerank_candidates!r}")


def _ranks(order: Sequence[int]) -> dict[int, int]:
    return {int(chunk_id): rank for rank, chunk_id in enumerate(order, start=1)}


@dataclass(frozen=True)
class Rankings:
    """The three rankings of the corpus for one question (chunk ids, best first) and all scores."""

    dense_order: np.ndarray  # top CANDIDATE_POOL by cosine
    bm25_order: np.ndarray  # top CANDIDATE_POOL with BM25 > 0
    hybrid_order: np.ndarray  # RRF of the two lists
    dense_scores: np.ndarray  # [n_chunks]
    bm25_scores: np.ndarray  # [n_chunks]
    hybrid_scores: np.ndarray  # [n_chunks], 0 outside both lists

    def order(self, method: str) -> np.ndarray:
        return {"dense": self.dense_order, "bm25": self.bm25_order, "hybrid": self.hybrid_order}[method]


def rank_corpus(index: RetrievalIndex, query: np.ndarray, question: str) -> Rankings:
    """Dense, BM25 and hybrid rankings for one question (query: its unit embedding [dim])."""
    dense_scores = index.dense.scores(query)  # [n] exact cosine, for the table and the distribution
    dense_order, _ = index.dense.search(query, CANDIDATE_POOL)
    bm25_scores = index.lexical.scores(question)  # [n]
    bm25_order = top_indices(bm25_scores, CANDIDATE_POOL, positive_only=True)
    fused = reciprocal_rank_fusion([dense_order, bm25_order])
    hybrid_scores = np.zeros(len(dense_scores), dtype=np.float64)
    for chunk_id, score in fused:
        hybrid_scores[chunk_id] = score
    hybrid_order = np.array([chunk_id for chunk_id, _ in fused], dtype=np.int64)
    return Rankings(dense_order, bm25_order, hybrid_order, dense_scores, bm25_scores, hybrid_scores)


def retrieve(index: RetrievalIndex, embedder: Any, question: str, method: str = "hybrid", k: int = 5,
             rerank_candidates: int = 0) -> Retrieval:
    """The first-stage ranking for `question`: the top max(k, rerank_candidates) chunks under `method`."""
    question, notes = validate_question(question)
    check_settings(method, k, rerank_candidates)
    query = embed_query(embedder, question)  # [dim]
    rankings = rank_corpus(index, query, question)
    terms = tuple(index.lexical.terms(question))
    if method == "bm25" and len(rankings.bm25_order) < k:
        notes += (f"Only {len(rankings.bm25_order)} chunks contain a query term ({', '.join(terms) or 'none'}), "
                  "so BM25 returns fewer than k.",)
    dense_rank = _ranks(rankings.dense_order)
    bm25_rank = _ranks(rankings.bm25_order)
    hybrid_rank = _ranks(rankings.hybrid_order)
    chosen = rankings.order(method)[: max(k, rerank_candidates)]
    candidates = tuple(
        ScoredChunk(rank=rank, chunk=index.chunks[chunk_id], dense_score=float(rankings.dense_scores[chunk_id]),
                    dense_rank=dense_rank.get(chunk_id), bm25_score=float(rankings.bm25_scores[chunk_id]),
                    bm25_rank=bm25_rank.get(chunk_id), hybrid_score=float(rankings.hybrid_scores[chunk_id]),
                    hybrid_rank=hybrid_rank.get(chunk_id), first_stage_rank=rank)
        for rank, chunk_id in enumerate((int(c) for c in chosen), start=1)
    )
    return Retrieval(question, method, k, candidates, query, rankings.dense_scores, rankings.bm25_scores,
                     rankings.hybrid_scores, terms, index.dense.backend, notes=notes)


def apply_rerank(retrieval: Retrieval, scores: Sequence[float]) -> Retrieval:
    """Reorder the candidates by reranker score (best first; ties keep the first-stage order)."""
    if len(scores) != len(retrieval.candidates):
        raise ValueError(f"need one rerank score per candidate ({len(retrieval.candidates)}), got {len(scores)}")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    candidates = tuple(
        replace(retrieval.candidates[i], rank=new_rank, rerank_score=float(scores[i]),
                rank_change=retrieval.candidates[i].first_stage_rank - new_rank)
        for new_rank, i in enumerate(order, start=1)
    )
    return replace(retrieval, candidates=candidates, reranked=True)

"""Scoring chunks against a question: dense cosine, BM25, and reciprocal rank fusion of the two.

Dense: chunks and question are unit vectors, so cosine similarity is a dot product,
`scores = E @ q` with E [n_chunks, dim] and q [dim]. Below `FAISS_THRESHOLD` chunks the top list is
exact (numpy); above it a FAISS HNSW graph answers it approximately in far less time.

Lexical: BM25 (Lucene variant) from the `bm25s` library, English stop words removed.

Hybrid: reciprocal rank fusion (Cormack et al., 2009) of the two top lists:
`rrf(c) = sum over lists L containing c of 1 / (RRF_K + rank_L(c))`, ranks from 1.

    >>> reciprocal_rank_fusion([[7, 3], [3, 9]], k=60)[0]
    (3, 0.03252247488101534)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

RRF_K = 60  # the constant from Cormack et al.; damps the weight of the very top ranks
FAISS_THRESHOLD = 20_000  # chunks; see benchmarks/rag.py for where FAISS starts to pay off
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 128
BM25_STOPWORDS = "en"


def top_indices(scores: np.ndarray, limit: int, positive_only: bool = False) -> np.ndarray:
    """Indices of the `limit` highest scores, best first; equal scores keep index order (deterministic)."""
    candidates = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    if len(candidates) > limit:
        # argpartition finds the top `limit` in O(n); the boundary value may tie, so keep every tie
        # and let the stable sort below pick by index.
        threshold = np.partition(scores[candidates], len(candidates) - limit)[len(candidates) - limit]
        candidates = candidates[scores[candidates] >= threshold]
    ordered = candidates[np.argsort(-scores[candidates], kind="stable")]
    return ordered[:limit]


class DenseIndex:
    """Unit-length chunk embeddings [n, dim] float32, searchable by inner product (= cosine)."""

    def __init__(self, embeddings: np.ndarray, faiss_threshold: int = FAISS_THRESHOLD) -> None:
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.backend = "faiss-hnsw" if len(self.embeddings) >= faiss_threshold else "exact"
        self._faiss = self._build_hnsw(self.embeddings) if self.backend == "faiss-hnsw" else None

    @staticmethod
    def _build_hnsw(embeddings: np.ndarray) -> object:
        import faiss

        index = faiss.IndexHNSWFlat(embeddings.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = HNSW_EF_SEARCH
        index.add(embeddings)
        return index

    def __len__(self) -> int:
        return len(self.embeddings)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Exact cosine of every chunk with the query: [n] float32."""
        return self.embeddings @ np.asarray(query, dtype=np.float32)

    def search(self, query: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids [m], cosine scores [m]) of the best `limit` chunks, best first (m <= limit)."""
        limit = min(limit, len(self))
        if self._faiss is None:
            ids = top_indices(self.scores(query), limit)
            return ids, self.embeddings[ids] @ np.asarray(query, dtype=np.float32)
        scores, ids = self._faiss.search(np.asarray(query, dtype=np.float32)[None, :], limit)  # [1, limit] each
        keep = ids[0] >= 0  # HNSW pads with -1 when it finds fewer than `limit`
        return ids[0][keep].astype(np.int64), scores[0][keep]


class LexicalIndex:
    """BM25 over the chunk texts, scored by `bm25s` (Lucene's formula, k1=1.5, b=0.75)."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s

        self.k1, self.b = k1, b
        self._bm25s = bm25s
        self.retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.retriever.index(bm25s.tokenize(list(texts), stopwords=BM25_STOPWORDS, show_progress=False),
                             show_progress=False)
        self.size = len(texts)

    def terms(self, text: str) -> list[str]:
        """The terms BM25 sees: lower-cased words of 2+ characters, stop words removed."""
        return self._bm25s.tokenize([text], stopwords=BM25_STOPWORDS, return_ids=False, show_progress=False)[0]

    def scores(self, question: str) -> np.ndarray:
        """BM25 of every chunk for the question: [n] float32 (0 where no query term occurs)."""
        terms = self.terms(question)
        if not terms:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(terms), dtype=np.float32)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """(chunk id, fused score) best first; ties broken by chunk id. Ranks count from 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[int(chunk_id)] = fused.get(int(chunk_id), 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))

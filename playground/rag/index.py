"""A searchable index of one corpus: its chunks, their embeddings, BM25, and a 2D map; plus a small
in-memory store so each (corpus, model, chunking) is built once per process."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from playground.limits import LIMITS, Limits
from playground.rag.chunking import Chunk, ChunkingSettings, ChunkSet, chunk_corpus
from playground.rag.corpus import Corpus
from playground.rag.embedding import ProgressFn, cache_key, embed_chunks_cached, no_progress
from playground.rag.projection import Projector, fit_projector
from playground.rag.search import FAISS_THRESHOLD, DenseIndex, LexicalIndex


@dataclass(eq=False)
class RetrievalIndex:
    corpus: Corpus
    chunk_set: ChunkSet
    model_id: str
    embeddings: np.ndarray  # [n_chunks, dim] float32, unit rows
    dense: DenseIndex
    lexical: LexicalIndex
    embedder_window: int  # tokens the embedder reads; longer chunks are truncated by it
    from_cache: bool
    build_seconds: float
    key: str = ""
    _projectors: dict[str, Projector] = field(default_factory=dict, repr=False)

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return self.chunk_set.chunks

    def projector(self, method: str = "pca") -> Projector:
        """The 2D map of the chunk embeddings, fitted once per index and method (the same map for
        every question)."""
        if method not in self._projectors:
            self._projectors[method] = fit_projector(self.embeddings, method)
        return self._projectors[method]

    def stats(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus.stats(),
            "chunks": self.chunk_set.stats(self.embedder_window),
            "embedding_model": self.model_id,
            "embedding_dim": int(self.embeddings.shape[1]),
            "dense_backend": self.dense.backend,
            "embeddings_from_cache": self.from_cache,
            "build_seconds": round(self.build_seconds, 2),
            "key": self.key,
        }


def embedder_window(embedder: Any) -> int:
    """Word pieces the embedder reads per text, special tokens excluded (MiniLM: 256 - 2)."""
    return int(getattr(embedder, "max_seq_length", 256)) - 2


def chunk_cap(embedder: Any, limits: Limits = LIMITS) -> int:
    """How many chunks we agree to embed: far more when the embedder runs on a GPU."""
    return limits.rag_chunks_gpu if str(getattr(embedder, "device", "cpu")).startswith("cuda") else limits.rag_chunks


def build_index(corpus: Corpus, chunking: ChunkingSettings, embedder: Any, model_id: str, cache_dir: Path,
                progress: ProgressFn = no_progress, faiss_threshold: int = FAISS_THRESHOLD,
                limits: Limits = LIMITS) -> RetrievalIndex:
    """Chunk, embed (or load the cached embeddings) and index one corpus (at most `limits`' chunk cap)."""
    started = time.perf_counter()
    progress(0.0, f"Chunking {len(corpus.documents)} documents")
    chunk_set = chunk_corpus(corpus, chunking, embedder.tokenizer, chunk_cap(embedder, limits))
    embeddings, from_cache = embed_chunks_cached(embedder, model_id, chunk_set.texts, corpus.fingerprint, chunking,
                                                 cache_dir, progress=progress)
    progress(1.0, "Building the BM25 index")
    return RetrievalIndex(corpus, chunk_set, model_id, embeddings, DenseIndex(embeddings, faiss_threshold),
                          LexicalIndex(chunk_set.texts), embedder_window(embedder), from_cache,
                          time.perf_counter() - started, cache_key(corpus.fingerprint, model_id, chunking))


class _Build:
    """One index being built: the requests for the same key wait on `done` instead of building again."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.index: RetrievalIndex | None = None


class IndexStore:
    """The last few built indexes, keyed by (corpus, model, chunking).

    The store's lock guards only the dict (microseconds): a cache hit never waits for another key's build,
    and two requests for the same key build it once (the second waits for the first). Builds of different
    keys may run at once; the long-job queue (ui/queueing.py) bounds how many.
    """

    def __init__(self, max_items: int = 3) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, RetrievalIndex] = OrderedDict()
        self._building: dict[str, _Build] = {}
        self._lock = threading.Lock()

    def get_or_build(self, corpus: Corpus, chunking: ChunkingSettings, model_id: str,
                     build: Callable[[], RetrievalIndex]) -> RetrievalIndex:
        key = cache_key(corpus.fingerprint, model_id, chunking)
        while True:
            with self._lock:
                index = self._items.get(key)
                if index is not None:
                    self._items.move_to_end(key)
                    return index
                pending = self._building.get(key)
                if pending is None:
                    pending = self._building[key] = _Build()
                    break  # this request builds
            pending.done.wait()
            if pending.index is not None:
                return pending.index
            # the build it waited for failed (or its request was cancelled): try again, maybe building it here
        try:
            index = build()
            with self._lock:
                self._items[key] = index
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
            pending.index = index
            return index
        finally:
            with self._lock:
                del self._building[key]
            pending.done.set()

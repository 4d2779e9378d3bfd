"""Chunk embeddings: unit-length vectors from a sentence-transformers model, cached on disk.

The cache key is (corpus fingerprint, embedding model, chunking settings). A cache entry is a
`.npy` array (saved with allow_pickle=False) plus a `.json` of metadata written last; both are
written to a temporary name and renamed, so a crash never leaves a half-written entry that loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from playground.rag.chunking import ChunkingSettings
from playground.rag.corpus import digest_texts

ProgressFn = Callable[[float, str], None]
CACHE_FORMAT = 1


def no_progress(fraction: float, message: str) -> None:
    pass


def embed_texts(model: Any, texts: Sequence[str], batch_size: int = 32,
                progress: ProgressFn = no_progress) -> np.ndarray:
    """Unit-normalised embeddings, float32 [n, dim], in the order of `texts`.

    Like `SentenceTransformer.encode`, texts are sorted by length so each batch pads little; we
    call encode a group of batches at a time only to report progress between groups.
    """
    if len(texts) == 0:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    order = np.argsort([-len(text) for text in texts], kind="stable")
    group = batch_size * 4
    parts = []
    for begin in range(0, len(texts), group):
        progress(begin / len(texts), f"Embedding chunks {begin + 1}-{min(begin + group, len(texts))} of {len(texts)}")
        batch = [texts[i] for i in order[begin:begin + group]]
        parts.append(model.encode(batch, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                  show_progress_bar=False))
    progress(1.0, f"Embedded {len(texts)} chunks")
    sorted_embeddings = np.concatenate(parts).astype(np.float32, copy=False)  # [n, dim] in length order
    embeddings = np.empty_like(sorted_embeddings)
    embeddings[order] = sorted_embeddings
    return embeddings


def embed_query(model: Any, question: str) -> np.ndarray:
    """One unit-length query vector, float32 [dim]."""
    return model.encode([question], normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)[0].astype(np.float32, copy=False)


def cache_key(corpus_fingerprint: str, model_id: str, chunking: ChunkingSettings) -> str:
    """A file-name-safe key for (corpus, model, chunking)."""
    payload = json.dumps({"corpus": corpus_fingerprint, "model": model_id, "chunking": chunking.as_dict(),
                          "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _atomic_write(target: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, then rename over the target (atomic on POSIX)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class EmbeddingCache:
    """Embeddings on disk under `<cache_dir>/embeddings/<key>.npy` + `<key>.json`."""

    def __init__(self, cache_dir: Path) -> None:
        self.folder = Path(cache_dir) / "embeddings"

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.npy", self.folder / f"{key}.json"

    def load(self, key: str, texts: Sequence[str]) -> np.ndarray | None:
        """The cached array when it matches these exact chunk texts; None when absent or unusable."""
        array_path, meta_path = self.paths(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("texts_sha256") != digest_texts(texts):
                return None
            embeddings = np.load(array_path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # missing, truncated or garbled: recompute
        if embeddings.dtype != np.float32 or embeddings.shape != (len(texts), meta.get("dim")):
            return None
        if not np.isfinite(embeddings).all():
            return None
        return embeddings

    def save(self, key: str, texts: Sequence[str], embeddings: np.ndarray, meta: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        array_path, meta_path = self.paths(key)
        array = np.ascontiguousarray(embeddings, dtype=np.float32)
        _atomic_write(array_path, lambda stream: np.save(stream, array, allow_pickle=False))
        record = {**meta, "texts_sha256": digest_texts(texts), "count": int(array.shape[0]),
                  "dim": int(array.shape[1]), "format": CACHE_FORMAT}
        _atomic_write(meta_path, lambda stream: stream.write(json.dumps(record, indent=1).encode("utf-8")))


def embed_chunks_cached(model: Any, model_id: str, texts: Sequence[str], corpus_fingerprint: str,
                        chunking: ChunkingSettings, cache_dir: Path, batch_size: int = 32,
                        progress: ProgressFn = no_progress) -> tuple[np.ndarray, bool]:
    """(embeddings [n, dim], whether they came from the disk cache)."""
    cache = EmbeddingCache(cache_dir)
    key = cache_key(corpus_fingerprint, model_id, chunking)
    cached = cache.load(key, texts)
    if cached is not None:
        progress(1.0, f"Loaded {len(texts)} chunk embeddings from the cache")
        return cached, True
    embeddings = embed_texts(model, texts, batch_size, progress)
    cache.save(key, texts, embeddings, {"model": model_id, "corpus": corpus_fingerprint,
                                        "chunking": chunking.as_dict()})
    return embeddings, False

"""A 2D map of embeddings: PCA by default (deterministic), UMAP when `umap-learn` is installed.

The map is fitted on the chunk embeddings only; the question is placed with the same transform, so
asking a new question never moves the chunks.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

PROJECTIONS = ("pca", "umap")
UMAP_SEED = 42


def available_projections() -> tuple[str, ...]:
    return ("pca", "umap") if importlib.util.find_spec("umap") is not None else ("pca",)


@dataclass(frozen=True)
class Projector:
    method: str
    chunk_xy: np.ndarray  # [n_chunks, 2]
    axis_titles: tuple[str, str]
    mean: np.ndarray | None = None  # PCA: [dim]
    components: np.ndarray | None = None  # PCA: [2, dim]
    explained: tuple[float, float] = (0.0, 0.0)  # PCA: fraction of variance per axis
    reducer: Any = None  # UMAP: the fitted umap.UMAP

    def transform(self, vector: np.ndarray) -> np.ndarray:
        """Place one embedding [dim] on the map: [2]."""
        if self.reducer is not None:
            return np.asarray(self.reducer.transform(np.asarray(vector, dtype=np.float32)[None, :])[0])
        return (np.asarray(vector, dtype=np.float64) - self.mean) @ self.components.T


def fit_pca(embeddings: np.ndarray) -> Projector:
    """Top two principal components via SVD, signs fixed so the largest loading of each is positive
    (SVD's sign is arbitrary; fixing it makes the map identical run after run)."""
    data = np.asarray(embeddings, dtype=np.float64)  # [n, dim]
    mean = data.mean(axis=0)
    centred = data - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)  # vt: [min(n, dim), dim]
    components = np.zeros((2, data.shape[1]))
    components[: min(2, len(vt))] = vt[:2]
    for row in components:
        if row.any() and row[np.argmax(np.abs(row))] < 0:
            row *= -1
    total = float((singular**2).sum())
    variance = [float(s**2) / total if total > 0 else 0.0 for s in singular[:2]] + [0.0, 0.0]
    explained = (variance[0], variance[1])
    titles = (f"PC 1 ({100 * explained[0]:.1f}% of variance)", f"PC 2 ({100 * explained[1]:.1f}% of variance)")
    return Projector("pca", centred @ components.T, titles, mean, components, explained)


def fit_umap(embeddings: np.ndarray, seed: int = UMAP_SEED) -> Projector:
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, len(embeddings) - 1)), metric="cosine",
                        random_state=seed)
    chunk_xy = np.asarray(reducer.fit_transform(np.asarray(embeddings, dtype=np.float32)))
    return Projector("umap", chunk_xy, ("UMAP 1", "UMAP 2"), reducer=reducer)


def fit_projector(embeddings: np.ndarray, method: str = "pca") -> Projector:
    if method not in available_projections():
        raise ValueError(f"map method must be one of {available_projections()}, got {method!r}"
                         + (" (install umap-learn for UMAP)" if method == "umap" else ""))
    if method == "umap" and len(embeddings) >= 4:
        return fit_umap(embeddings)
    return fit_pca(embeddings)

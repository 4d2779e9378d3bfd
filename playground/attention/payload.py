"""The raw numbers behind the Attention view, as JSON (documented in docs/tabs/): one run, one view, its
grid and its score story."""

from __future__ import annotations

from typing import Any

import torch

from playground.attention.story import ScoreStory
from playground.attention.weights import AttentionGrid, AttentionRun, AttentionView


def _matrix(values: torch.Tensor, decimals: int = 8) -> list[list[float]]:
    return torch.round(values.double(), decimals=decimals).tolist()


def attention_json(run: AttentionRun, view: AttentionView, grid: AttentionGrid, story: ScoreStory) -> dict[str, Any]:
    """The raw numbers behind the Attention view (documented in docs/tabs/): weights rounded to 8 decimals."""
    return {
        "tokens": list(run.tokens),
        "token_ids": list(run.token_ids),
        "total_tokens": run.total_tokens,
        "analysed_tokens": run.length,
        "note": run.note,
        "shape": run.shape.as_json(),
        "layer": view.layer,
        "head": "mean" if view.head is None else view.head,
        "weights": _matrix(view.weights),
        "checks": {"max_row_sum_error": view.max_row_sum_error, "max_weight_above_diagonal": view.max_above_diagonal,
                   "story_max_abs_diff_vs_model": story.max_abs_diff_vs_model},
        "grid": {"mode": grid.mode, "thumbnail_block": grid.block,
                 "patterns": [pattern.as_json() for pattern in grid.patterns]},
        "story": {"layer": story.layer, "head": story.head, "kv_head": story.kv_head, "scale": story.scale,
                  "raw_scores": _matrix(story.scores, 5), "masked_pairs": int((~story.allowed).sum())},
    }

"""KV-cache memory, measured and predicted.

`measured_cache_bytes` sums the bytes of the key and value tensors a real transformers cache holds;
`formula_cache_bytes` is the textbook formula 2 x layers x kv_heads x head_dim x bytes x tokens x batch
(the app's one copy of it: playground.quantization.kv_cache_bytes). A test checks the two are equal.
`free_memory_bytes` is what the device has left, so the views can say how many tokens would still fit.

    >>> shape = AttentionShape(num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64)
    >>> formula_cache_bytes(shape, tokens=100, batch=2, bytes_per_value=4)  # 2*30*3*64*4*100*2
    9216000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psutil
import torch

from playground.attention.shape import AttentionShape
from playground.quantization import kv_cache_bytes


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """Every key and value tensor of a transformers cache: DynamicCache keeps one layer object per
    decoder layer, each with `keys` and `values` of shape [batch, kv_heads, tokens, head_dim]."""
    tensors = []
    for layer in cache.layers:
        tensors += [t for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None]
    return tensors


def measured_cache_bytes(cache: Any) -> int:
    """Bytes the cache really holds: the sum of its tensors' sizes (numel x element size)."""
    return sum(t.numel() * t.element_size() for t in cache_tensors(cache))


def cache_bytes_per_value(cache: Any) -> int:
    """Bytes per cached number (4 for fp32, 2 for bf16/fp16), read from the cache itself."""
    tensors = cache_tensors(cache)
    return tensors[0].element_size() if tensors else 4


def formula_cache_bytes(shape: AttentionShape, tokens: int, batch: int, bytes_per_value: int) -> int:
    """2 (K and V) x layers x kv_heads x head_dim x bytes x tokens x batch."""
    return int(kv_cache_bytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, tokens, batch=batch,
                              bytes_per_value=bytes_per_value))


def free_memory_bytes(device: str) -> int:
    """Memory the device has free now: the GPU's (torch.cuda.mem_get_info) or the machine's available RAM."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class KVPoint:
    """One cache measured after a forward: `tokens` positions for each of `batch` sequences."""

    batch: int
    tokens: int
    measured_bytes: int
    formula_bytes: int
    bytes_per_value: int  # the cache tensors' element size

    def as_json(self) -> dict[str, int]:
        return {"batch": self.batch, "tokens": self.tokens, "measured_bytes": self.measured_bytes,
                "formula_bytes": self.formula_bytes, "bytes_per_value": self.bytes_per_value}


@dataclass(frozen=True)
class KVMemoryReport:
    """Measured caches, the formula's bytes per token and the device's free memory, for one model."""

    shape: AttentionShape
    bytes_per_value: int
    device: str
    free_bytes: int
    points: tuple[KVPoint, ...]

    @property
    def bytes_per_token(self) -> int:
        """Cache bytes one token of one sequence costs (all layers, K and V)."""
        return formula_cache_bytes(self.shape, 1, 1, self.bytes_per_value)

    @property
    def tokens_that_fit(self) -> int:
        """Cached tokens (summed over the batch) the free memory would still hold."""
        return self.free_bytes // self.bytes_per_token

    def as_json(self) -> dict[str, Any]:
        return {**self.shape.as_json(), "bytes_per_value": self.bytes_per_value, "device": self.device,
                "bytes_per_token": self.bytes_per_token, "free_bytes": self.free_bytes,
                "tokens_that_fit": self.tokens_that_fit, "points": [p.as_json() for p in self.points],
                "formula": "2 x layers x kv_heads x head_dim x bytes x tokens x batch"}


def kv_point(cache: Any, shape: AttentionShape, batch: int) -> KVPoint:
    """Measure one live cache against the formula at the cache's own length and batch."""
    tokens, per_value = int(cache.get_seq_length()), cache_bytes_per_value(cache)
    return KVPoint(batch, tokens, measured_cache_bytes(cache), formula_cache_bytes(shape, tokens, batch, per_value),
                   per_value)

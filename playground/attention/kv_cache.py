"""KV-cache memory: `kv_cache_estimate(shape, context, dtype)` for MHA, GQA as the model has it, and MQA,
from the one KV-cache formula (playground.quantization.kv_cache_bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playground.limits import shown
from playground.attention.errors import AttentionInputError
from playground.attention.shape import AttentionShape
from playground.quantization import kv_cache_bytes

KV_DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


@dataclass(frozen=True)
class KVCacheVariant:
    name: str  # "MHA", "GQA", "MQA"
    kv_heads: int
    is_this_model: bool


@dataclass(frozen=True)
class KVCacheEstimate:
    """K and V cache size for one context length, for MHA, the model's own layout, and MQA. MB = 10⁶ bytes."""

    shape: AttentionShape
    context_length: int
    batch_size: int
    dtype: str
    bytes_per_value: int
    variants: tuple[KVCacheVariant, ...]
    curve_contexts: tuple[int, ...]  # context lengths for the plot, 1..max, the chosen one included

    def cache_bytes(self, kv_heads: int, context_length: int | None = None) -> int:
        return int(kv_cache_bytes(self.shape.num_layers, kv_heads, self.shape.head_dim,
                                  self.context_length if context_length is None else context_length,
                                  batch=self.batch_size, bytes_per_value=self.bytes_per_value))

    def megabytes(self, kv_heads: int, context_length: int | None = None) -> float:
        return self.cache_bytes(kv_heads, context_length) / 1e6

    def as_json(self) -> dict[str, Any]:
        return {"context_length": self.context_length, "batch_size": self.batch_size, "dtype": self.dtype,
                "bytes_per_value": self.bytes_per_value, **self.shape.as_json(),
                "bytes_per_token": self.cache_bytes(self.shape.num_kv_heads, 1) // self.batch_size,
                "variants": [{"name": v.name, "kv_heads": v.kv_heads, "this_model": v.is_this_model,
                              "bytes": self.cache_bytes(v.kv_heads), "megabytes": round(self.megabytes(v.kv_heads), 3)}
                             for v in self.variants]}


def kv_cache_estimate(shape: AttentionShape, context_length: int, dtype: str, batch_size: int = 1,
                      max_context: int | None = None) -> KVCacheEstimate:
    """Cache size at `context_length` for MHA (KV heads = query heads), GQA as this model has it, and MQA
    (1 KV head). A model that is itself MHA or MQA is marked as such instead of GQA."""
    if dtype not in KV_DTYPE_BYTES:
        raise AttentionInputError(f"Cache dtype must be one of {', '.join(KV_DTYPE_BYTES)}, got {shown(dtype)}.")
    context_length, batch_size = int(context_length), int(batch_size)
    if context_length < 1 or batch_size < 1:
        raise AttentionInputError("Context length and batch size must be at least 1.")
    variants = [KVCacheVariant("MHA", shape.num_heads, shape.num_kv_heads == shape.num_heads)]
    if 1 < shape.num_kv_heads < shape.num_heads:
        variants.append(KVCacheVariant("GQA", shape.num_kv_heads, True))
    variants.append(KVCacheVariant("MQA", 1, shape.num_kv_heads == 1))
    top = max(max_context or 0, context_length)
    curve = tuple(sorted({max(1, round(top * step / 32)) for step in range(33)} | {context_length}))
    return KVCacheEstimate(shape, context_length, batch_size, dtype, KV_DTYPE_BYTES[dtype], tuple(variants), curve)

"""The model's attention shape: layers, query heads, KV heads (MHA / GQA / MQA) and which query heads
share a KV head.

    >>> AttentionShape(num_layers=2, num_heads=9, num_kv_heads=3, head_dim=64).kv_groups()
    ((0, 1, 2), (3, 4, 5), (6, 7, 8))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playground.quantization import architecture_summary


@dataclass(frozen=True)
class AttentionShape:
    num_layers: int
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads (== num_heads: MHA, 1: MQA, in between: GQA)
    head_dim: int

    @classmethod
    def from_config(cls, config: Any) -> AttentionShape:
        summary = architecture_summary(config)  # one reading of the config for the whole app
        return cls(summary.layers, summary.attention_heads, summary.kv_heads, summary.head_dim)

    @property
    def group_size(self) -> int:
        """Query heads per KV head."""
        return self.num_heads // self.num_kv_heads

    def kv_head_of(self, head: int) -> int:
        """The KV head that query head `head` reads (transformers' repeat_kv order)."""
        return head // self.group_size

    def kv_groups(self) -> tuple[tuple[int, ...], ...]:
        """Query heads grouped by the KV head they share: 9 heads / 3 KV heads -> ((0,1,2), (3,4,5), (6,7,8))."""
        return tuple(tuple(range(g * self.group_size, (g + 1) * self.group_size)) for g in range(self.num_kv_heads))

    def as_json(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers, "num_heads": self.num_heads, "num_kv_heads": self.num_kv_heads,
                "head_dim": self.head_dim, "kv_head_of_query_head": [self.kv_head_of(h) for h in range(self.num_heads)]}

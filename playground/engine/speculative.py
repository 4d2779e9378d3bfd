"""The engine's own speculative-decoding counters (vLLM's Prometheus /metrics): how many drafts it made,
how many draft tokens it proposed and how many the target accepted, overall and per draft position. These
are the engine's numbers for everything it served, not a replay of one prompt (the Speculative tab's own
exact records need the local draft and target models).

    >>> counters = counters_from_metrics({
    ...     'vllm:spec_decode_num_drafts_total{engine="0"}': 10.0,
    ...     'vllm:spec_decode_num_draft_tokens_total{engine="0"}': 30.0,
    ...     'vllm:spec_decode_num_accepted_tokens_total{engine="0"}': 18.0})
    >>> counters.acceptance_rate, counters.mean_accepted_per_draft
    (0.6, 1.8)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from playground.engine.client import EngineClient
from playground.engine.metrics import total

PREFIX = "vllm:spec_decode_"
_POSITION = re.compile(r'position="(\d+)"')


@dataclass(frozen=True)
class SpecDecodeCounters:
    drafts: float  # draft rounds (one per target verification)
    draft_tokens: float  # tokens proposed by the drafter
    accepted_tokens: float  # of those, accepted by the target
    accepted_per_position: tuple[float, ...]  # accepted at draft position 0, 1, ... (a falling curve)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else 0.0

    @property
    def mean_accepted_per_draft(self) -> float:
        return self.accepted_tokens / self.drafts if self.drafts else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "acceptance_rate": self.acceptance_rate,
                "mean_accepted_per_draft": self.mean_accepted_per_draft}


def counters_from_metrics(metrics: dict[str, float]) -> SpecDecodeCounters | None:
    """The counters from parsed /metrics, or None when the engine does not run speculative decoding."""
    if not any(key.startswith(PREFIX) for key in metrics):
        return None
    positions: dict[int, float] = {}
    for key, value in metrics.items():
        if key.split("{")[0] == PREFIX + "num_accepted_tokens_per_pos_total":
            match = _POSITION.search(key)
            if match:
                positions[int(match.group(1))] = positions.get(int(match.group(1)), 0.0) + value
    return SpecDecodeCounters(total(metrics, PREFIX + "num_drafts_total"),
                              total(metrics, PREFIX + "num_draft_tokens_total"),
                              total(metrics, PREFIX + "num_accepted_tokens_total"),
                              tuple(positions[p] for p in sorted(positions)))


def engine_spec_decode(client: EngineClient) -> SpecDecodeCounters | None:
    return counters_from_metrics(client.metrics())

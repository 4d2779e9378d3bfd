"""An engine's live load from its Prometheus /metrics (vLLM's names): requests running and waiting, how full
its KV cache is, the tokens it has generated and read, and how often its prefix cache hit. The Serving tab
shows these beside the in-process measurements; the Speculative tab's counters come from the same text.

    >>> load = load_from_metrics({
    ...     'vllm:num_requests_running{engine="0",model_name="m"}': 3.0,
    ...     'vllm:num_requests_waiting{engine="0",model_name="m"}': 1.0,
    ...     'vllm:kv_cache_usage_perc{engine="0",model_name="m"}': 0.25,
    ...     'vllm:generation_tokens_total{engine="0",model_name="m"}': 640.0,
    ...     'vllm:prefix_cache_queries_total{engine="0",model_name="m"}': 200.0,
    ...     'vllm:prefix_cache_hits_total{engine="0",model_name="m"}': 50.0})
    >>> load.running, load.waiting, load.kv_cache_usage, load.prefix_cache_hit_rate
    (3.0, 1.0, 0.25, 0.25)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from playground.engine.client import EngineClient


def total(metrics: dict[str, float], name: str) -> float:
    """A metric summed over its label sets (one per engine core / model).

    >>> total({'a{x="1"}': 1.0, 'a{x="2"}': 2.0, 'ab': 5.0}, "a")
    3.0
    """
    return sum(value for key, value in metrics.items() if key.split("{")[0] == name)


@dataclass(frozen=True)
class EngineLoad:
    running: float  # requests in the running batch now
    waiting: float  # requests queued for a batch slot (or KV blocks)
    kv_cache_usage: float  # fraction of the KV-cache blocks in use, 0..1
    generation_tokens: float  # tokens generated since the engine started
    prompt_tokens: float  # prompt tokens read (prefilled) since it started
    prefix_cache_queries: float  # prompt tokens looked up in the prefix cache
    prefix_cache_hits: float  # of those, found (their KV reused, not recomputed)

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prefix_cache_hit_rate": self.prefix_cache_hit_rate}


def load_from_metrics(metrics: dict[str, float]) -> EngineLoad:
    """The load from parsed /metrics; a metric the engine does not export counts as 0."""
    return EngineLoad(total(metrics, "vllm:num_requests_running"), total(metrics, "vllm:num_requests_waiting"),
                      total(metrics, "vllm:kv_cache_usage_perc"), total(metrics, "vllm:generation_tokens_total"),
                      total(metrics, "vllm:prompt_tokens_total"), total(metrics, "vllm:prefix_cache_queries_total"),
                      total(metrics, "vllm:prefix_cache_hits_total"))


def engine_load(client: EngineClient) -> EngineLoad:
    return load_from_metrics(client.metrics())

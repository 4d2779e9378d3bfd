"""Compute for the Serving tab: how a server runs one model for many users (no gradio here).

- batching.py   real batched decode steps on the loaded model, timed (the batching curve), and batched
                greedy decoding of different prompts (left-padded) that equals decoding each alone
- kv_memory.py  the KV cache's bytes measured from the cache tensors vs the formula, and the device's free memory
- schedule.py   static vs continuous batching, simulated on the measured step costs (pure, deterministic)
- paging.py     a paged KV cache's block table and the memory it saves over max-length reservations
"""

from playground.serving.batching import (BatchingCurve, BatchPoint, batched_greedy, check_batch_sizes,
                                         measure_batching)
from playground.serving.errors import MeasurementCancelled, ServingInputError
from playground.serving.kv_memory import (KVMemoryReport, KVPoint, formula_cache_bytes, free_memory_bytes, kv_point,
                                          measured_cache_bytes)
from playground.serving.paging import BlockTable, block_table
from playground.serving.schedule import (POLICIES, Schedule, StepCostModel, format_step_costs, parse_lengths,
                                         parse_step_costs, simulate)

__all__ = ["BatchingCurve", "BatchPoint", "BlockTable", "KVMemoryReport", "KVPoint", "MeasurementCancelled",
           "POLICIES", "Schedule", "ServingInputError", "StepCostModel", "batched_greedy", "block_table",
           "check_batch_sizes", "format_step_costs", "formula_cache_bytes", "free_memory_bytes", "kv_point",
           "measure_batching", "measured_cache_bytes", "parse_lengths", "parse_step_costs", "simulate"]

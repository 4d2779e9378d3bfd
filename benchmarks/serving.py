"""Serving benchmark: the batching curve of the embedded model, measured with the tab's own code
(playground.serving.measure_batching: a prompt repeated B times, one prefill into a DynamicCache, then timed
decode steps). Each row is total decode tokens/s at batch B as a ratio to batch 1, both from the same run
(batch sizes interleaved over several rounds so they see the same machine load); the table shows medians.

`python -m benchmarks.serving [--steps N] [--rounds N]` prints the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import datetime, timezone
from typing import Any

BATCHES = (1, 2, 4, 8, 16, 32, 64)
PROMPT = "The sky is blue because"


def run(steps: int = 8, rounds: int = 3) -> list[dict[str, Any]]:
    from benchmarks.common import load_default_model, row
    from playground.serving import measure_batching

    loaded = load_default_model()
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    step_seconds: dict[int, list[float]] = {b: [] for b in BATCHES}
    measure_batching(loaded.model, ids, [1], 2)  # warm-up
    for _ in range(rounds):  # every round measures every batch size: the load is shared out evenly
        curve = measure_batching(loaded.model, ids, BATCHES, steps)
        for point in curve.points:
            step_seconds[point.batch].append(point.step_seconds)
    base = 1 / statistics.median(step_seconds[1])  # tokens/s at batch 1
    conditions = (f"{datetime.now(timezone.utc):%Y-%m-%d}, {loaded.spec.label} {loaded.precision.label} on "
                  f"{loaded.device}, prompt {ids.shape[1]} tokens, {steps} steps x {rounds} rounds, load average "
                  f"{os.getloadavg()[0]:.1f}")
    return [row(f"serving: total decode tok/s at batch {b} vs batch 1", b / statistics.median(step_seconds[b]), base,
                "tok/s", conditions, higher_is_better=True) for b in BATCHES]


def main() -> None:
    from benchmarks.common import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_table(run(args.steps, args.rounds))


if __name__ == "__main__":
    main()

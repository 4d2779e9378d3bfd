"""Shared benchmark plumbing: interleaved timing, the table, the default model."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def model_manager() -> Any:
    """A ModelManager on the app's offline settings (the embedded default model)."""
    from transformers.utils import logging as hf_logging

    from playground.config import load_settings
    from playground.runtime import ModelManager

    hf_logging.disable_progress_bar()
    return ModelManager(load_settings(["--offline"]))


def load_default_model(precision: str = "auto") -> Any:
    """The embedded default model through the app's own runtime (offline)."""
    return model_manager().load(precision=precision)


def interleaved(ours: Callable[[], Any], baseline: Callable[[], Any], repeats: int, warmup: int = 1
                ) -> tuple[list[float], list[float]]:
    """Seconds per call of each, measured alternately so both see the same machine load."""
    for _ in range(warmup):
        ours()
        baseline()
    ours_times, baseline_times = [], []
    for _ in range(repeats):
        for function, times in ((ours, ours_times), (baseline, baseline_times)):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
    return ours_times, baseline_times


def median(values: list[float]) -> float:
    return statistics.median(values)


def row(name: str, ours: float, baseline: float, unit: str, conditions: str, higher_is_better: bool = False,
        target: str = "") -> dict[str, Any]:
    """One table row. `ratio` is ours / baseline; for rates (tok/s) higher is better."""
    return {"name": name, "ours": ours, "baseline": baseline, "ratio": ours / baseline if baseline else float("nan"),
            "unit": unit, "higher_is_better": higher_is_better, "target": target, "conditions": conditions}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'benchmark':58} {'ours':>10} {'baseline':>10} {'ratio':>8}  {'target':10} unit")
    for r in rows:
        print(f"{r['name'][:58]:58} {r['ours']:10.3f} {r['baseline']:10.3f} {r['ratio']:7.2f}x  "
              f"{r.get('target', ''):10} {r['unit']}")
    for condition in dict.fromkeys(r["conditions"] for r in rows):
        print("  conditions:", condition)

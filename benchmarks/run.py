"""Run every benchmark and print one table (name, ours, baseline, ratio, target, conditions);
write the rows to artifacts/benchmarks.json. `make bench`, or `python -m benchmarks.run [--only a,b]`.

Each benchmarks/<area>.py exposes run() -> list[dict] and can also be run alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
import traceback
from pathlib import Path

import torch

from benchmarks.common import print_table

ROOT = Path(__file__).resolve().parents[1]
NOT_BENCHMARKS = {"__init__", "common", "run"}


def benchmark_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in NOT_BENCHMARKS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated module names, e.g. engine,attention")
    names = [n for n in parser.parse_args().only.split(",") if n] or benchmark_modules()
    rows, failures = [], []
    for name in names:
        started = time.perf_counter()
        try:
            module_rows = importlib.import_module(f"benchmarks.{name}").run()
        except Exception:  # one broken benchmark must not hide the others' numbers
            failures.append({"module": name, "error": traceback.format_exc(limit=3)})
            print(f"[{name}] FAILED\n{failures[-1]['error']}")
            continue
        for r in module_rows:
            r["module"] = name
        rows.extend(module_rows)
        print(f"[{name}] {len(module_rows)} rows in {time.perf_counter() - started:.0f} s")
    print()
    print_table(rows)
    output = ROOT / "artifacts" / "benchmarks.json"
    output.parent.mkdir(exist_ok=True)
    machine = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "processor": platform.processor() or platform.machine()}
    output.write_text(json.dumps({"machine": machine, "rows": rows, "failures": failures}, indent=2, default=str))
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()

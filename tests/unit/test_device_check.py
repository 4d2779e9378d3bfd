"""benchmarks/device_check.py: it must import on a machine without gradio and plotly (the lent GPU machine has
neither), and its bookkeeping (statuses, exit status, time limits) must say what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_imports_without_gradio_and_plotly():
    # A fresh interpreter (so no other test's imports count), with both packages made unimportable.
    code = (
        "import sys\n"
        "sys.modules['gradio'] = None\n"
        "sys.modules['plotly'] = None\n"
        "import benchmarks.device_check as check\n"
        "assert callable(check.main)\n"
        "loaded = sorted(name for name in sys.modules if name.startswith(('playground.ui', 'playground.figures')))\n"
        "print('UI-MODULES', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "UI-MODULES []", result.stdout


def test_first_divergence():
    from benchmarks.device_check import first_divergence

    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 7]) == 2  # one stopped earlier: they part where it stopped
    assert first_divergence([], []) is None


def test_soft_checks_warn_and_hard_checks_fail():
    from benchmarks.device_check import Section, exit_code, within

    section = Section("demo", "Demo")
    section.check("fine", True, 1)
    section.check("a 135M model's quality", False, 0.7, soft=True)
    section.settle()
    assert [c.status for c in section.checks] == ["pass", "warn"] and section.status == "warn"
    assert exit_code([section]) == 0

    within(section, "bf16 noise", 0.08, 0.05, exact=False)  # up to twice the tolerance: a warning
    within(section, "bf16 bug", 0.2, 0.05, exact=False)
    within(section, "fp32", 0.08, 0.05, exact=True)
    assert [c.status for c in section.checks[2:]] == ["warn", "fail", "fail"]
    section.settle()
    assert section.status == "fail" and exit_code([section]) == 1

    skipped = Section("late", "Late", status="skipped")
    skipped.settle()
    assert skipped.status == "skipped"
    assert exit_code([Section("ok", "OK", status="pass"), skipped]) == 2


def test_plain_makes_json_safe_values():
    import numpy as np
    import torch

    from benchmarks.device_check import plain

    value = plain({"a": np.float32(0.5), "b": torch.tensor([1, 2]), "c": float("nan"), "d": (np.int64(3),),
                   "e": torch.zeros(100)})
    assert value == {"a": 0.5, "b": [1, 2], "c": "nan", "d": [3], "e": "tensor(100,)"}
    json.dumps(value, allow_nan=False)


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="SIGALRM is POSIX-only")
def test_time_limit_interrupts_and_restores_the_outer_alarm():
    import signal

    from benchmarks.device_check import SectionTimeout, time_limit

    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    outer = signal.setitimer(signal.ITIMER_REAL, 30.0)  # e.g. pytest-timeout's alarm
    try:
        with pytest.raises(SectionTimeout):
            with time_limit(0.2):
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    time.sleep(0.01)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < remaining <= 30  # the outer alarm is running again, minus the time spent inside
        with time_limit(0):  # 0: no limit
            time.sleep(0.01)
    finally:
        signal.setitimer(signal.ITIMER_REAL, *outer)
        signal.signal(signal.SIGALRM, previous)
    assert not fired


def test_arguments_and_make_bench_leaves_the_check_out():
    from benchmarks.device_check import SECTIONS, parse_args
    from benchmarks.run import benchmark_modules

    assert "device_check" not in benchmark_modules()  # a device report, not a ratio benchmark

    args = parse_args(["--out", "x"])
    assert (args.device, args.quantization, args.quick) == ("cuda", "nf4", False)
    assert [key for key, _, _ in SECTIONS] == ["load", "tokenization", "attention", "sampling", "engine",
                                               "speculative", "rag", "lora", "calibration", "quantization"]


@pytest.mark.slow
def test_the_cpu_rehearsal_passes(tmp_path, settings):
    """The whole check on the CPU in quick mode (about a minute on 2 quiet cores): every section runs and no
    check fails (warnings, e.g. NF4's top-1 agreement on this small model, are allowed)."""
    command = [sys.executable, "-m", "benchmarks.device_check", "--device", "cpu", "--quantization", "auto",
               "--quick", "--out", str(tmp_path), "--cache-dir", str(settings.cache_dir),
               "--budget", "0", "--section-timeout", "0"]  # no wall-clock limits: a busy CI machine is slow, not wrong
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=850,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    report = json.loads((tmp_path / "device_check.json").read_text(encoding="utf-8"))
    problems = {s["key"]: s["error"] or [c["name"] for c in s["checks"] if c["status"] == "fail"]
                for s in report["sections"] if s["status"] not in ("pass", "warn")}
    assert result.returncode == 0 and not problems, (problems, result.stdout[-4000:], result.stderr[-2000:])
    assert report["finished"] and len(report["sections"]) == 10
    assert (tmp_path / "device_check.log").read_text(encoding="utf-8").strip()

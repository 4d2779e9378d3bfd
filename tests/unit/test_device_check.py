"""tests/device, the device suite: it must collect on a machine without gradio and plotly (the lent GPU machine
has neither), its bookkeeping (check statuses, the JSON report) must say what happened, and a quick subset of it
passes on the CPU (the rehearsal below; the suite is collected only with --device, so it runs here once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "tests" / "device"
if str(DEVICE) not in sys.path:
    sys.path.insert(0, str(DEVICE))  # harness.py, as the device tests import it


def test_collects_without_gradio_and_plotly():
    # A fresh interpreter (so no other test's imports count), with both packages made unimportable.
    code = (
        "import sys\n"
        "sys.modules['gradio'] = None\n"
        "sys.modules['plotly'] = None\n"
        "import pytest\n"
        "code = pytest.main(['tests/device', '--device', 'cpu', '--collect-only', '-q', '-p', 'no:cacheprovider'])\n"
        "assert code == 0, code\n"
        "loaded = sorted(name for name in sys.modules if name.startswith(('playground.ui', 'playground.figures')))\n"
        "print('UI-MODULES', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "UI-MODULES []", result.stdout
    collected = [line for line in result.stdout.splitlines() if line.startswith("tests/device/")]
    assert len(collected) == 10, result.stdout  # one test per section


def test_the_normal_suite_does_not_collect_the_device_suite():
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/unit/test_device_check.py", "tests/device",
                             "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert "tests/device is the device suite: pass --device" in result.stdout + result.stderr
    result = subprocess.run([sys.executable, "-m", "pytest", "tests", "--collect-only", "-q", "-p", "no:cacheprovider",
                             "-k", "device"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "tests/unit/test_device_check.py" in result.stdout and "tests/device/" not in result.stdout


def test_first_divergence():
    from harness import first_divergence

    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 7]) == 2  # one stopped earlier: they part where it stopped
    assert first_divergence([], []) is None


def test_soft_checks_warn_and_hard_checks_fail():
    from harness import Section, within

    section = Section("demo", "Demo")
    section.check("fine", True, 1)
    section.check("a 135M model's quality", False, 0.7, soft=True)
    section.settle()
    assert [c.status for c in section.checks] == ["pass", "warn"] and section.status == "warn"
    assert section.failures() == []

    within(section, "bf16 noise", 0.08, 0.05, exact=False)  # up to twice the tolerance: a warning
    within(section, "bf16 bug", 0.2, 0.05, exact=False)
    within(section, "fp32", 0.08, 0.05, exact=True)
    assert [c.status for c in section.checks[2:]] == ["warn", "fail", "fail"]
    section.settle()
    assert section.status == "fail" and [c.name for c in section.failures()] == ["bf16 bug", "fp32"]

    skipped = Section("late", "Late", status="skipped")
    skipped.settle()
    assert skipped.status == "skipped"


def test_plain_makes_json_safe_values():
    import numpy as np
    import torch
    from harness import plain

    value = plain({"a": np.float32(0.5), "b": torch.tensor([1, 2]), "c": float("nan"), "d": (np.int64(3),),
                   "e": torch.zeros(100)})
    assert value == {"a": 0.5, "b": [1, 2], "c": "nan", "d": [3], "e": "tensor(100,)"}
    json.dumps(value, allow_nan=False)


def test_sections_and_make_bench_leaves_the_device_suite_out():
    from harness import SECTIONS

    from benchmarks.run import benchmark_modules

    assert "device_check" not in benchmark_modules() and not (ROOT / "benchmarks" / "device_check.py").exists()
    assert [key for key, _ in SECTIONS] == ["load", "tokenization", "attention", "sampling", "engine",
                                            "speculative", "rag", "lora", "calibration", "quantization"]
    tests = {f"test_{key}" for key, _ in SECTIONS}
    defined = {line.split("(")[0].removeprefix("def ") for path in DEVICE.glob("test_device_*.py")
               for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("def test_")}
    assert defined == tests  # each section has its test, each test its section


# A quick subset (a few minutes on 2 busy cores): the rest of the suite is collected by the test above, so a
# renamed import fails here too; the whole suite runs on a lent GPU (README: device suite).
REHEARSAL = "load or tokenization or attention or sampling or engine or calibration"


@pytest.mark.slow
def test_the_cpu_rehearsal_passes(tmp_path, settings):
    """A quick subset of the device suite on the CPU: every selected test passes (warnings allowed), the report
    has every section (the others "not run") and the log is written."""
    command = [sys.executable, "-m", "pytest", "tests/device", "--device", "cpu", "--precision", "auto",
               "--device-quick", "--device-report", str(tmp_path), "--device-cache-dir", str(settings.cache_dir),
               "-k", REHEARSAL, "-p", "no:cacheprovider", "-q"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=850,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    report = json.loads((tmp_path / "device_check.json").read_text(encoding="utf-8"))
    problems = {s["key"]: s["error"] or [c["name"] for c in s["checks"] if c["status"] == "fail"]
                for s in report["sections"] if s["status"] not in ("pass", "warn", "not run")}
    assert result.returncode == 0 and not problems, (problems, result.stdout[-4000:], result.stderr[-2000:])
    assert report["finished"] and report["exit_code"] == 0 and len(report["sections"]) == 10
    ran = {s["key"] for s in report["sections"] if s["status"] != "not run"}
    assert ran == {"load", "tokenization", "attention", "sampling", "engine", "calibration"}
    assert {"command", "arguments", "environment", "wall_seconds", "cache_dir"} <= set(report["meta"])
    assert (tmp_path / "device_check.log").read_text(encoding="utf-8").strip()

"""The docstring examples (`>>>`) in playground/ are run, so they stay true: `pytest --doctest-modules
playground` in a subprocess (it imports every module, gradio included, which the rest of the unit suite
should not inherit; ~5 s)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_doctests(target: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--doctest-modules", str(target), "-q",
                           "-p", "no:cacheprovider", *extra],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_every_docstring_example_in_playground_runs():
    result = run_doctests(ROOT / "playground", ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # Every module with an example was collected (an import error or a module left out would show here).
    files = [path for path in (ROOT / "playground").rglob("*.py") if re.search(r"^\s*>>> ", path.read_text(), re.M)]
    passed = int(re.search(r"(\d+) passed", output).group(1))
    assert len(files) >= 25 and passed >= len(files), output[-2000:]


def test_a_wrong_docstring_example_fails_the_run(tmp_path):
    (tmp_path / "wrong.py").write_text('def double(x):\n    """\n    >>> double(2)\n    5\n    """\n'
                                       '    return 2 * x\n')
    result = run_doctests(tmp_path / "wrong.py", tmp_path, "-c", os.devnull)
    assert result.returncode == 1 and "1 failed" in result.stdout, result.stdout[-2000:]

"""Rules of the house that code can check: compute, runtime and figure modules never import gradio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "playground"


def _non_ui_modules() -> list[str]:
    """Every module of the package outside playground/ui, found on disk so new modules are covered."""
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        if "ui" in relative.parts:
            continue
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        modules.append(".".join(parts))
    return modules


def test_finds_the_compute_modules():
    modules = _non_ui_modules()
    assert {"playground.sampling", "playground.generation", "playground.runtime.loading"} <= set(modules)
    assert not any(name.startswith("playground.ui") for name in modules)


def test_no_compute_module_imports_gradio():
    # One interpreter imports the modules in turn and reports which one first brings gradio in
    # (a fresh interpreter per module would cost ~1.5 s each for the torch import).
    code = (
        "import importlib, sys\n"
        f"for name in {_non_ui_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'gradio' in sys.modules:\n"
        "        print('IMPORTS-GRADIO', name); break\n"
        "else:\n"
        "    print('CLEAN')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "CLEAN", result.stdout

"""Rules of the house that code can check: compute, runtime and figure modules never import gradio, and
imports between playground modules only point down (no cycles)."""

from __future__ import annotations

import ast
import importlib
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


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` under `root` (a package is its __init__)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports: every `import` / `from ... import` at any depth (inside
    functions too, so a late import cannot hide a cycle), relative names resolved. `from p import x` counts
    as importing module p.x when x is a module, else p. Importing a submodule from outside its package
    also counts as importing the package, whose __init__ Python runs first."""
    modules = module_files(root, package)

    def known(name: str) -> str | None:
        while name and name not in modules:  # `import a.b.c` of a name inside a module: the module
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                            for alias in node.names]
        for target in filter(None, map(known, targets)):
            graph[name].add(target)
            parent = target.rpartition(".")[0]
            while parent and not (name == parent or name.startswith(parent + ".")):
                graph[name].add(parent)  # a submodule imported from outside runs its package's __init__
                parent = parent.rpartition(".")[0]
        graph[name].discard(name)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted: the cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    modules = module_files(ROOT, "playground")
    for name in modules:  # every module imports cleanly (so the graph below is of real, working modules)
        importlib.import_module(name)
    graph = import_graph(ROOT, "playground")
    assert {"playground.sampling_pipeline"} <= graph["playground.generation"]
    assert import_cycles(graph) == [], "import cycles among playground modules (break them; imports point down)"


def test_the_cycle_check_finds_a_cycle(tmp_path):
    # Two modules that import each other, one of them late (inside a function) and relatively.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b"]]


def test_a_package_init_that_imports_back_is_a_cycle(tmp_path):
    # The sampling layout that does not work: pkg/inner/__init__ re-exports views, views import the loop,
    # and the loop imports pkg.inner.pipeline, which runs pkg/inner/__init__ first (half-initialised loop).
    files = {"__init__.py": "", "loop.py": "from pkg.inner.pipeline import x\n", "inner/__init__.py":
             "from pkg.inner.views import view\n", "inner/pipeline.py": "", "inner/views.py": "from pkg.loop import run\n"}
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.loop"] == {"pkg.inner.pipeline", "pkg.inner"}
    assert import_cycles(graph) == [["pkg.inner", "pkg.inner.views", "pkg.loop"]]

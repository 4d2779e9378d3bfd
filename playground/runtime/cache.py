"""The cache's one write protocol: build a folder under a staging name, rename it into place when done.

A reader only ever sees a missing folder or a whole one: an interrupted write (a crash, Ctrl-C, a failed
conversion) leaves no target behind. Each writer stages under a name of its own (`<name>.partial-<pid>-<tag>`),
so two processes sharing a cache folder (two app processes, or test workers) never delete each other's work;
a staging folder whose process is gone is removed by the next writer.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_folder(target) as staging:
    ...     _ = (staging / "weights.txt").write_text("done")
    >>> sorted(p.name for p in target.parent.iterdir()), sorted(p.name for p in target.iterdir())
    (['model'], ['weights.txt'])
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _remove_abandoned(target: Path) -> None:
    """Remove staging and retired folders of `target` left by processes that no longer run (`<name>.partial-<pid>-
    <tag>`, `<name>.retired-<pid>-<tag>`, and the older plain `<name>.partial`)."""
    for pattern in (".partial*", ".retired-*"):
        for leftover in target.parent.glob(target.name + pattern):
            parts = leftover.name[len(target.name) + 1:].split("-")  # ["partial", pid, tag] or ["partial"]
            if len(parts) < 2 or not parts[1].isdigit() or not _process_alive(int(parts[1])):
                shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder of this writer's own; on success it replaces `target` (renames), on any
    failure (including KeyboardInterrupt) it is removed and `target` is left as it was. When another process
    put a whole `target` in place during the rename, theirs stays and this copy is dropped (both are whole)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        yield staging
        retired = staging.with_name(staging.name.replace(".partial-", ".retired-", 1))
        with contextlib.suppress(FileNotFoundError):
            target.rename(retired)  # a damaged or older copy: out of the way in one step
        with contextlib.suppress(OSError):  # another writer's whole copy arrived first: keep it
            staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a no-op after the rename

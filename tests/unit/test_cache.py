"""runtime/cache.py: the cache's write-to-a-staging-folder-then-rename protocol, with several writers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from playground.runtime.cache import atomic_folder


def test_success_renames_the_staging_folder_into_place(tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny"
    with atomic_folder(target) as staging:
        assert staging.parent == tmp_path / "models" and staging.name.startswith("tiny.partial-") and staging.is_dir()
        (staging / "weights.safetensors").write_text("w")
        assert not target.exists()  # nothing visible until the block ends
    assert (target / "weights.safetensors").read_text() == "w"
    assert not staging.exists()


def test_an_interrupted_write_leaves_no_target_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(target) as staging:
            (staging / "half.bin").write_text("half")
            raise KeyboardInterrupt
    assert not target.exists()
    assert not staging.exists()


def test_a_failed_rewrite_keeps_the_old_target(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    with atomic_folder(target) as staging:
        (staging / "v1").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as staging:
            (staging / "v2").write_text("2")
            raise RuntimeError("conversion failed")
    assert sorted(p.name for p in target.iterdir()) == ["v1"]


def test_a_leftover_partial_is_cleared_and_a_success_replaces_the_old_target(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    (tmp_path / "tiny.partial").mkdir()
    (tmp_path / "tiny.partial" / "stale").write_text("stale")
    target.mkdir()
    (target / "old").write_text("old")
    with atomic_folder(target) as staging:
        assert list(staging.iterdir()) == []
        (staging / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]


def test_two_writers_of_one_target_never_delete_each_others_staging(tmp_path: Path) -> None:
    """Two processes (two app processes on one cache, test workers) converting the same model at once: the
    second's start must not remove the first's half-written folder, and both end with a whole target."""
    target = tmp_path / "tiny"
    with atomic_folder(target) as first:
        (first / "a").write_text("first")
        with atomic_folder(target) as second:
            assert first.is_dir() and (first / "a").read_text() == "first" and second != first
            (second / "b").write_text("second")
        assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in target.iterdir()) in (["a"], ["b"])  # whole, one writer's
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no staging or retired folder left


def test_a_dead_writers_staging_is_removed_a_live_ones_is_kept(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = tmp_path / f"tiny.partial-{gone.stdout.strip()}-dead"
    live = tmp_path / f"tiny.partial-{os.getppid()}-live"  # the test runner's parent: alive
    for folder in (dead, live, tmp_path / f"tiny.retired-{gone.stdout.strip()}-x"):
        folder.mkdir()
    with atomic_folder(tmp_path / "tiny") as staging:
        (staging / "w").write_text("w")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tiny", live.name])


def test_cache_module_documents_itself() -> None:
    import doctest

    from playground.runtime import cache

    assert doctest.testmod(cache).failed == 0

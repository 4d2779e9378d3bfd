"""runtime/cache.py: the cache's write-to-.partial-then-rename protocol."""

from pathlib import Path

import pytest

from playground.runtime.cache import atomic_folder


def test_success_renames_the_staging_folder_into_place(tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny"
    with atomic_folder(target) as staging:
        assert staging == tmp_path / "models" / "tiny.partial" and staging.is_dir()
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


def test_cache_module_documents_itself() -> None:
    import doctest

    from playground.runtime import cache

    assert doctest.testmod(cache).failed == 0

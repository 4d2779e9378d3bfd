"""A request right after a background load starts waits for it (found keeping README's `--no-preload` sentence):
`require_active` returned "No model is loaded" when it ran before the preload thread had begun its load."""

from __future__ import annotations

import time

from playground.config import Settings
from playground.runtime import ModelManager


def test_a_request_just_after_the_background_load_starts_waits_for_it(tmp_path, tiny_model_dir, monkeypatch):
    manager = ModelManager(Settings(model=str(tiny_model_dir), device="cpu", precision="none", cache_dir=tmp_path))
    load = manager.load

    def slow_to_begin(*args, **kwargs):  # the thread is scheduled late (a busy machine): widen the window
        time.sleep(0.3)
        return load(*args, **kwargs)

    monkeypatch.setattr(manager, "load", slow_to_begin)
    manager.start_background_load()
    assert manager.require_active(wait_seconds=120).spec.key == manager.resolve_key(str(tiny_model_dir)).model


def test_a_failed_background_load_does_not_leave_requests_waiting(tmp_path):
    manager = ModelManager(Settings(model=str(tmp_path / "no-such-model"), device="cpu", cache_dir=tmp_path))
    manager.start_background_load().join(60)
    started = time.monotonic()
    try:
        manager.require_active(wait_seconds=30)
    except Exception as error:  # the load's own message, at once
        assert "No model is loaded" in str(error) and time.monotonic() - started < 5
    else:
        raise AssertionError("a model is active after a failed load")

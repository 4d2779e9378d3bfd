"""In a class, the presenter's forwards go first on the model's lock (the rule build_app installs)."""

from __future__ import annotations

from playground.config import Settings


def test_the_presenter_is_urgent_only_while_a_class_runs(tiny_model_dir, tmp_path):
    from playground.runtime import ModelManager
    from playground.ui import build_app

    settings = Settings(model=str(tiny_model_dir), precision="none", device="cpu", preload=False,
                        cache_dir=tmp_path, presenter_key="k3y")
    manager = ModelManager(settings)
    loaded = manager.load()
    demo = build_app(settings, manager)
    handler = {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name}
    assert loaded.lock.urgent() is False  # no class, and this caller is no presenter
    handler["presenter_login"]("k3y")
    assert loaded.lock.urgent() is False  # the presenter, but no class: first come, first served
    handler["start_class"]("Priority")
    assert loaded.lock.urgent() is True
    handler["end_class"]()
    assert loaded.lock.urgent() is False

"""ZeroGPU (issue 18): every endpoint that runs the model or the embedder borrows a GPU on a ZeroGPU Space.

The app is built as on a Space (SPACE_ID set, a stand-in `spaces` package whose GPU decorator marks what it
wraps), over the tiny model with its forward trapped. Every endpoint is called with its inputs' default
values; any that reaches the model's forward or the embedder must be wrapped."""

from __future__ import annotations

import functools
import inspect
import sys
import types

import pytest

from playground.config import Settings


class Reached(Exception):
    """The trapped model (or embedder) was called."""


def fake_spaces() -> types.ModuleType:
    module = types.ModuleType("spaces")

    def GPU(duration: int = 60):  # noqa: N802 - the real package's name
        def decorate(function):
            @functools.wraps(function)
            def wrapper(*args, **kwargs):
                return function(*args, **kwargs)

            wrapper.zerogpu_seconds = duration
            return wrapper

        return decorate

    module.GPU = GPU
    return module


@pytest.fixture(scope="module")
def app_on_a_space(tiny_model_dir, tmp_path_factory):
    from playground.runtime import ModelManager
    from playground.ui import build_app
    from playground.ui.queueing import configure_queue

    patch = pytest.MonkeyPatch()
    patch.setenv("SPACE_ID", "someone/playground")
    patch.setitem(sys.modules, "spaces", fake_spaces())
    settings = Settings(model=str(tiny_model_dir), precision="none", device="cpu", preload=False,
                        cache_dir=tmp_path_factory.mktemp("zerogpu"))
    manager = ModelManager(settings)
    loaded = manager.load()
    demo = configure_queue(build_app(settings, manager), settings)
    yield demo, manager, loaded
    patch.undo()


def call_with_defaults(fn) -> None:
    """One call of an endpoint with its inputs' default values; a generator is advanced a few steps."""
    try:
        result = fn.fn(*[getattr(component, "value", None) for component in fn.inputs])
        if inspect.isgenerator(result):
            for _, _ in zip(range(3), result):
                pass
    except BaseException:  # noqa: BLE001 - refusals and the trap are expected; only reaching the model counts
        pass


def test_every_endpoint_that_runs_the_model_borrows_a_gpu(app_on_a_space):
    demo, manager, loaded = app_on_a_space
    reached: set[str] = set()
    calling = [""]

    def trap(*args, **kwargs):
        reached.add(calling[0])
        raise Reached()

    loaded.model.forward = trap  # the instance attribute wins over the class's forward: every call lands here
    manager.embedding_model = trap
    endpoints = {fn.api_name: fn for fn in demo.fns.values()
                 if fn.api_name and not fn.api_name.startswith("export_") and fn.api_name != "train_lora"}
    for name, fn in endpoints.items():
        calling[0] = name
        call_with_defaults(fn)
    unwrapped = sorted(name for name in reached if not getattr(endpoints[name].fn, "zerogpu_seconds", None))
    assert not unwrapped, f"these endpoints run the model but do not borrow a ZeroGPU slot: {unwrapped}"
    assert {"next_token", "attention", "retrieve"} <= reached  # the trap works: the obvious ones reach it


def test_off_a_space_nothing_is_wrapped(tiny_model_dir, tmp_path, monkeypatch):
    from playground.runtime import ModelManager
    from playground.ui import build_app
    from playground.ui.queueing import configure_queue

    monkeypatch.delenv("SPACE_ID", raising=False)
    settings = Settings(model=str(tiny_model_dir), precision="none", device="cpu", preload=False, cache_dir=tmp_path)
    demo = configure_queue(build_app(settings, ModelManager(settings)), settings)
    assert not any(hasattr(fn.fn, "zerogpu_seconds") for fn in demo.fns.values() if fn.fn is not None)

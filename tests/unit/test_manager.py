"""ModelManager: caching per (model, precision, device), one load at a time, failures keep the old model."""

from __future__ import annotations

import threading
import time

import pytest

from playground.config import Settings
from playground.runtime import ModelBusyError, ModelLoadError, ModelManager, manager as manager_module


@pytest.fixture
def manager(tmp_path, tiny_model_dir):
    return ModelManager(Settings(model=str(tiny_model_dir), precision="none", device="cpu", cache_dir=tmp_path,
                                 offline=True))


def test_nothing_loads_until_asked(manager):
    assert manager.active() is None and manager.state.phase == "idle"
    with pytest.raises(ModelLoadError, match="No model is loaded"):
        manager.require_active(wait_seconds=0.1)


def test_load_caches_per_key_and_reports_progress(manager, tiny_model_dir):
    messages = []
    first = manager.load(progress=lambda fraction, message: messages.append((fraction, message)))
    assert manager.load() is first  # cached
    assert manager.load(str(tiny_model_dir), "int8", "cpu") is not first  # another precision: another entry
    assert messages[0][0] == 0.0 and messages[-1] == (1.0, "Ready")
    status = manager.status()
    assert status["loading"]["phase"] == "ready" and status["model"]["quantization"] == "int8"
    assert len(status["cached"]) == 2


def test_failed_load_keeps_the_previous_model(manager):
    good = manager.load()
    with pytest.raises(ModelLoadError, match="Unknown model"):
        manager.load("no such model")
    assert manager.active() is good
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        manager.load("someone/not-downloaded-model")
    assert manager.active() is good
    assert manager.state.phase == "failed" and "offline" in manager.state.message
    assert manager.require_active() is good


def test_concurrent_requests_share_one_load(manager, monkeypatch):
    calls = []
    real_load = manager_module.load_causal_lm

    def slow_load(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(manager_module, "load_causal_lm", slow_load)
    results = []
    threads = [threading.Thread(target=lambda: results.append(manager.load())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_a_second_load_gets_a_clear_busy_message(manager, monkeypatch, tiny_model_dir):
    release = threading.Event()
    real_load = manager_module.load_causal_lm

    def blocked_load(*args, **kwargs):
        release.wait(5)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(manager_module, "load_causal_lm", blocked_load)
    background = manager.start_background_load()
    time.sleep(0.2)
    assert manager.state.phase == "loading"
    with pytest.raises(ModelBusyError, match="Another model is loading"):
        manager.load(str(tiny_model_dir), "int8", "cpu", wait_seconds=0.1)
    release.set()
    background.join(5)
    assert manager.require_active(wait_seconds=5).precision.quantization == "none"


def test_least_recently_used_model_is_evicted(tmp_path, tiny_model_dir):
    manager = ModelManager(Settings(model=str(tiny_model_dir), device="cpu", cache_dir=tmp_path), max_cached=1)
    manager.load(precision="none")
    manager.load(precision="int8")
    assert [key["precision"] for key in manager.status()["cached"]] == ["int8"]
    assert manager.active().precision.quantization == "int8"


def test_resident_models_stay_within_the_memory_budget(tmp_path, tiny_model_dir, monkeypatch):
    from playground.runtime import loading

    monkeypatch.setattr(loading, "memory_footprint_bytes", lambda model: 600 * 2**20)  # each model "takes" 600 MB
    roomy = ModelManager(Settings(model=str(tiny_model_dir), device="cpu", cache_dir=tmp_path, model_memory_mb=1300))
    roomy.load(precision="none")
    roomy.load(precision="bf16")
    assert [key.precision for key, _ in roomy.residents()] == ["none", "bf16"]
    tight = ModelManager(Settings(model=str(tiny_model_dir), device="cpu", cache_dir=tmp_path, model_memory_mb=1000))
    tight.load(precision="none")
    tight.load(precision="bf16")
    assert [key.precision for key, _ in tight.residents()] == ["bf16"]  # the older one went, never the active
    assert sum(loaded.memory_bytes for _, loaded in tight.residents()) <= 1000 * 2**20


def test_a_negative_memory_budget_is_refused():
    with pytest.raises(ValueError, match="model_memory_mb must be 0"):
        Settings(model_memory_mb=-1)


def test_a_load_served_from_memory_clears_a_failed_state(manager):
    """Issue 24 #7: after a failed hub load, loading a model already in memory left `phase: failed` (the
    header's red line) because the cached path never set the state."""
    good = manager.load()
    with pytest.raises(ModelLoadError):
        manager.load("someone/not-downloaded-model")
    assert manager.state.phase == "failed"
    assert manager.load() is good
    state = manager.state
    assert state.phase == "ready" and state.target == good.spec.key and "failed" not in state.message
    manager.load(activate=False)  # a draft/comparison copy from memory does not touch the header
    assert manager.state.phase == "ready"


def test_switching_back_from_an_adopted_model_names_the_base_again(manager):
    """Issue 24 #7: after unload_lora (load(<base>) from memory) the header still named '<base>+lora:...'."""
    base = manager.load()
    manager.adopt(base, f"{base.spec.key}+lora:job1")
    assert manager.state.target.endswith("+lora:job1")
    manager.load()
    assert manager.state.phase == "ready" and manager.state.target == base.spec.key
    assert "lora" not in manager.status()["loading"]["target"]

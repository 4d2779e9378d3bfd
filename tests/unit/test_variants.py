"""runtime/variants.py: which copy of the model a tab needs, asked of the manager without activating it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from playground.runtime import variants


class RecordingManager:
    """Stands in for ModelManager: records load() calls and returns a marker."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def load(self, model: str, precision: str, device: str, activate: bool = True) -> str:
        self.calls.append((model, precision, device, activate))
        return f"loaded {model}"


def loaded(key: str, device: str, quantization: str) -> SimpleNamespace:
    return SimpleNamespace(spec=SimpleNamespace(key=key), device=device,
                           precision=SimpleNamespace(quantization=quantization))


def test_speculative_target_is_full_precision_on_cpu_and_the_active_model_on_gpu():
    models = RecordingManager()
    assert variants.speculative_target(models, loaded("m", "cpu", "int4")) == "loaded m"
    assert models.calls == [("m", "none", "cpu", False)]
    on_gpu = loaded("m", "cuda", "nf4")
    assert variants.speculative_target(models, on_gpu) is on_gpu


def test_draft_model_loads_the_copy_a_draft_runs_on():
    models = RecordingManager()
    target = loaded("m", "cpu", "none")
    assert variants.draft_model(models, "int8", target) == "loaded m"
    assert variants.draft_model(models, "model", target, " other ") == "loaded other"
    assert variants.draft_model(models, "ngram", target) is None
    assert models.calls == [("m", "int8", "cpu", False), ("other", "auto", "cpu", False)]
    with pytest.raises(variants.VariantError, match="CPU option"):
        variants.draft_model(models, "int4", loaded("m", "cuda", "nf4"))
    with pytest.raises(variants.VariantError, match="Name the draft model"):
        variants.draft_model(models, "model", target, "  ")


def test_trainable_base_is_fp32_on_cpu_and_nf4_on_gpu_of_the_merged_models_base():
    models = RecordingManager()
    variants.trainable_base(models, loaded(variants.merged_model_key("m", "job"), "cpu", "int4"))
    variants.trainable_base(models, loaded("m", "cuda", "nf4"))
    assert models.calls == [("m", "none", "cpu", False), ("m", "nf4", "cuda", False)]


def test_variants_module_documents_itself():
    import doctest

    assert doctest.testmod(variants).failed == 0

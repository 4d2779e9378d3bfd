"""Header: the model loads on the device in the requested precision (load time, memory, the status dict, a cached
reload) and predicts the next token."""

from __future__ import annotations

import json
import time

import pytest
import torch

from harness import NEXT_TOKEN_PROMPT, Run, Section, cuda_mb, forward_logits, model_device, plain
from playground import lora
from playground.generation import encode_prompt
from playground.runtime import resolve_model, resolve_precision
from playground.runtime.loading import prepare_weights

pytestmark = pytest.mark.device


def test_load(run: Run, section: Section) -> None:
    settings = run.settings
    spec = resolve_model(settings.model)
    precision = resolve_precision(settings.precision, run.device)
    section.metric("model", f"{spec.key} ({spec.source}, package {spec.package})")
    section.metric("precision resolved", f"{precision.quantization}: {precision.label}", note=precision.reason)
    if precision.warning:
        section.metric("precision warning", precision.warning)
    started = time.perf_counter()
    folder = prepare_weights(spec, settings.cache_dir, settings.offline, run.progress)
    section.metric("weights prepared (GGUF -> safetensors once, then cached)", time.perf_counter() - started, "s",
                   folder)
    before = torch.cuda.memory_allocated() if run.cuda else 0
    loaded = run.manager.load(progress=run.progress)
    run.loaded = loaded
    section.metric("load_seconds (header)", loaded.load_seconds, "s")
    section.metric("memory footprint (header)", loaded.memory_bytes / 2**20, "MB")
    if run.cuda:
        section.metric("CUDA memory allocated by the load", cuda_mb(torch.cuda.memory_allocated() - before), "MB")
    status = run.manager.status()
    section.data["status"] = status
    section.data["model_status"] = loaded.status()
    section.say("      status: " + json.dumps(plain(loaded.status())))
    parameter_device = model_device(loaded)
    section.check("model runs on the requested device", parameter_device.type == run.device and
                  loaded.device == run.device, f"{loaded.device} (parameters on {parameter_device})", run.device)
    section.check("precision is the requested one", loaded.precision.quantization == precision.quantization,
                  loaded.precision.label, precision.quantization)
    module_types = {type(module).__name__ for module in loaded.model.modules()}
    if precision.quantization == "nf4":
        count = sum(type(m).__name__ == "Linear4bit" for m in loaded.model.modules())
        section.check("bitsandbytes Linear4bit layers present", count > 0 and lora.is_4bit(loaded.model), count,
                      "> 0, is_loaded_in_4bit")
    elif precision.quantization == "int8" and run.cuda:
        count = sum(type(m).__name__ == "Linear8bitLt" for m in loaded.model.modules())
        section.check("bitsandbytes Linear8bitLt layers present", count > 0, count, "> 0")
    section.data["module_types"] = sorted(module_types)
    section.check("attention implementation", loaded.model.config._attn_implementation == "sdpa",
                  loaded.model.config._attn_implementation, "sdpa")
    section.check("header status: ready with this model", status["loading"]["phase"] == "ready"
                  and status["model"]["device"] == run.device and status["model"]["quantization"] ==
                  precision.quantization, f"{status['loading']['phase']}: {status['loading']['message']}")
    started = time.perf_counter()
    again = run.manager.load()
    seconds = time.perf_counter() - started
    section.check("a second load is the cached model", again is loaded and seconds < 1.0, f"{seconds * 1e3:.1f} ms")
    logits = forward_logits(loaded, encode_prompt(loaded.tokenizer, NEXT_TOKEN_PROMPT, chat=False))
    top = loaded.tokenizer.decode([int(logits.argmax())])
    section.check("logits finite", bool(torch.isfinite(logits).all()), f"dtype {logits.dtype}, vocab {logits.numel()}")
    section.check(f"next token after {NEXT_TOKEN_PROMPT!r}", top == " Paris", repr(top), "' Paris'", soft=True)

"""A trained adapter leaves the job: as a zip PEFT can load, or merged into a copy of the base model."""

from __future__ import annotations

import copy
import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path

from playground.lora.job import TrainedAdapter
from playground.runtime.loading import LoadedModel, memory_footprint_bytes
from playground.runtime.precision import requantize
from playground.runtime.variants import merged_model_key


def save_adapter_zip(adapter: TrainedAdapter, folder: Path) -> Path:
    """adapter_model.safetensors + adapter_config.json (loadable with PeftModel.from_pretrained), zipped."""
    target = Path(folder) / f"lora-{adapter.job_id}"
    shutil.rmtree(target, ignore_errors=True)
    with adapter.lock:
        adapter.model.save_pretrained(target, safe_serialization=True)
    archive = target.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(target.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(target))
    return archive


def merged_key(adapter: TrainedAdapter) -> str:
    """The manager key of the merged model: '<base>+lora:<job id>'."""
    return merged_model_key(adapter.base.spec.key, adapter.job_id)


def merge_adapter(adapter: TrainedAdapter, like: LoadedModel) -> LoadedModel:
    """W + (alpha/r) B A folded into a copy of the base, as a LoadedModel the other tabs can use.

    `like` is the model the app was using: a dynamic-int8 or int4 CPU model gets a merged model in the same
    precision (runtime.precision.requantize, as a fresh load would), so the other tabs stay as fast as before
    (the merge itself is done in fp32).
    """
    started = time.perf_counter()
    with adapter.lock:
        merged = copy.deepcopy(adapter.model).merge_and_unload()
    merged.eval()
    base = adapter.base
    precision = base.precision
    if like.precision.converts_after_load:
        merged = requantize(merged, like.precision)
        precision = like.precision
    spec = replace(base.spec, key=merged_key(adapter), label=f"{base.spec.label} + LoRA {adapter.job_id}")
    return LoadedModel(spec=spec, model=merged, tokenizer=adapter.tokenizer, device=base.device,
                       precision=precision, parameters=base.parameters, memory_bytes=memory_footprint_bytes(merged),
                       load_seconds=time.perf_counter() - started)

"""The variant a tab needs: which copy of the model (which precision, which base) a tab runs on, loaded
through the ModelManager beside the active model (`activate=False`), never replacing it.

Compute modules (drafts.py, lora/) take the LoadedModel these return; only this module and the UI hold
a ModelManager.

- `speculative_target`: the Speculative tab's target (full precision on a CPU, so a quantized copy is a
  cheaper draft);
- `default_precision_model`: the model in the app's default precision for its device (`auto`): the fastest
  plain decoding the app offers, the Speculative tab's second baseline;
- `draft_model`: the model a draft runs on: the target's int4 / int8 copy, or another model;
- `trainable_base`: the LoRA tab's base (fp32 on a CPU, NF4 on a GPU: QLoRA);
- `merged_model_key` / `base_model_key`: the manager key of a base with a merged LoRA adapter, and back.

    >>> base_model_key(merged_model_key("smollm2-135m-instruct", "x"))
    'smollm2-135m-instruct'
"""

from __future__ import annotations

from playground.runtime.loading import LoadedModel
from playground.runtime.manager import ModelManager
from playground.runtime.precision import resolve_precision

# The target's own weights in a cheaper CPU precision, loaded beside it (the Speculative tab's self-drafts).
QUANTIZED_SELF_DRAFTS = {"int4": "4-bit weight-only, torch's CPU int4 kernel", "int8": "torch.ao dynamic int8"}
MERGED_MARK = "+lora:"  # '<base>+lora:<job id>': a base model with a merged LoRA adapter (ModelManager.adopt)


class VariantError(ValueError):
    """The requested variant does not exist here; the message says what to pick instead."""


def speculative_target(models: ModelManager, active: LoadedModel) -> LoadedModel:
    """The active model, in full precision on a CPU (so its int4 or int8 copy is a cheaper draft); as loaded
    on a GPU."""
    if active.device == "cpu" and active.precision.quantization != "none":
        return models.load(active.spec.key, "none", "cpu", activate=False)
    return active


def default_quantization(device: str) -> str:
    """What `auto` resolves to on `device` (int4 on a CPU with the kernel, NF4 on CUDA with bitsandbytes)."""
    return resolve_precision("auto", device).quantization


def default_precision_model(models: ModelManager, target: LoadedModel) -> LoadedModel:
    """`target`'s model in the app's default precision on its device (what plain decoding runs on by default):
    the target itself when it already is in that precision, else the `auto` copy, loaded beside it."""
    if target.precision.quantization == default_quantization(target.device):
        return target
    return models.load(target.spec.key, "auto", target.device, activate=False)


def draft_model(models: ModelManager, kind: str, target: LoadedModel, name: str = "") -> LoadedModel | None:
    """The model a draft of `kind` runs on: the target's int4 / int8 copy (QUANTIZED_SELF_DRAFTS), the model
    `name` (kind "model"), or None for drafts that need no other model (layer skip, prompt lookup)."""
    if kind in QUANTIZED_SELF_DRAFTS:
        if target.device != "cpu":
            raise VariantError(f"The {kind} self-draft is a CPU option ({QUANTIZED_SELF_DRAFTS[kind]}). On a GPU, "
                               "pick layer skipping, prompt lookup or a smaller model of the same family.")
        return models.load(target.spec.key, kind, "cpu", activate=False)
    if kind == "model":
        if not (name or "").strip():
            raise VariantError("Name the draft model (a preset or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct).")
        return models.load(name.strip(), "auto", target.device, activate=False)
    return None


def merged_model_key(base_key: str, job_id: str) -> str:
    """The manager key of a base model with a merged LoRA adapter: '<base>+lora:<job id>'."""
    return f"{base_key}{MERGED_MARK}{job_id}"


def base_model_key(model_key: str) -> str:
    """The base of a merged model's key ('smollm2-135m-instruct+lora:x' -> 'smollm2-135m-instruct')."""
    return model_key.split(MERGED_MARK, 1)[0]


def trainable_base(models: ModelManager, active: LoadedModel) -> LoadedModel:
    """The model to train: the active model's base in a trainable precision, loaded through `models`
    without changing the active model (fp32 on CPU: int4 and dynamic int8 layers
    are not trainable; NF4 on CUDA: QLoRA)."""
    precision = "nf4" if active.device == "cuda" else "none"
    return models.load(base_model_key(active.spec.key), precision, active.device, activate=False)

"""Precision: the one place that decides what a requested precision means on a device, and converts to it.

`resolve_precision(requested, device)` turns a choice (PRECISION_CHOICES: auto, none, bf16, fp16, int8,
int4, nf4) into one resolved `Precision`; its `method` says how the weights are produced, and every
loader branches on that, never on the (choice, device) pair again:

    dtype          from_pretrained in `dtype` (fp32 / bf16 / fp16)
    int4-cpu       loaded in fp32, then the decoder's Linear layers packed to 4 bits (runtime/int4.py)
    torchao-int8   loaded in fp32, then every Linear swapped for torch.ao's dynamic int8 Linear
    bnb-int8       from_pretrained quantizes with bitsandbytes LLM.int8
    bnb-nf4        from_pretrained quantizes with bitsandbytes NF4 (QLoRA's 4-bit base on a GPU)

`load_time_quantization` gives from_pretrained's part (bitsandbytes); `requantize` does the in-memory
part, for a fresh load and for a model built in memory (a merged LoRA adapter) alike.

    >>> resolve_precision("int8", "cpu").method
    'torchao-int8'
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from playground.limits import shown
from playground.config import PRECISION_CHOICES
from playground.runtime.errors import ModelLoadError
from playground.runtime.decode import fuse_decoder
from playground.runtime.head import quantize_output_head
from playground.runtime.int4 import int4_available, quantize_int4_weights

WEIGHT_METHODS = ("dtype", "int4-cpu", "torchao-int8", "bnb-int8", "bnb-nf4")

# The methods that convert a loaded fp32 model in memory, with the progress message the header shows.
AFTER_LOAD_MESSAGES = {
    "torchao-int8": "Quantizing Linear layers to int8 (dynamic)",
    "int4-cpu": "Packing the decoder's Linear layers into 4-bit groups",
}


@dataclass(frozen=True)
class Precision:
    """How the weights are stored and computed. `reason` is shown in the header as is."""

    quantization: str  # the chosen precision, resolved: none | bf16 | fp16 | int8 | int4 | nf4 (PRECISION_CHOICES)
    dtype: torch.dtype  # dtype of the non-quantized parts / compute dtype
    label: str  # e.g. "int8 dynamic (torch.ao) + fp32"
    reason: str
    warning: str = ""
    method: str = "dtype"  # how the weights are produced (WEIGHT_METHODS): what every loader branches on

    def __post_init__(self) -> None:
        if self.method not in WEIGHT_METHODS:
            raise ValueError(f"method must be one of {WEIGHT_METHODS}, got {self.method!r}")

    @property
    def converts_after_load(self) -> bool:
        """True when the weights are loaded in `dtype` and then converted in memory (requantize), which
        also works on a model built in memory (a merged LoRA adapter)."""
        return self.method in AFTER_LOAD_MESSAGES

    @property
    def quantized_by_bitsandbytes(self) -> bool:
        """True when from_pretrained quantizes (and places) the weights itself (load_time_quantization)."""
        return self.method in ("bnb-int8", "bnb-nf4")


def bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # bitsandbytes raises various errors on unsupported platforms
        return False
    return True


# Measured on SmolLM2-135M-Instruct (Model tab, assets/model/eval_text.txt, 233 tokens): torch.ao dynamic
# int8 decodes ~3x faster than fp32 on 2 CPU cores, but its per-tensor activation quantization meets the
# model's outlier activations: KL 1.54 nats, top-1 agreement 34%, perplexity 201 vs 52. So it is opt-in.
# Numbers are printed only for the model they were measured on (`model` == MEASURED_MODEL).
MEASURED_MODEL = "smollm2-135m-instruct"
INT8_DYNAMIC_WARNING = ("dynamic int8 is ~3x faster on CPU but measurably worse: on SmolLM2-135M, top-1 agreement "
                        "with fp32 was 34% and perplexity 201 vs 52 (Model tab, quantization lab)")
INT8_DYNAMIC_WARNING_GENERIC = ("dynamic int8 is faster on CPU but can cost a lot of quality: its per-tensor "
                                "activation quantization meets outlier activations (measure it in the Model tab's "
                                "quantization lab)")
# The embedded model's "fp32" is its GGUF's Q4_1 weights dequantized: int4 re-encodes weights that were already
# 4-bit, so its KL against that reference flatters it (against the published bf16 weights it would be larger).
INT4_MEASURED = ("measured on SmolLM2-135M (2-core Xeon, 2026-12-03): 1.9-2.2x faster decoding than fp32 through "
                 "transformers' generate (the app's own fp32 loop is 1.05-1.13x faster than that), with the decode head and "
                 "the lean decoding step, KL 0.0007 / top-1 agreement 98% in decoding steps; that "
                 "fp32 is the GGUF's Q4_1 weights dequantized, so int4 re-encodes weights that were already 4-bit "
                 "and the KL flatters it (Model tab)")
INT4_GENERIC = ("reads an eighth of the decoder's bytes per token, so it decodes faster than fp32; measure this "
                "model's speed and quality in the Model tab")


def int4_note(model: str) -> str:
    """What the header says about int4 for `model`: measured numbers only for the model they were measured on."""
    return INT4_MEASURED if model == MEASURED_MODEL else INT4_GENERIC


def int8_warning(model: str) -> str:
    return INT8_DYNAMIC_WARNING if model == MEASURED_MODEL else INT8_DYNAMIC_WARNING_GENERIC


INT4_LABEL = "int4 weight-only (groups of 32, bf16 activations) + int8 head, top 64 logits in fp32"


def resolve_precision(requested: str, device: str, model: str = "") -> Precision:
    """Pick weight precision for a device. 'auto': NF4 on CUDA, int4 on CPU (fp32 where torch lacks the kernel).
    `model` (a preset key) only picks the words: measured numbers are quoted for the model they were measured on.

    On CUDA, NF4 (bitsandbytes) fits 7B models in ~5 GB with small, measured quality loss. On CPU decoding
    is bound by reading the weights, so auto takes int4 weight-only (runtime/int4.py) with the decode head
    (runtime/head.py) and the lean decoding step (runtime/decode.py): measured 1.9-2.2x faster than fp32 at KL 0.0007 / top-1 98% in decoding steps on
    SmolLM2-135M (0.0003 in a full forward, which keeps the fp32 head), against a reference that is its GGUF's Q4_1 weights
    dequantized (which flatters int4). Dynamic int8 is faster still but costs too much quality
    (see INT8_DYNAMIC_WARNING), so it stays opt-in, as does exact fp32 ('none').
    """
    if requested == "auto":
        if device == "cuda":
            if bitsandbytes_available():
                return Precision("nf4", torch.bfloat16, "NF4 4-bit (bitsandbytes) + bf16 compute",
                                 "auto: CUDA is present, so 4-bit NF4 weights (4x less memory than bf16)",
                                 method="bnb-nf4")
            return Precision("bf16", torch.bfloat16, "bf16",
                             "auto: CUDA is present but bitsandbytes is not importable, so bf16")
        if not int4_available():
            return Precision("none", torch.float32, "fp32",
                             "auto: fp32 on CPU (this torch build has no CPU int4 kernel)")
        return Precision("int4", torch.float32, INT4_LABEL,
                         f"auto: int4 on CPU, 4-bit decoder weights: {int4_note(model)}. 'none' gives exact fp32",
                         method="int4-cpu")
    if requested == "none":
        if device == "cuda":
            return Precision("none", torch.bfloat16, "bf16", "none: full precision for this GPU (bf16)")
        return Precision("none", torch.float32, "fp32", "none: full precision (fp32 on CPU)")
    if requested == "bf16":
        warning = "bf16 matmuls are slow on most CPUs (~2-3 tok/s here)." if device == "cpu" else ""
        return Precision("bf16", torch.bfloat16, "bf16", "bf16 as requested", warning)
    if requested == "fp16":
        if device == "cpu":
            raise ModelLoadError("fp16 is not offered on CPU: many fp16 kernels are missing or very slow there. "
                                 "Fix: use 'int8' (fastest on CPU), 'none' (fp32) or 'bf16'.")
        return Precision("fp16", torch.float16, "fp16", "fp16 as requested")
    if requested == "int4":
        if device != "cpu":
            raise ModelLoadError("int4 here is a CPU kernel (torch's weight-only int4). On a GPU use 'nf4' for 4-bit "
                                 "weights.")
        if not int4_available():
            raise ModelLoadError("This torch build has no CPU int4 kernel. Fix: use 'none' (fp32) or 'int8'.")
        return Precision("int4", torch.float32, INT4_LABEL,
                         f"int4 as requested: 4-bit decoder weights; {int4_note(model)}", method="int4-cpu")
    if requested in ("int8", "nf4"):
        # The one place that decides what int8 means: torch.ao dynamic int8 on a CPU (fast kernels there),
        # bitsandbytes LLM.int8 elsewhere.
        if device == "cpu" and requested == "int8":
            return Precision("int8", torch.float32, "int8 dynamic (torch.ao Linear) + fp32",
                             "int8 as requested: dynamic int8 Linear layers (torch.ao) on CPU", int8_warning(model),
                             method="torchao-int8")
        if not bitsandbytes_available():
            raise ModelLoadError(f"{requested} on {device} needs bitsandbytes, which is not importable here. "
                                 "Fix: pip install bitsandbytes, or pick another precision.")
        label = "NF4 4-bit (bitsandbytes) + bf16 compute" if requested == "nf4" else "int8 (bitsandbytes LLM.int8)"
        warning = ("bitsandbytes on CPU decodes at ~0.5 tok/s here; use it to see the 4-bit weights, "
                   "not for speed.") if device == "cpu" else ""
        return Precision(requested, torch.bfloat16 if device == "cuda" else torch.float32, label,
                         f"{requested} as requested (bitsandbytes)", warning, method=f"bnb-{requested}")
    raise ModelLoadError(f"Unknown precision {shown(requested)}; use auto, none, bf16, fp16, int8, int4 or nf4.")


def precision_options(device: str, model: str = "") -> list[tuple[str, Precision | None, str]]:
    """Every explicit precision (PRECISION_CHOICES without 'auto') on `device`, highest first:
    (value, its Precision, "") where it runs, (value, None, the first sentence of why not) where it doesn't."""
    options: list[tuple[str, Precision | None, str]] = []
    for value in PRECISION_CHOICES[1:]:
        try:
            options.append((value, resolve_precision(value, device, model), ""))
        except ModelLoadError as error:
            options.append((value, None, str(error).split(".")[0]))
    return options


def load_time_quantization(precision: Precision, device: str) -> dict[str, Any]:
    """from_pretrained's extra keyword arguments for `precision` on `device`: bitsandbytes' config and
    placement for the bnb methods, nothing for the others."""
    if not precision.quantized_by_bitsandbytes:
        return {}
    from transformers import BitsAndBytesConfig

    if precision.method == "bnb-nf4":
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16 if device == "cuda" else torch.float32,
            bnb_4bit_use_double_quant=True,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config, "device_map": {"": 0} if device == "cuda" else {"": "cpu"}}


def quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every nn.Linear by torch.ao's dynamic int8 Linear (weights int8, activations
    quantized on the fly per batch). CPU only; ~3x faster decode than fp32 here, at a measured quality cost (INT8_DYNAMIC_WARNING)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch marks quantized tensor creation deprecated; it still works
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def requantize(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """Convert an fp32 model in memory to `precision` when its method converts after loading (int4-cpu: int4
    decoder matrices, q/k/v and gate/up fused for the lean decoding step, and the decode head; torchao-int8); any other model is returned as it is. Used by the loader and by the LoRA merge, so a
    merged model gets the same weights a fresh load in that precision would."""
    if precision.method == "torchao-int8":
        return quantize_dynamic_int8(model)
    if precision.method == "int4-cpu":
        return quantize_output_head(fuse_decoder(quantize_int4_weights(model)))
    return model

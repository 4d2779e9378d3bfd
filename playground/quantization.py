"""Compute for the Model & quantization tab: what the model is made of, and what precision costs.

- `architecture_summary` / `parameter_breakdown`: counts derived from the config (the formula a reader
  can check), verified against the real weights in tests.
- `quality_vs_reference`: KL divergence, top-1 agreement and perplexity of one precision against another
  on the same token ids.
- `weight_quantization_view`: one weight matrix as fp32, as torch.ao int8 and as bitsandbytes NF4 would
  store it, for the histogram that shows the quantization levels.
- `memory_estimate`: weights x bits + KV cache, for "does a 70B fit on this GPU?".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from playground.config import ASSETS

EVAL_TEXT_PATH = ASSETS / "model" / "eval_text.txt"  # the fixed paragraph every precision is scored on


# ---------------------------------------------------------------------------------------------
# Architecture and parameter counts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchitectureSummary:
    model_type: str
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    tied_embeddings: bool
    rope_theta: float | None
    activation: str
    norm: str


def architecture_summary(config: Any) -> ArchitectureSummary:
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    rope = getattr(config, "rope_theta", None)
    if rope is None:
        rope = (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    return ArchitectureSummary(
        model_type=str(config.model_type),
        layers=int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        intermediate_size=int(config.intermediate_size),
        attention_heads=heads,
        kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=head_dim,
        vocab_size=int(config.vocab_size),
        context_length=int(getattr(config, "max_position_embeddings", 0) or 0),
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        rope_theta=float(rope) if rope is not None else None,
        activation=str(getattr(config, "hidden_act", "?")),
        norm="RMSNorm" if hasattr(config, "rms_norm_eps") else "LayerNorm",
    )


@dataclass(frozen=True)
class ComponentCount:
    component: str  # embeddings | attention | mlp | norms | lm_head
    parameters: int
    formula: str


def parameter_breakdown(config: Any) -> list[ComponentCount]:
    """Parameters per component of a Llama-style decoder, from the config alone.

    attention per layer: q and o are hidden x (heads x head_dim); k and v are hidden x (kv_heads x head_dim)
    mlp per layer (SwiGLU): gate, up and down, each hidden x intermediate
    norms: two RMSNorm vectors per layer plus the final one
    """
    a = architecture_summary(config)
    q_out, kv_out = a.attention_heads * a.head_dim, a.kv_heads * a.head_dim
    attention_bias = bool(getattr(config, "attention_bias", False))
    attention = a.hidden_size * q_out * 2 + a.hidden_size * kv_out * 2
    if attention_bias:
        attention += q_out + 2 * kv_out + a.hidden_size
    mlp = 3 * a.hidden_size * a.intermediate_size
    if getattr(config, "mlp_bias", False):
        mlp += 2 * a.intermediate_size + a.hidden_size
    rows = [
        ComponentCount("embeddings", a.vocab_size * a.hidden_size, "vocab x hidden"),
        ComponentCount("attention", a.layers * attention,
                       "layers x hidden x (2 x heads + 2 x kv_heads) x head_dim"),
        ComponentCount("mlp", a.layers * mlp, "layers x 3 x hidden x intermediate"),
        ComponentCount("norms", (2 * a.layers + 1) * a.hidden_size, "(2 x layers + 1) x hidden"),
    ]
    if not a.tied_embeddings:
        rows.append(ComponentCount("lm_head", a.vocab_size * a.hidden_size, "vocab x hidden (untied)"))
    return rows


def measured_breakdown(model: torch.nn.Module) -> dict[str, int]:
    """The same components counted from a full-precision model's actual parameters (the check)."""
    counts = {"embeddings": 0, "attention": 0, "mlp": 0, "norms": 0, "lm_head": 0}
    for name, parameter in model.named_parameters():
        if "embed_tokens" in name:
            counts["embeddings"] += parameter.numel()
        elif ".self_attn." in name:
            counts["attention"] += parameter.numel()
        elif ".mlp." in name:
            counts["mlp"] += parameter.numel()
        elif "norm" in name:
            counts["norms"] += parameter.numel()
        elif "lm_head" in name:
            counts["lm_head"] += parameter.numel()
    return {key: value for key, value in counts.items() if value or key != "lm_head"}


# ---------------------------------------------------------------------------------------------
# Quality of one precision against another
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityReport:
    tokens: int
    kl_mean: float  # mean over positions of KL(reference || candidate), nats
    kl_max: float
    top1_agreement: float  # fraction of positions where both argmaxes agree
    perplexity: float  # the candidate's perplexity on the ids
    reference_perplexity: float


def eval_text_ids(tokenizer: Any) -> torch.Tensor:
    """The shipped evaluation paragraph as input ids [1, n] (233 tokens for SmolLM2)."""
    return tokenizer(EVAL_TEXT_PATH.read_text(encoding="utf-8"), return_tensors="pt")["input_ids"]


def perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """exp(mean negative log-likelihood) of ids[1:] under logits[:-1]. logits: [n, vocab], ids: [n]."""
    log_probs = torch.log_softmax(logits[:-1].double(), dim=-1)
    nll = -log_probs.gather(-1, ids[1:, None]).squeeze(-1)
    return float(torch.exp(nll.mean()))


def quality_vs_reference(reference_logits: torch.Tensor, candidate_logits: torch.Tensor,
                         ids: torch.Tensor) -> QualityReport:
    """Compare next-token distributions position by position. Both logits: [n, vocab]; ids: [n].

    KL(P_ref || P_cand) = sum_v P_ref(v) (log P_ref(v) - log P_cand(v)), in float64.
    """
    if reference_logits.shape != candidate_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(reference_logits.shape)} vs {tuple(candidate_logits.shape)}")
    ref_log = torch.log_softmax(reference_logits.double(), dim=-1)
    cand_log = torch.log_softmax(candidate_logits.double(), dim=-1)
    kl = (ref_log.exp() * (ref_log - cand_log)).sum(-1)  # [n]
    agreement = (reference_logits.argmax(-1) == candidate_logits.argmax(-1)).double().mean()
    return QualityReport(
        tokens=int(ids.numel()),
        kl_mean=float(kl.mean()),
        kl_max=float(kl.max()),
        top1_agreement=float(agreement),
        perplexity=perplexity(candidate_logits, ids),
        reference_perplexity=perplexity(reference_logits, ids),
    )


# ---------------------------------------------------------------------------------------------
# One weight matrix, quantized
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightQuantizationView:
    name: str
    shape: tuple[int, ...]
    original: torch.Tensor  # [numel] float32
    int8_dequantized: torch.Tensor  # [numel]
    int8_scale: float
    int8_mean_abs_error: float
    nf4_dequantized: torch.Tensor | None  # [numel]; None when bitsandbytes is unavailable
    nf4_codes: torch.Tensor | None  # [numel] code index 0..15
    nf4_levels: torch.Tensor | None  # [16] the NF4 code book (quantiles of N(0, 1), scaled to [-1, 1])
    nf4_mean_abs_error: float | None
    nf4_blocksize: int


def int8_per_tensor(weight: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Weight -> (dequantized int8 weight, scale) with the observer torch.ao's dynamic quantization
    uses for Linear weights (per-tensor symmetric qint8: scale = max|w| / 127.5)."""
    import warnings

    from torch.ao.quantization import default_weight_observer

    observer = default_weight_observer()
    observer(weight)
    scale, zero_point = observer.calculate_qparams()
    with warnings.catch_warnings():  # quantized tensor creation is marked deprecated; it still works
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(weight, float(scale), int(zero_point), torch.qint8)
    return quantized.dequantize(), float(scale)


def weight_quantization_view(name: str, weight: torch.Tensor, blocksize: int = 64) -> WeightQuantizationView:
    """A weight matrix [out, in] as fp32, int8 (per-tensor) and NF4 (per 64-value block absmax)."""
    weight = weight.detach().float().cpu()
    int8, scale = int8_per_tensor(weight)
    nf4 = codes = levels = None
    nf4_error = None
    try:
        import bitsandbytes.functional as bnb
    except Exception:  # bitsandbytes may fail to import on some platforms
        bnb = None
    if bnb is not None:
        packed, state = bnb.quantize_4bit(weight, quant_type="nf4", blocksize=blocksize)
        nf4 = bnb.dequantize_4bit(packed, state, quant_type="nf4").reshape(-1)
        # Two 4-bit codes per byte, high nibble first (bitsandbytes' packing order).
        flat = packed.reshape(-1)
        codes = torch.stack([flat >> 4, flat & 0x0F], dim=-1).reshape(-1)[: weight.numel()].long()
        levels = bnb.get_4bit_type("nf4", device="cpu").float().cpu()
        nf4_error = float((nf4 - weight.reshape(-1)).abs().mean())
    return WeightQuantizationView(
        name=name,
        shape=tuple(weight.shape),
        original=weight.reshape(-1),
        int8_dequantized=int8.reshape(-1),
        int8_scale=scale,
        int8_mean_abs_error=float((int8 - weight).abs().mean()),
        nf4_dequantized=nf4,
        nf4_codes=codes,
        nf4_levels=levels,
        nf4_mean_abs_error=nf4_error,
        nf4_blocksize=blocksize,
    )


# ---------------------------------------------------------------------------------------------
# Memory calculator
# ---------------------------------------------------------------------------------------------

BITS_PER_WEIGHT = {"fp32": 32.0, "fp16/bf16": 16.0, "int8": 8.0, "nf4": 4.5}  # nf4: 4 bits + block scales


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: float
    kv_cache_bytes: float
    total_bytes: float
    fits: bool | None  # None when no budget was given


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, context: int, batch: int = 1,
                   bytes_per_value: float = 2.0) -> float:
    """K and V for every layer, KV head and position: 2 x layers x kv_heads x head_dim x context x batch."""
    return 2.0 * layers * kv_heads * head_dim * context * batch * bytes_per_value


def memory_estimate(parameters: float, bits_per_weight: float, kv_bytes: float = 0.0,
                    budget_bytes: float | None = None, overhead: float = 1.1) -> MemoryEstimate:
    """Weights (parameters x bits / 8, plus ~10% for activations and runtime buffers) + KV cache."""
    if parameters <= 0 or bits_per_weight <= 0 or kv_bytes < 0:
        raise ValueError("parameters and bits per weight must be positive, the KV cache non-negative")
    weights = parameters * bits_per_weight / 8.0 * overhead
    total = weights + kv_bytes
    return MemoryEstimate(weights, kv_bytes, total, None if budget_bytes is None else total <= budget_bytes)


def human_bytes(count: float) -> str:
    if count <= 0:
        return "0 B"
    units = ["B", "KB", "MB", "GB", "TB"]
    power = min(int(math.log(count, 1024)), len(units) - 1)
    return f"{count / 1024 ** power:.1f} {units[power]}"


# Llama-3-style shapes (params, layers, KV heads, head dim) for the "does it fit" table.
REFERENCE_SHAPES: dict[str, tuple[float, int, int, int]] = {
    "1B": (1.24e9, 16, 8, 64),
    "8B": (8.03e9, 32, 8, 128),
    "70B": (70.6e9, 80, 8, 128),
}


def memory_fit_table(context: int, budget_gb: float, batch: int = 1,
                     extra: tuple[str, float, int, int, int] | None = None) -> list[dict[str, Any]]:
    """Estimated memory for reference model sizes (and optionally the loaded model) in each precision,
    with a 16-bit KV cache of `context` tokens x `batch`, against a GPU budget."""
    if context < 1 or batch < 1 or budget_gb <= 0:
        raise ValueError("context and batch must be >= 1 and the GPU memory > 0 GB")
    shapes = dict(REFERENCE_SHAPES)
    if extra is not None:
        shapes = {extra[0]: extra[1:], **shapes}
    rows = []
    for model, (parameters, layers, kv_heads, head_dim) in shapes.items():
        kv = kv_cache_bytes(layers, kv_heads, head_dim, context, batch, bytes_per_value=2.0)
        for precision, bits in BITS_PER_WEIGHT.items():
            estimate = memory_estimate(parameters, bits, kv, budget_gb * 1024**3)
            rows.append({"model": model, "precision": precision, "parameters": parameters,
                         "weights_gb": estimate.weights_bytes / 1024**3, "kv_gb": kv / 1024**3,
                         "total_gb": estimate.total_bytes / 1024**3, "fits": bool(estimate.fits)})
    return rows


# ---------------------------------------------------------------------------------------------
# Measuring one precision
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionRun:
    logits: torch.Tensor  # [n, vocab] float32: next-token logits at every position of the eval text
    time_to_first_token: float  # seconds: prefill of the prompt + first token
    decode_tokens_per_second: float  # tokens after the first / their time
    generated_tokens: int


def run_precision(model: Any, tokenizer: Any, eval_ids: torch.Tensor, prompt_ids: torch.Tensor,
                  new_tokens: int, lock: Any = None) -> PrecisionRun:
    """One forward over eval_ids [1, n] for quality, then a greedy decode of new_tokens for speed."""
    import contextlib
    import time

    from playground.generation import generate_tokens
    from playground.sampling_pipeline import SamplingSettings

    guard = lock if lock is not None else contextlib.nullcontext()
    device = next(model.parameters()).device
    with guard, torch.inference_mode():
        logits = model(eval_ids.to(device)).logits[0].float().cpu()
    started = time.perf_counter()
    first_at = decode_started = None
    count = 0
    for _ in generate_tokens(model, tokenizer, prompt_ids, SamplingSettings(temperature=0.0), new_tokens, lock=lock):
        count += 1
        if first_at is None:
            first_at = time.perf_counter() - started
            decode_started = time.perf_counter()
    decode_seconds = time.perf_counter() - decode_started if decode_started else 0.0
    rate = (count - 1) / decode_seconds if count > 1 and decode_seconds > 0 else 0.0
    return PrecisionRun(logits, first_at or 0.0, rate, count)


def reference_description(spec: Any, value: str, label: str) -> str:
    """What the lab's reference row (the first, highest precision checked) really is: `spec` a ModelSpec,
    `value` the precision choice, `label` its resolved label (fp32 / bf16 / ...). An embedded GGUF's full
    precision is its quantized blocks dequantized (SmolLM2-135M: Q4_1), not the published weights: int4
    re-encodes weights that were already 4-bit, so its KL against this reference flatters it."""
    if value != "none":
        return f"{value} (not full precision): the quality columns are against this copy"
    weights = getattr(spec, "weights_file", None) or ""
    if getattr(spec, "source", "") == "embedded" and weights.lower().endswith(".gguf"):
        kind = weights.rsplit(".", 2)[-2].split("-")[-1].upper()  # ...Q4_1.gguf / ...-q4_k_m.gguf
        return (f"{label} from the GGUF's {kind} weights (already 4-bit: int4 re-encodes them, so its KL "
                f"against this reference flatters it; the published bf16 weights are not shipped)")
    if getattr(spec, "source", "") == "local":
        return f"{label} of the weights in the local folder"
    return f"{label} of the weights as published (hub)"


def precision_rows(entries: Sequence[tuple[str, dict[str, Any], PrecisionRun]], eval_ids: torch.Tensor,
                   reference: str = "") -> list[dict[str, Any]]:
    """Table rows for (precision label, LoadedModel.status(), run); the first entry is the reference,
    `reference` says what it is (reference_description)."""
    if not entries:
        return []
    reference_logits = entries[0][2].logits
    ids = eval_ids.reshape(-1)
    rows = []
    for label, status, run in entries:
        quality = quality_vs_reference(reference_logits, run.logits, ids)
        rows.append({
            "precision": label, "detail": status["precision"], "memory_mb": status["memory_mb"],
            "load_seconds": status["load_seconds"], "decode_tokens_per_second": run.decode_tokens_per_second,
            "time_to_first_token_s": run.time_to_first_token, "kl_mean": quality.kl_mean, "kl_max": quality.kl_max,
            "top1_agreement": quality.top1_agreement, "perplexity": quality.perplexity, "tokens": quality.tokens,
            "reference": reference, "is_reference": not rows,
        })
    return rows

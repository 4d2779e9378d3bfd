"""Real attention weights: `run_attention(model, tokenizer, text)` does ONE eager forward with
`output_attentions=True` and keeps every layer's weights [heads, n, n] plus the input of each
attention block; `attention_view`, `attention_grid`, `head_pattern` and `query_row` slice that run
without another forward, and `RunCache` keeps the last few runs.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import torch

from playground.limits import shown
from playground.attention.errors import MAX_ANALYSED_TOKENS, AttentionInputError
from playground.attention.labels import is_punctuation, token_labels
from playground.attention.shape import AttentionShape
from playground.generation import encode_prompt

THUMBNAIL_CELLS = 48  # grid thumbnails are downsampled to at most this many cells per side


@dataclass(frozen=True)
class AttentionRun:
    """Everything one eager forward gave us. Views slice it; nothing here is recomputed."""

    model: Any  # the model that ran (its attention modules recompute Q and K for the score story)
    shape: AttentionShape
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    total_tokens: int  # before the cap
    weights: tuple[torch.Tensor, ...]  # per layer: [heads, n, n] float32, rows = queries
    attention_inputs: tuple[torch.Tensor, ...]  # per layer: the attention block's input [1, n, hidden]
    rotary: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: (cos, sin) [1, n, head_dim]
    additive_masks: tuple[torch.Tensor | None, ...]  # per layer: [n, n] 0 / very negative, or None (= causal)

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def note(self) -> str:
        if self.total_tokens > self.length:
            return (f"Your prompt has {self.total_tokens} tokens; the first {self.length} are analysed "
                    f"(attention has n² weights per head, so longer inputs are capped at {self.length}).")
        return ""


def _decoder_layers(model: Any) -> Any:
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise AttentionInputError(f"{type(model).__name__} has no model.layers: this view supports "
                                  "decoder-only models such as Llama, Qwen2 and Gemma.")
    return layers


@torch.no_grad()
def run_attention(model: Any, tokenizer: Any, text: str, max_tokens: int = MAX_ANALYSED_TOKENS,
                  chat: bool = False) -> AttentionRun:
    """One forward with output_attentions=True on the first `max_tokens` tokens of `text` (wrapped in the
    chat template when `chat`). The model must use eager attention (`LoadedModel.eager_attention()`):
    SDPA never builds the weight matrix."""
    if not text.strip():
        raise AttentionInputError("The prompt is empty: type some text to see its attention.")
    if model.config._attn_implementation != "eager":
        raise RuntimeError("run_attention needs eager attention: call it inside LoadedModel.eager_attention().")
    all_ids = encode_prompt(tokenizer, text, chat=chat)[0].tolist()
    ids, total = all_ids[:max_tokens], len(all_ids)
    layers = _decoder_layers(model)
    captured: list[dict[str, Any]] = [{} for _ in layers]

    def capture(index: int) -> Callable[..., None]:
        # A forward pre-hook sees the attention block's inputs: the normed hidden states, RoPE (cos, sin)
        # and the additive mask this layer uses (sliding-window layers get their own).
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            captured[index].update(hidden=kwargs.get("hidden_states", args[0] if args else None),
                                   rotary=kwargs["position_embeddings"], mask=kwargs.get("attention_mask"))
        return hook

    handles = [layer.self_attn.register_forward_pre_hook(capture(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        device = next(model.parameters()).device
        output = model(torch.tensor([ids], device=device), output_attentions=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    if not output.attentions or output.attentions[0] is None:
        raise RuntimeError("The model returned no attention weights (is attention eager?).")
    n = len(ids)

    def square_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
        return None if mask is None else mask.reshape(-1, n, mask.shape[-1])[0, :, -n:]  # [n, n]

    return AttentionRun(
        model=model,
        shape=AttentionShape.from_config(model.config),
        token_ids=tuple(ids),
        tokens=tuple(token_labels(tokenizer, ids)),
        total_tokens=total,
        weights=tuple(layer_weights[0].float().cpu() for layer_weights in output.attentions),
        attention_inputs=tuple(c["hidden"] for c in captured),
        rotary=tuple(c["rotary"] for c in captured),
        additive_masks=tuple(square_mask(c["mask"]) for c in captured),
    )


class RunCache:
    """The last few runs by (model, text, chat): moving the layer or head slider, or picking another
    query token, slices a cached run instead of running the model again. Thread-safe."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._runs: OrderedDict[tuple[int, str, bool], AttentionRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: Any, text: str, chat: bool) -> AttentionRun | None:
        with self._lock:
            run = self._runs.get((id(model), text, chat))
            if run is None or run.model is not model:  # an id can be reused by a later model
                return None
            self._runs.move_to_end((id(model), text, chat))
            return run

    def put(self, text: str, chat: bool, run: AttentionRun) -> None:
        with self._lock:
            self._runs[(id(run.model), text, chat)] = run
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)


def parse_layer(layer: int | float | str, shape: AttentionShape) -> int:
    try:
        index = int(float(layer))
    except (TypeError, ValueError):
        raise AttentionInputError(f"Layer must be a number 0..{shape.num_layers - 1}, got {shown(layer)}.") from None
    if not 0 <= index < shape.num_layers:
        raise AttentionInputError(f"Layer {index} is out of range: this model has {shape.num_layers} layers "
                                  f"(0..{shape.num_layers - 1}).")
    return index


def parse_head(head: int | float | str | None, shape: AttentionShape) -> int | None:
    """'mean' (or None) -> None (mean over heads); '3' / 3 -> 3, checked against the head count."""
    if head is None or str(head).strip().lower() in ("mean", "mean over heads", ""):
        return None
    try:
        index = int(float(str(head).lower().replace("head", "").strip()))
    except ValueError:
        raise AttentionInputError(f"Head must be 'mean' or a number 0..{shape.num_heads - 1}, got {shown(head)}.") from None
    if not 0 <= index < shape.num_heads:
        raise AttentionInputError(f"Head {index} is out of range: this model has {shape.num_heads} query heads "
                                  f"(0..{shape.num_heads - 1}).")
    return index


def head_name(head: int | None) -> str:
    return "mean over heads" if head is None else f"head {head}"


def layer_allowed(run: AttentionRun, layer: int) -> torch.Tensor:
    """The boolean mask [n, n] that `layer` used: from its additive mask (0 = allowed), causal if it had none."""
    mask = run.additive_masks[layer]
    if mask is None:
        return torch.ones(run.length, run.length, dtype=torch.bool).tril()
    return (mask if mask.dtype == torch.bool else mask == 0).cpu()


@dataclass(frozen=True)
class AttentionView:
    """The weights of one layer for one head (or the mean over heads) and their checks."""

    tokens: tuple[str, ...]
    layer: int
    head: int | None  # None: mean over heads
    kv_head: int | None
    weights: torch.Tensor  # [n, n] float32, rows = queries, columns = keys
    allowed: torch.Tensor  # [n, n] bool: the layer's mask
    max_row_sum_error: float  # max |Σ_k w[q, k] − 1|
    max_above_diagonal: float  # largest weight on a future key (0 for a causal model)


def attention_view(run: AttentionRun, layer: int, head: int | None) -> AttentionView:
    layer_weights = run.weights[layer]  # [heads, n, n]
    weights = layer_weights.mean(dim=0) if head is None else layer_weights[head]
    future = torch.triu(torch.ones_like(weights, dtype=torch.bool), diagonal=1)
    return AttentionView(
        tokens=run.tokens, layer=layer, head=head, kv_head=None if head is None else run.shape.kv_head_of(head),
        weights=weights, allowed=layer_allowed(run, layer),
        max_row_sum_error=float((weights.double().sum(dim=-1) - 1).abs().max()),
        max_above_diagonal=float(weights[future].max()) if future.any() else 0.0,
    )


@dataclass(frozen=True)
class AttentionRow:
    """What one query token attends to: keys 0..position (later keys are masked for a causal model)."""

    position: int
    token: str
    keys: tuple[str, ...]
    weights: tuple[float, ...]


def query_row(view: AttentionView, position: int | float) -> AttentionRow:
    n = len(view.tokens)
    index = int(position)
    if not 0 <= index < n:
        raise AttentionInputError(f"Query position {index} is out of range: the prompt has {n} tokens (0..{n - 1}).")
    return AttentionRow(index, view.tokens[index], view.tokens[: index + 1],
                        tuple(float(w) for w in view.weights[index, : index + 1]))


@dataclass(frozen=True)
class HeadPattern:
    """Summary numbers that reveal common head types. Means over queries 1..n-1 (query 0 sees only itself)."""

    layer: int
    head: int | None
    kv_head: int | None
    first_token: float  # weight on token 0: "attention sink"
    previous_token: float  # weight on the key just before the query: "previous-token head"
    same_token: float  # weight on the query's own position (the diagonal)
    punctuation: float  # total weight on punctuation keys after token 0 (token 0 is the sink's, even if it is "#")
    entropy_bits: float  # how spread out a row is (0 = one key only)

    @property
    def dominant(self) -> tuple[str, float]:
        """The pattern that takes at least half the weight, e.g. ("sink", 0.83); else ("spread", entropy)."""
        shares = {"sink": self.first_token, "previous token": self.previous_token, "self": self.same_token,
                  "punctuation": self.punctuation}
        name, value = max(shares.items(), key=lambda item: item[1])
        return (name, value) if value >= 0.5 else ("spread", self.entropy_bits)

    def as_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "head": "mean" if self.head is None else self.head, "kv_head": self.kv_head,
                "first_token": round(self.first_token, 6), "previous_token": round(self.previous_token, 6),
                "same_token": round(self.same_token, 6), "punctuation": round(self.punctuation, 6),
                "entropy_bits": round(self.entropy_bits, 6), "dominant": self.dominant[0]}


def head_pattern(view: AttentionView) -> HeadPattern:
    weights = view.weights.double()  # [n, n]
    punctuation_keys = torch.tensor([is_punctuation(token) for token in view.tokens], dtype=torch.bool)
    punctuation_keys[0] = False  # weight on token 0 is counted as a sink
    if weights.shape[0] < 2:  # a single token can only look at itself
        return HeadPattern(view.layer, view.head, view.kv_head, 1.0, 0.0, 1.0, 0.0, 0.0)
    rows = weights[1:]  # [n-1, n]: query 0 has no choice, so it says nothing about the head
    entropy = -(rows * torch.log2(rows.clamp_min(1e-30))).sum(dim=-1)  # [n-1], 0·log 0 = 0
    return HeadPattern(
        layer=view.layer, head=view.head, kv_head=view.kv_head,
        first_token=float(rows[:, 0].mean()),
        previous_token=float(torch.diagonal(weights, offset=-1).mean()),  # w[q, q-1] for q = 1..n-1
        same_token=float(torch.diagonal(weights)[1:].mean()),
        punctuation=float(rows[:, punctuation_keys].sum(dim=-1).mean()),
        entropy_bits=float(entropy.mean()),
    )


@dataclass(frozen=True)
class AttentionGrid:
    """Small multiples: every head of one layer, or one head (or the mean) across every layer."""

    mode: str  # "heads" | "layers"
    views: tuple[AttentionView, ...]
    thumbnails: tuple[torch.Tensor, ...]  # [m, m] each, block-max of the weights (m <= THUMBNAIL_CELLS)
    block: int  # tokens per thumbnail cell along each side
    patterns: tuple[HeadPattern, ...]
    kv_groups: tuple[tuple[int, ...], ...]


def downsample_max(weights: torch.Tensor, cells: int = THUMBNAIL_CELLS) -> tuple[torch.Tensor, int]:
    """Block max-pool [n, n] to at most [cells, cells]: a sharp diagonal or sink column stays visible."""
    n = weights.shape[-1]
    block = max(1, math.ceil(n / cells))
    if block == 1:
        return weights, 1
    pooled = torch.nn.functional.max_pool2d(weights[None, None], kernel_size=block, stride=block, ceil_mode=True)
    return pooled[0, 0], block


GRID_MODES = {"heads": "all heads of this layer", "layers": "this head across all layers"}


def attention_grid(run: AttentionRun, layer: int, head: int | None, mode: str) -> AttentionGrid:
    if mode == "heads":
        views = tuple(attention_view(run, layer, h) for h in range(run.shape.num_heads))
    elif mode == "layers":
        views = tuple(attention_view(run, index, head) for index in range(run.shape.num_layers))
    else:
        raise AttentionInputError(f"Grid mode must be one of {', '.join(GRID_MODES)}, got {shown(mode)}.")
    pooled = [downsample_max(view.weights) for view in views]
    return AttentionGrid(mode, views, tuple(p[0] for p in pooled), pooled[0][1],
                         tuple(head_pattern(view) for view in views), run.shape.kv_groups())

"""Switching parts of the model off: single attention heads, a layer's whole attention or its MLP.

A head h of layer l writes to the residual stream only through o_proj: its output o_h [n, d] is one slice of
o_proj's input [n, H·d], and o_proj(x) = Σ_h W_O[:, h·d:(h+1)·d] o_h. Replacing that slice (by 0, or by its
mean over the prompt's positions) removes the head and nothing else; with zero it equals deleting the head's
columns of W_O (the tests check both ways). A layer's attention or MLP is switched off at its output, the
tensor added to the residual stream.

Hooks change a model every visitor shares, so they are installed, used and removed while holding its lock.

    >>> smollm2 = AttentionShape(num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64)
    >>> [part.name for part in parse_parts("3.4, 0.*", (), [29], smollm2, 300)][-3:]
    ['L0H8', 'L3H4', 'MLP of layer 29']
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from playground.attention import AttentionShape, token_labels
from playground.generation import generate_text
from playground.inside.prompt import EncodedPrompt, InsideInputError, decoder, model_shape, stop_if_asked
from playground.limits import shown

MODES = {"zero": "set to zero", "mean": "replaced by its mean over the prompt"}
KINDS = ("head", "attention", "mlp")
TOP_N = 10  # tokens compared side by side
HEAD_ITEM = re.compile(r"^(?:l(?:ayer)?\s*)?(\d+)\s*[.:/h]\s*(\d+|\*)$")  # "3.4", "L3H4", "3:*"


@dataclass(frozen=True)
class Part:
    kind: str  # head | attention | mlp
    layer: int
    head: int | None = None

    @property
    def name(self) -> str:
        return {"head": f"L{self.layer}H{self.head}", "attention": f"attention of layer {self.layer}",
                "mlp": f"MLP of layer {self.layer}"}[self.kind]


def parse_parts(heads: str, attention_layers: Sequence[Any], mlp_layers: Sequence[Any], shape: AttentionShape,
                limit: int) -> tuple[Part, ...]:
    """'3.4, 10.*' (layer.head, * = every head of the layer) and layer lists -> sorted unique parts."""
    items = [item.strip().lower() for item in re.split(r"[,;\s]+", heads or "") if item.strip()]
    if len(items) + len(attention_layers or ()) + len(mlp_layers or ()) > limit:
        raise InsideInputError(f"That is {len(items) + len(attention_layers or ()) + len(mlp_layers or ()):,} parts; "
                               f"this server switches off at most {limit} at once.")
    parts: set[Part] = set()
    for item in items:
        match = HEAD_ITEM.match(item)
        if match is None:
            raise InsideInputError(f"Cannot read the head {shown(item, 30)}: write layer.head, e.g. 3.4 (head 4 of "
                                   "layer 3), or 3.* for every head of layer 3.")
        layer = _layer(match.group(1), shape)
        heads_of_layer = range(shape.num_heads) if match.group(2) == "*" else [_head(match.group(2), layer, shape)]
        parts.update(Part("head", layer, h) for h in heads_of_layer)
    parts.update(Part("attention", _layer(value, shape)) for value in attention_layers or ())
    parts.update(Part("mlp", _layer(value, shape)) for value in mlp_layers or ())
    if len(parts) > limit:
        raise InsideInputError(f"That is {len(parts):,} parts; this server switches off at most {limit} at once.")
    return tuple(sorted(parts, key=lambda part: (KINDS.index(part.kind), part.layer, part.head or 0)))


def _layer(value: Any, shape: AttentionShape) -> int:
    try:
        layer = int(str(value).lower().replace("layer", "").strip())
    except ValueError:
        raise InsideInputError(f"Layer must be a number 0..{shape.num_layers - 1}, got {shown(value, 30)}.") from None
    if not 0 <= layer < shape.num_layers:
        raise InsideInputError(f"Layer {layer} is out of range: this model has {shape.num_layers} layers "
                               f"(0..{shape.num_layers - 1}).")
    return layer


def _head(value: str, layer: int, shape: AttentionShape) -> int:
    head = int(value)
    if not 0 <= head < shape.num_heads:
        raise InsideInputError(f"Head {head} of layer {layer} is out of range: this model has {shape.num_heads} "
                               f"query heads per layer (0..{shape.num_heads - 1}).")
    return head


# ---------------------------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------------------------


class SwitchOff:
    """Replaces the chosen channels of an activation x [batch, n, channels]: by 0, or by their mean over the
    prompt's positions. `off` [batch or 1, channels] bool says which channels, row by row (a batch may switch
    a different head off in every row). The mean is taken on the first call (the prompt) and kept, so a
    generation's later steps (one new position each) get the prompt's mean too."""

    def __init__(self, off: torch.Tensor, mode: str) -> None:
        if mode not in MODES:
            raise InsideInputError(f"Mode must be one of {', '.join(MODES)}, got {shown(mode, 20)}.")
        self.off, self.mode = off, mode
        self.mean: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        off = self.off[:, None, :].to(x.device)  # [batch or 1, 1, channels]
        if self.mode == "zero":
            return x.masked_fill(off, 0.0)
        if self.mean is None:
            self.mean = x.mean(dim=1, keepdim=True)  # [batch, 1, channels]
        return torch.where(off, self.mean.to(x.dtype), x)


def head_channels(heads_off: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[batch, heads] bool -> [batch, heads·head_dim]: the o_proj input columns of those heads."""
    return heads_off.repeat_interleave(head_dim, dim=-1)


@contextlib.contextmanager
def switched_off(model: Any, parts: Sequence[Part], mode: str, heads_off: dict[int, torch.Tensor] | None = None
                 ) -> Iterator[None]:
    """Hooks that switch `parts` off while the block runs (and batched per-row head masks `heads_off`: layer ->
    [batch, heads] bool). Hold the model's lock around it."""
    shape = model_shape(model)
    layers = decoder(model).layers
    masks = {layer: mask.clone() for layer, mask in (heads_off or {}).items()}
    for part in parts:
        if part.kind == "head":
            mask = masks.setdefault(part.layer, torch.zeros(1, shape.num_heads, dtype=torch.bool))
            mask[:, part.head] = True
    handles = []
    try:
        for layer, mask in masks.items():
            switch = SwitchOff(head_channels(mask, shape.head_dim), mode)
            handles.append(layers[layer].self_attn.o_proj.register_forward_pre_hook(
                lambda module, args, switch=switch: (switch(args[0]), *args[1:])))
        for part in parts:
            if part.kind in ("attention", "mlp"):
                module = layers[part.layer].self_attn if part.kind == "attention" else layers[part.layer].mlp
                switch = SwitchOff(torch.ones(1, model.config.hidden_size, dtype=torch.bool), mode)
                handles.append(module.register_forward_hook(_output_hook(switch)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _output_hook(switch: SwitchOff) -> Callable[..., Any]:
    def hook(module: Any, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):  # attention returns (output, weights)
            return (switch(output[0]), *output[1:])
        return switch(output)
    return hook


# ---------------------------------------------------------------------------------------------
# Before / after
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationResult:
    prompt: EncodedPrompt
    parts: tuple[Part, ...]
    mode: str
    before: np.ndarray  # next-token probabilities [vocab], float64
    after: np.ndarray
    kl: float  # KL(before || after), nats
    top_before: tuple[tuple[int, str, float, float], ...]  # (id, token, p before, p after), TOP_N by p before
    top_after: tuple[tuple[int, str, float, float], ...]  # TOP_N by p after
    continuation_before: str
    continuation_after: str
    new_tokens: int

    @property
    def top1_changed(self) -> bool:
        return self.top_before[0][0] != self.top_after[0][0]


def next_token_probs(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """p(next token) after each row of ids [batch, n] -> [batch, vocab] float64."""
    with torch.inference_mode():
        logits = model(ids, use_cache=False, logits_to_keep=1).logits[:, -1]
    return logits.double().softmax(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last axis, in nats (terms with p = 0 are 0)."""
    return torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p)).sum(-1).clamp(min=0)


def ablate(model: Any, tokenizer: Any, prompt: EncodedPrompt, parts: Sequence[Part], mode: str, new_tokens: int,
           eos_token_ids: Sequence[int] = (), lock: Any = None) -> AblationResult:
    """The next-token distribution and a greedy continuation, with everything on and with `parts` off."""
    if not parts:
        raise InsideInputError("Pick what to switch off: heads (e.g. 3.4), a layer's attention or a layer's MLP.")
    guard = lock if lock is not None else contextlib.nullcontext()
    with guard:
        before = next_token_probs(model, prompt.ids)[0]
        plain = generate_text(model, tokenizer, prompt.ids, max_new_tokens=new_tokens, eos_token_ids=eos_token_ids)
        with switched_off(model, parts, mode):
            after = next_token_probs(model, prompt.ids)[0]
        with switched_off(model, parts, mode):  # fresh hooks: the prompt's mean is taken again by the prefill
            ablated = generate_text(model, tokenizer, prompt.ids, max_new_tokens=new_tokens,
                                    eos_token_ids=eos_token_ids)
    return AblationResult(prompt, tuple(parts), mode, before.numpy(), after.numpy(),
                          float(kl_divergence(before, after)), _top(tokenizer, before, after),
                          _top(tokenizer, after, before, swap=True), plain.text, ablated.text, new_tokens)


def _top(tokenizer: Any, by: torch.Tensor, other: torch.Tensor, swap: bool = False
         ) -> tuple[tuple[int, str, float, float], ...]:
    ids = by.topk(TOP_N).indices.tolist()
    labels = token_labels(tokenizer, ids)
    return tuple((i, label, float(other[i] if swap else by[i]), float(by[i] if swap else other[i]))
                 for i, label in zip(ids, labels))


def ablation_json(result: AblationResult) -> dict[str, Any]:
    def rows(top: tuple[tuple[int, str, float, float], ...]) -> list[dict[str, Any]]:
        return [{"id": i, "token": t, "p_before": round(b, 8), "p_after": round(a, 8)} for i, t, b, a in top]

    return {"tokens": list(result.prompt.tokens), "token_ids": result.prompt.ids[0].tolist(),
            "note": result.prompt.note, "mode": result.mode,
            "parts": [{"kind": p.kind, "layer": p.layer, "head": p.head, "name": p.name} for p in result.parts],
            "kl_before_after": round(result.kl, 8), "top1_changed": result.top1_changed,
            "top_before": rows(result.top_before), "top_after": rows(result.top_after),
            "continuation_before": result.continuation_before, "continuation_after": result.continuation_after,
            "new_tokens": result.new_tokens}


# ---------------------------------------------------------------------------------------------
# Head importance: every head alone, batched
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadImportance:
    prompt: EncodedPrompt
    shape: AttentionShape
    mode: str
    kl: np.ndarray  # [layers, heads]: KL(p || p with that head off), nats
    top1_changed: np.ndarray  # [layers, heads] bool
    top_id: int  # the model's next token with everything on
    forwards: int  # batched forwards run (one per layer)


@contextlib.contextmanager
def layers_from(model: Any, start: int) -> Iterator[None]:
    """The model with its first `start` decoder layers removed, so `inputs_embeds` = the residual stream
    entering layer `start` runs the rest of the model (positions and the causal mask are rebuilt the same way
    from the sequence length). Hold the model's lock."""
    stack = decoder(model)
    all_layers = stack.layers
    stack.layers = all_layers[start:]
    try:
        yield
    finally:
        stack.layers = all_layers


def scales_embeddings(model: Any) -> bool:
    """Gemma multiplies inputs_embeds by √hidden inside the model, so a residual stream cannot be fed back in
    through inputs_embeds: such models run every copy from the first layer."""
    return "gemma" in str(getattr(model.config, "model_type", ""))


def head_importance(model: Any, prompt: EncodedPrompt, mode: str, lock: Any = None,
                    progress: Callable[[int, int], None] | None = None, cancel: Any = None) -> HeadImportance:
    """KL of the next token for every head switched off alone. For layer l, one batched forward of H copies of
    the prompt, copy h with head h off (a per-row mask on o_proj's input), started from the clean residual
    stream entering layer l: layers before l are untouched by the ablation, so they are not run again.
    30 layers x 9 heads = 270 ablations in 30 forwards that cost 9·(30-l) layer passes each. A set `cancel`
    (threading.Event) ends it before the next layer (InsideCancelled)."""
    shape = model_shape(model)
    guard = lock if lock is not None else contextlib.nullcontext()
    with guard, torch.inference_mode():
        clean = model(prompt.ids, output_hidden_states=True, use_cache=False, logits_to_keep=1)
    p = clean.logits[0, -1].double().softmax(-1)  # [vocab]
    restart = not scales_embeddings(model)
    kl = np.zeros((shape.num_layers, shape.num_heads))
    changed = np.zeros((shape.num_layers, shape.num_heads), dtype=bool)
    eye = torch.eye(shape.num_heads, dtype=torch.bool)  # row h: head h off
    for layer in range(shape.num_layers):
        stop_if_asked(cancel, layer, shape.num_layers, "layers")
        start = layer if restart else 0
        # the hooks index the (shortened) layer list, so layer l sits at l - start in it
        with guard, torch.inference_mode(), layers_from(model, start), \
                switched_off(model, (), mode, {layer - start: eye}):
            if restart:  # the residual stream entering layer l, one copy per head: [H, n, hidden]
                logits = model(inputs_embeds=clean.hidden_states[layer].expand(shape.num_heads, -1, -1),
                               use_cache=False, logits_to_keep=1).logits[:, -1]
            else:
                logits = model(prompt.ids.expand(shape.num_heads, -1), use_cache=False, logits_to_keep=1).logits[:, -1]
        q = logits.double().softmax(-1)  # [H, vocab]
        kl[layer] = kl_divergence(p[None, :], q).numpy()
        changed[layer] = (q.argmax(-1) != p.argmax()).numpy()
        if progress is not None:
            progress(layer + 1, shape.num_layers)
    return HeadImportance(prompt, shape, mode, kl, changed, int(p.argmax()), shape.num_layers)


def importance_json(result: HeadImportance) -> dict[str, Any]:
    return {"tokens": list(result.prompt.tokens), "token_ids": result.prompt.ids[0].tolist(),
            "note": result.prompt.note, "mode": result.mode, "shape": result.shape.as_json(),
            "kl": np.round(result.kl, 8).tolist(), "top1_changed": result.top1_changed.tolist(),
            "top_id": result.top_id, "batched_forwards": result.forwards}

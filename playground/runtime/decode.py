"""The decoding step: one forward of a few new tokens after a KV cache, the call every generating tab makes.

`decode_forward` is what the generation loop and the speculative race call for each step. For most models it
is the model's own forward (transformers'), inside `decoding()` so the decode head takes its int8 pass. For the
CPU default (Llama-family decoder matrices in int4, runtime/int4.py) it is a lean pass over the same modules and
weights, because a step of a 135M model on a CPU is mostly per-operation overhead, not arithmetic: each int4 call
costs far more than its bytes (one token: 576 -> 192 rows 23 µs, 576 -> 960 rows 37 µs), so q/k/v run as one
[960 x 576] call and gate/up as one [3072 x 576] call (`fuse_decoder` stacks them at load time, int4.stacked; the
separate q_proj, k_proj, v_proj, gate_proj and up_proj modules stay, their codes views into the stacked ones, so
the LoRA targets, the quantization tab's matrix picker and every analysis see the model as before), the rotary embedding
is applied to queries and keys in one go, and transformers' per-call bookkeeping (output recorders, mask
building, kwargs plumbing) is skipped. Every operation that changes a number is the one transformers runs, in the
same order (the model's own norm modules, transformers' rotate_half, SDPA), so the logits are equal, not close: tests check them
bit for bit against the model's own forward, and greedy output against `generate`.

The KV cache a decoding step grows (`new_cache`) writes each step's keys and values into a buffer with room to
spare instead of concatenating: transformers' DynamicCache copies every layer's whole cache at every step, which
after a 630-token RAG prompt made decoding 1.09-1.21x slower (benchmarks.engine). It holds the same values, so the
logits stay the same bits (tested).

The lean pass runs only while the model is as `fuse_decoder` left it: the same modules in every layer, none of
them hooked (an analysis's ablation or capture hooks make a forward the model's own), SDPA attention, eval mode.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.models.llama.modeling_llama import rotate_half

from playground.runtime.head import decoding
from playground.runtime.int4 import Int4Linear, stacked


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values [batch, kv_heads, length, head_dim] are a prefix view of a buffer with
    room to spare (INITIAL_ROOM positions past a prompt, doubled when full): a step writes its new rows in place
    instead of copying the whole cache into a new tensor. Crop keeps working (it slices the view, and the next
    step writes over the dropped rows); a cache whose tensors were replaced (a batch reorder) is copied into a
    fresh buffer first.

    >>> layer, rows = GrowingLayer(), torch.arange(6.0).reshape(1, 1, 3, 2)
    >>> keys, _ = layer.update(rows, rows)
    >>> layer.crop(-1); keys, _ = layer.update(rows[..., :1, :], rows[..., :1, :])
    >>> keys[0, 0].tolist(), layer.buffer_keys.shape[-2]
    ([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0]], 259)
    """

    INITIAL_ROOM = 256
    buffer_keys: torch.Tensor | None = None
    buffer_values: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.buffer_keys = self.buffer_values = None

    def _views_the_buffer(self) -> bool:
        return (self.buffer_keys is not None and self.keys.data_ptr() == self.buffer_keys.data_ptr()
                and self.values.data_ptr() == self.buffer_values.data_ptr())

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        grown = length + key_states.shape[-2]
        kept = length == 0 or self._views_the_buffer()
        if not kept or self.buffer_keys is None or grown > self.buffer_keys.shape[-2]:
            room = max(grown + self.INITIAL_ROOM, 2 * length)  # a prompt gets room for its first steps
            shape = (*key_states.shape[:-2], room, key_states.shape[-1])
            buffer_keys, buffer_values = key_states.new_empty(shape), value_states.new_empty(shape)
            if length:
                buffer_keys[..., :length, :] = self.keys
                buffer_values[..., :length, :] = self.values
            self.buffer_keys, self.buffer_values = buffer_keys, buffer_values
        self.buffer_keys[..., length:grown, :] = key_states
        self.buffer_values[..., length:grown, :] = value_states
        self.keys, self.values = self.buffer_keys[..., :grown, :], self.buffer_values[..., :grown, :]
        return self.keys, self.values


def new_cache(model: Any) -> DynamicCache:
    """The KV cache for a generation or a speculative session: transformers' DynamicCache for `model.config`
    with its plain layers growing in place (GrowingLayer); other layers (a sliding window) are kept as they are."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@dataclass(frozen=True)
class _FusedLayer:
    """One decoder layer's fused int4 matrices, and the modules they were built from (to notice a swap)."""

    qkv: Int4Linear  # q, k, v rows stacked: [hidden] -> [q + k + v]
    gate_up: Int4Linear  # gate, up rows stacked: [hidden] -> [2 x intermediate]
    modules: tuple[torch.nn.Module, ...]  # `_members(layer)` as fused

    def intact(self, layer: torch.nn.Module) -> bool:
        """The layer still holds the modules it was fused from, and none has a forward hook of ours."""
        return all(now is then and not _hooked(now) for now, then in zip(_members(layer), self.modules))


# transformers installs its output recorders as permanent forward hooks on every layer the first time a forward asks
# for hidden states (the logit lens does); they record only inside such a forward, which a decoding step never is
_TRANSFORMERS_RECORDERS = "transformers.utils.output_capturing"


def _hooked(module: torch.nn.Module) -> bool:
    """Whether a hook would change or read this module's forward (an ablation, a capture): any pre-hook, or a
    forward hook other than transformers' idle output recorders."""
    return bool(module._forward_pre_hooks) or any(
        getattr(hook, "__module__", None) != _TRANSFORMERS_RECORDERS for hook in module._forward_hooks.values())


def _members(layer: torch.nn.Module) -> tuple[torch.nn.Module, ...]:
    """Every module the lean pass runs in a decoder layer (read attribute by attribute: `modules()` walks the tree
    with a memo set, ~10 µs a layer)."""
    attention, mlp = layer.self_attn, layer.mlp
    return (layer, attention, mlp, attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj,
            mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn, layer.input_layernorm, layer.post_attention_layernorm)


# model -> {decoder layer -> its fused matrices}; weak, so a freed model takes its entry with it. Not a submodule:
# the fused codes would otherwise be counted twice by every parameter and memory breakdown.
_FUSED: "weakref.WeakKeyDictionary[torch.nn.Module, dict[torch.nn.Module, _FusedLayer]]" = weakref.WeakKeyDictionary()

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def fuse_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """Let `decode_forward` take the lean pass on this model: for a Llama-family decoder whose seven matrices per
    layer are all Int4Linear, store q/k/v and gate/up as one int4 matrix each (in place; shared codes). Any other
    model is returned as it is, and decodes through its own forward."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if getattr(model.config, "model_type", None) != "llama" or layers is None:
        return model
    fused = {}
    for layer in layers:
        attention, mlp = layer.self_attn, layer.mlp
        if not all(isinstance(getattr(attention, n, None), Int4Linear) for n in _PROJECTIONS) or not all(
                isinstance(getattr(mlp, n, None), Int4Linear) for n in _MLP):
            return model
        fused[layer] = _FusedLayer(stacked([attention.q_proj, attention.k_proj, attention.v_proj]),
                                   stacked([mlp.gate_proj, mlp.up_proj]), _members(layer))
    _FUSED[model] = fused
    return model


def fused_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """The stacked matrices' tensors `fuse_decoder` holds for `model` (for its memory footprint)."""
    return [tensor for layer in _FUSED.get(model, {}).values() for stack in (layer.qkv, layer.gate_up)
            for tensor in stack.buffers()]


def _lean_layers(model: Any) -> dict[torch.nn.Module, _FusedLayer] | None:
    """The fused layers when the lean pass computes exactly what the model's own forward would, else None."""
    fused = _FUSED.get(model)
    if fused is None or model.training or model.config._attn_implementation != "sdpa":
        return None
    inner = model.model
    if any(_hooked(m) for m in (model, inner, inner.embed_tokens, inner.norm, inner.rotary_emb, model.lm_head)):
        return None
    if all(layer in fused and fused[layer].intact(layer) for layer in inner.layers):
        return fused  # inner.layers may be a subset (a layer-skipping draft): each layer keeps its cache slot
    return None


def _lean_forward(model: Any, fused: dict[torch.nn.Module, _FusedLayer], input_ids: torch.Tensor, cache: Any,
                  keep: int) -> torch.Tensor:
    """input_ids [1, n] after the cache's tokens -> logits of the last `keep` [1, keep, vocab]; the cache grows."""
    inner, config = model.model, model.config
    n, past = input_ids.shape[1], cache.get_seq_length()
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    hidden = inner.embed_tokens(input_ids)  # [1, n, hidden]
    positions = torch.arange(past, past + n, device=input_ids.device).unsqueeze(0)  # [1, n]
    cos, sin = (t.unsqueeze(1) for t in inner.rotary_emb(hidden, positions))  # [1, 1, n, head_dim] each
    # One new token attends to everything cached; several (a speculative check) to the cache and causally
    # among themselves: row i sees columns 0..past+i. A prompt with no cache uses SDPA's own causal flag.
    mask = None if n == 1 or past == 0 else torch.ones(n, past + n, dtype=torch.bool, device=input_ids.device).tril(past)
    for layer in inner.layers:
        attention, mlp, weights = layer.self_attn, layer.mlp, fused[layer]
        x = layer.input_layernorm(hidden).view(n, -1)  # [n, hidden]
        qkv = weights.qkv(x).view(1, n, heads + 2 * kv_heads, head_dim).transpose(1, 2)
        rotated = qkv[:, :heads + kv_heads]  # queries and keys [1, heads + kv_heads, n, head_dim]: one rotation
        rotated = rotated * cos + rotate_half(rotated) * sin
        keys, values = cache.update(rotated[:, heads:], qkv[:, heads + kv_heads:], attention.layer_idx)
        out = F.scaled_dot_product_attention(rotated[:, :heads], keys, values, attn_mask=mask,
                                             is_causal=mask is None and n > 1, scale=attention.scaling,
                                             enable_gqa=True)  # [1, heads, n, head_dim]
        hidden = hidden + attention.o_proj(out.transpose(1, 2).reshape(1, n, -1))
        x = layer.post_attention_layernorm(hidden).view(n, -1)
        gate, up = weights.gate_up(x).split(config.intermediate_size, dim=-1)
        hidden = hidden + mlp.down_proj(mlp.act_fn(gate) * up).view(1, n, -1)
    return model.lm_head(inner.norm(hidden[:, -keep:]))


def decode_forward(model: Any, input_ids: torch.Tensor, cache: Any = None, keep: int = 1) -> tuple[torch.Tensor, Any]:
    """Run `input_ids` [1, n] after the tokens in `cache` (a transformers Cache, or None to start a `new_cache`)
    as a decoding step -> (logits of the last `keep` positions [1, keep, vocab], the cache). The caller holds the
    model's lock and inference mode."""
    cache = new_cache(model) if cache is None else cache
    with decoding():
        fused = _lean_layers(model)
        if fused is None:
            output = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=keep)
            return output.logits, output.past_key_values
        return _lean_forward(model, fused, input_ids, cache, keep), cache

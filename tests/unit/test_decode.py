"""The decoding step (runtime/decode.py): on the int4 default the lean pass computes exactly what the model's own
forward computes (logits and cache, bit for bit) for a prompt, one new token and a speculative check of several;
its fused matrices share the separate ones' codes; and any change that the lean pass would not honour (a hook, a
swapped module, another attention implementation, a model it never fused) sends the step to the model's own
forward."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache

from playground.runtime import decode
from playground.runtime.decode import decode_forward, fuse_decoder
from playground.runtime.head import decoding
from playground.runtime.int4 import int4_available, quantize_int4_weights
from playground.runtime.precision import requantize, resolve_precision

pytestmark = pytest.mark.skipif(not int4_available(), reason="this torch build has no CPU int4 kernel")

PROMPT = [5, 17, 42, 8, 99, 23, 61]


@pytest.fixture
def int4_model(tiny_model):
    """The tiny Llama as the CPU default converts it: int4 matrices, fused, the decode head."""
    return requantize(copy.deepcopy(tiny_model), resolve_precision("int4", "cpu"))


def own_forward(model, ids: list[int], cache, keep: int) -> torch.Tensor:
    """The model's own (transformers') forward as a decoding step: [1, keep, vocab]."""
    with torch.inference_mode(), decoding():
        return model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True, logits_to_keep=keep).logits


def lean(model, ids: list[int], cache, keep: int) -> torch.Tensor:
    with torch.inference_mode():
        logits, _ = decode_forward(model, torch.tensor([ids]), cache, keep)
    return logits


def caches_equal(first: DynamicCache, second: DynamicCache) -> bool:
    return all(torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
               for a, b in zip(first.layers, second.layers, strict=True))


def test_the_int4_default_takes_the_lean_pass(int4_model, tiny_model):
    assert decode._lean_layers(int4_model) is not None
    assert decode._lean_layers(tiny_model) is None  # fp32: never fused, its own forward


@pytest.mark.parametrize("steps", [[PROMPT], [PROMPT, [7]], [PROMPT, [7], [3, 12, 30]], [PROMPT[:1], [9, 2]]],
                         ids=["a prompt", "then one token", "then a speculative check of 3", "one token, then 2"])
def test_the_lean_pass_equals_the_models_own_forward_bit_for_bit(int4_model, steps):
    ours, theirs = DynamicCache(config=int4_model.config), DynamicCache(config=int4_model.config)
    for ids in steps:
        keep = len(ids) if len(steps) > 1 and ids is steps[-1] else 1
        expected = own_forward(int4_model, ids, theirs, keep)
        got = lean(int4_model, ids, ours, keep)
        assert got.shape == expected.shape and torch.equal(got, expected)
    assert caches_equal(ours, theirs)


def test_the_lean_pass_is_taken_and_starts_its_own_cache(int4_model, monkeypatch):
    calls = []
    lean_forward = decode._lean_forward
    monkeypatch.setattr(decode, "_lean_forward", lambda *args: calls.append(1) or lean_forward(*args))
    with torch.inference_mode():
        logits, cache = decode_forward(int4_model, torch.tensor([PROMPT]))
    assert calls == [1] and cache.get_seq_length() == len(PROMPT) and logits.shape[:2] == (1, 1)


def test_the_fused_matrices_compute_the_separate_ones_side_by_side(int4_model):
    layer = int4_model.model.layers[0]
    fused = decode._FUSED[int4_model][layer]
    attention, mlp = layer.self_attn, layer.mlp
    x = torch.randn(3, int4_model.config.hidden_size)
    assert torch.equal(fused.qkv(x), torch.cat([attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)], -1))
    assert torch.equal(fused.gate_up(x), torch.cat([mlp.gate_proj(x), mlp.up_proj(x)], -1))


def test_the_separate_matrices_compute_as_before_fusing(tiny_model):
    unfused = quantize_int4_weights(copy.deepcopy(tiny_model))
    fused = fuse_decoder(copy.deepcopy(unfused))
    x = torch.randn(3, tiny_model.config.hidden_size)
    for before, after in zip(unfused.model.layers, fused.model.layers):
        for name in ("q_proj", "k_proj", "v_proj"):
            assert torch.equal(getattr(before.self_attn, name)(x), getattr(after.self_attn, name)(x))
        for name in ("gate_proj", "up_proj"):
            assert torch.equal(getattr(before.mlp, name)(x), getattr(after.mlp, name)(x))


def ablate_first_head(module, args):
    """An ablation as the Inside tab installs it: o_proj's input with head 0 zeroed."""
    heads = args[0].clone()
    heads[..., :8] = 0
    return (heads,)


def test_a_hook_sends_the_step_to_the_models_own_forward_so_the_hook_acts(int4_model):
    clean = lean(int4_model, PROMPT, None, 1)
    handle = int4_model.model.layers[0].self_attn.o_proj.register_forward_pre_hook(ablate_first_head)
    try:
        assert decode._lean_layers(int4_model) is None
        hooked = lean(int4_model, PROMPT, None, 1)
    finally:
        handle.remove()
    assert not torch.equal(hooked, clean)
    assert decode._lean_layers(int4_model) is not None and torch.equal(lean(int4_model, PROMPT, None, 1), clean)


def test_a_swapped_module_or_another_attention_sends_the_step_to_the_models_own_forward(int4_model):
    attention = int4_model.model.layers[1].self_attn
    original = attention.v_proj
    attention.v_proj = copy.deepcopy(original)  # what a LoRA wrapper does: another module in the same place
    assert decode._lean_layers(int4_model) is None
    attention.v_proj = original
    int4_model.config._attn_implementation = "eager"
    try:
        assert decode._lean_layers(int4_model) is None
    finally:
        int4_model.config._attn_implementation = "sdpa"
    assert decode._lean_layers(int4_model) is not None


def test_a_layer_skipping_draft_takes_the_lean_pass_with_each_layer_in_its_own_cache_slot(tiny_model, tiny_tokenizer):
    from playground.drafts import CachedModel

    model = requantize(copy.deepcopy(tiny_model), resolve_precision("int4", "cpu"))
    session = CachedModel(model, skip_layers=[0])
    got = session.feed(PROMPT, keep=2)
    reference = CachedModel(copy.deepcopy(model), skip_layers=[0])  # a copy is never fused: its own forward
    assert decode._lean_layers(reference.model) is None
    assert torch.equal(got, reference.feed(PROMPT, keep=2))
    assert torch.equal(session.feed([4, 4]), reference.feed([4, 4]))


def test_the_memory_footprint_counts_the_stacked_matrices_once(tiny_model):
    from playground.runtime.loading import memory_footprint_bytes

    unfused = quantize_int4_weights(copy.deepcopy(tiny_model))
    fused = fuse_decoder(copy.deepcopy(unfused))
    stacks = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in decode.fused_tensors(fused)}
    parts = [getattr(layer.self_attn, n) for layer in fused.model.layers for n in ("q_proj", "k_proj", "v_proj")] + [
        getattr(layer.mlp, n) for layer in fused.model.layers for n in ("gate_proj", "up_proj")]
    # a part whose rows fill the kernel's blocks gave up its own codes for a view into the stack
    replaced = sum(p.packed.nbytes for p in parts if p.packed.untyped_storage().data_ptr() in stacks)
    assert sum(stacks.values()) > 0
    assert memory_footprint_bytes(fused) == memory_footprint_bytes(unfused) + sum(stacks.values()) - replaced


def feed_steps(model, cache, steps, crop_after: int | None = None) -> list[torch.Tensor]:
    """Logits of each step through decode_forward; after step `crop_after`, the cache drops its last 2 tokens
    (a speculative rollback)."""
    out = []
    with torch.inference_mode():
        for index, ids in enumerate(steps):
            logits, cache = decode_forward(model, torch.tensor([ids]), cache, keep=len(ids))
            out.append(logits)
            if index == crop_after:
                cache.crop(-2)
    return out


@pytest.mark.parametrize("lean_pass", [True, False], ids=["the lean pass", "the model's own forward"])
def test_the_growing_cache_gives_the_same_bits_as_transformers_dynamic_cache(int4_model, tiny_model, lean_pass,
                                                                               monkeypatch):
    monkeypatch.setattr(decode.GrowingLayer, "INITIAL_ROOM", 4)  # so the steps below outgrow the buffer twice
    model = int4_model if lean_pass else tiny_model
    steps = [PROMPT, [7], [3, 12, 30], [9], [1, 2], [4]]
    growing, plain = decode.new_cache(model), DynamicCache(config=model.config)
    assert all(isinstance(layer, decode.GrowingLayer) for layer in growing.layers)
    for got, expected in zip(feed_steps(model, growing, steps, crop_after=2), feed_steps(model, plain, steps, 2),
                             strict=True):
        assert torch.equal(got, expected)
    assert caches_equal(growing, plain) and growing.get_seq_length() == sum(map(len, steps)) - 2


def test_a_step_writes_into_the_buffer_instead_of_copying_the_cache():
    layer = decode.GrowingLayer()
    rows = torch.randn(1, 2, 5, 4)
    layer.update(rows, rows)
    buffer = layer.buffer_keys
    for step in range(3):
        new = torch.randn(1, 2, 1, 4)
        keys, values = layer.update(new, new)
        assert layer.buffer_keys is buffer and keys.data_ptr() == buffer.data_ptr()  # no new tensor per step
        assert torch.equal(keys[..., -1:, :], new) and keys.shape[-2] == 6 + step


def test_a_cache_whose_tensors_were_replaced_is_copied_into_a_fresh_buffer():
    layer = decode.GrowingLayer()
    rows = torch.arange(24.0).reshape(2, 1, 3, 4)
    layer.update(rows, rows)
    layer.batch_select_indices(torch.tensor([1]))  # a new tensor, not a view of the buffer
    new = torch.full((1, 1, 1, 4), -1.0)
    keys, _ = layer.update(new, new)
    assert torch.equal(keys, torch.cat([rows[1:], new], dim=-2))


def test_a_sliding_window_layer_is_kept():
    from transformers import MistralConfig

    config = MistralConfig(num_hidden_layers=2, sliding_window=4, hidden_size=32, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=64, vocab_size=100)
    model = type("Model", (), {"config": config})
    assert [type(layer) for layer in decode.new_cache(model).layers] == [
        type(layer) for layer in DynamicCache(config=config).layers]
    assert not any(isinstance(layer, decode.GrowingLayer) for layer in decode.new_cache(model).layers)


def test_transformers_own_output_recorders_do_not_turn_the_lean_pass_off(int4_model):
    """The first forward that asks for hidden states (the logit lens) leaves transformers' output-capturing hooks on
    every layer for good; they record only inside such a forward, so decoding keeps the lean pass."""
    with torch.inference_mode():
        int4_model(input_ids=torch.tensor([PROMPT]), output_hidden_states=True)
    assert any(layer._forward_hooks for layer in int4_model.model.layers)  # installed, and they stay
    assert decode._lean_layers(int4_model) is not None
    cache = DynamicCache(config=int4_model.config)
    assert torch.equal(lean(int4_model, PROMPT, None, 1), own_forward(int4_model, PROMPT, cache, 1))

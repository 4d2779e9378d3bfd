"""The real embedded SmolLM2-135M-Instruct, offline, in the default precision (int4 on CPU)."""

from __future__ import annotations

import pytest
import torch

from playground.generation import encode_prompt, generate_text
from playground.sampling import SamplingSettings

pytestmark = pytest.mark.slow


def test_default_model_loads_with_an_honest_status(real_model):
    status = real_model.status()
    assert status["model"] == "smollm2-135m-instruct" and status["architecture"] == "LlamaForCausalLM"
    assert status["device"] == "cpu" and status["quantization"] == "int4" and status["dtype"] == "float32"
    assert "auto" in status["precision_reason"] and "int4" in status["precision_reason"]
    assert 130e6 < status["parameters"] < 140e6  # 134.5 M
    # fp32 embeddings (tied with the head): 28.3 M x 4 B = 113 MB; the decoder's 106 M weights at 4 bits = 53 MB,
    # plus a bf16 scale and offset per 32 weights = 13 MB, plus the decode head's int8 rows, 28 MB, plus the
    # stacked q/k/v and gate/up matrices' own scales and offsets, 9 MB (their codes are the separate matrices',
    # shared: a second copy would add 40 MB). fp32 everywhere would be 538 MB.
    assert 195 < status["memory_mb"] < 215
    config = real_model.model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (
        30, 9, 3, 49152)


def test_chat_template_answers_paris(real_model):
    ids = encode_prompt(real_model.tokenizer, "What is the capital of France?")
    result = generate_text(real_model.model, real_model.tokenizer, ids, SamplingSettings(temperature=0.0), 32,
                           eos_token_ids=real_model.eos_token_ids)
    assert "Paris" in result.text
    assert result.finish_reason == "eos"


def test_greedy_loop_equals_transformers_generate_on_the_real_model(real_model):
    ids = encode_prompt(real_model.tokenizer, "Write one sentence about the sea.")
    # Both stop at the model's end-of-turn token (this prompt reaches it in int4 after ~20 tokens). Forcing a
    # length instead (min_new_tokens) would make generate mask that token while our loop picks it.
    ours = generate_text(real_model.model, real_model.tokenizer, ids, SamplingSettings(temperature=0.0), 32,
                         eos_token_ids=real_model.eos_token_ids)
    reference = real_model.model.generate(ids, do_sample=False, max_new_tokens=32)
    assert ours.token_ids == reference[0, ids.shape[1]:].tolist()
    assert len(ours.token_ids) > 8


def test_the_decode_heads_token_is_the_fp32_heads_at_every_position_of_the_evaluation_text(real_model):
    """The default's head, one row at a time as a decode step calls it: at each of the evaluation paragraph's 233
    positions its top token and the fp32 head's top 32 logits are the fp32 head's (the same weights, one product).
    The candidates are the int8 pass's top 64, so the fp32 head's 60th may be missing (measured: the first token
    missing was at rank 52)."""
    from playground.quantization import eval_text_ids
    from playground.runtime.head import RESCORED, DecodeHead, decoding

    head = real_model.model.get_output_embeddings()
    assert isinstance(head, DecodeHead)
    with torch.inference_mode():
        hidden = real_model.model.model(input_ids=eval_text_ids(real_model.tokenizer)).last_hidden_state[0]
        exact = hidden @ head.weight.T  # [233, vocab]
        with decoding():
            decoded = torch.cat([head(row[None]) for row in hidden])  # one row per call: [233, vocab]
    assert torch.equal(decoded.argmax(-1), exact.argmax(-1))
    top = exact.topk(RESCORED // 2, dim=-1).indices
    torch.testing.assert_close(decoded.gather(1, top), exact.gather(1, top), rtol=1e-5, atol=1e-4)
    assert not torch.equal(decoded, exact)  # the tail is the int8 pass's


def test_the_lean_decoding_step_is_the_models_own_forward_bit_for_bit_and_holds_the_weights_once(real_model):
    from transformers import DynamicCache

    from playground.runtime import decode
    from playground.runtime.head import decoding

    model = real_model.model
    ids = encode_prompt(real_model.tokenizer, "Write one sentence about the sea.")
    ours, theirs = DynamicCache(config=model.config), DynamicCache(config=model.config)
    # Under the model's lock, as the app decodes: the session's model is shared with the API tests' app, whose
    # analyses (an ablation still finishing its layer) hook it while they hold the lock.
    with real_model.lock, torch.inference_mode():
        fused = decode._lean_layers(model)
        assert fused is not None  # the default decodes through the lean pass
        for layer in model.model.layers:  # the separate matrices' codes are views into the stacked ones
            stacks = fused[layer]
            for part, stack in ((layer.self_attn.q_proj, stacks.qkv), (layer.self_attn.v_proj, stacks.qkv),
                                (layer.mlp.up_proj, stacks.gate_up)):
                assert part.packed.untyped_storage().data_ptr() == stack.packed.untyped_storage().data_ptr()
        for step, keep in ((ids, 1), (torch.tensor([[1070]]), 1), (torch.tensor([[314, 2662, 30]]), 3)):
            got, _ = decode.decode_forward(model, step, ours, keep)
            with decoding():
                expected = model(input_ids=step, past_key_values=theirs, use_cache=True, logits_to_keep=keep).logits
            assert torch.equal(got, expected)


def test_eager_attention_weights_are_causal_distributions(real_model):
    ids = encode_prompt(real_model.tokenizer, "Hello there", chat=False)
    with real_model.eager_attention() as model, torch.inference_mode():
        attentions = model(ids, output_attentions=True).attentions
    assert len(attentions) == 30 and attentions[0].shape[1] == 9
    weights = attentions[5][0]  # [heads, q, k]
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-5, rtol=0)
    assert torch.all(weights.triu(diagonal=1) == 0)
    assert real_model.model.config._attn_implementation == "sdpa"


def test_embedding_model_is_embedded_and_normalisable(model_manager):
    embedder = model_manager.embedding_model()
    vectors = embedder.encode(["Paris is in France.", "The Eiffel tower is in Paris.", "Bananas are yellow."],
                              normalize_embeddings=True, convert_to_tensor=True)
    assert vectors.shape == (3, 384)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2]

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
    # plus a bf16 scale and offset per 32 weights = 13 MB. fp32 everywhere would be 538 MB.
    assert 160 < status["memory_mb"] < 190
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

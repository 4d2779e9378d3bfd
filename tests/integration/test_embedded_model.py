"""The real embedded SmolLM2-135M-Instruct, offline, in the default precision (fp32 on CPU)."""

from __future__ import annotations

import pytest
import torch

from playground.generation import encode_prompt, generate_text
from playground.sampling import SamplingSettings

pytestmark = pytest.mark.slow


def test_default_model_loads_with_an_honest_status(real_model):
    status = real_model.status()
    assert status["model"] == "smollm2-135m-instruct" and status["architecture"] == "LlamaForCausalLM"
    assert status["device"] == "cpu" and status["quantization"] == "none" and status["dtype"] == "float32"
    assert 130e6 < status["parameters"] < 140e6  # 134.5 M
    assert 500 < status["memory_mb"] < 530  # 134.5 M x 4 bytes = 513 MB
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
    ours = generate_text(real_model.model, real_model.tokenizer, ids, SamplingSettings(temperature=0.0), 24)
    reference = real_model.model.generate(ids, do_sample=False, max_new_tokens=24, min_new_tokens=24)
    assert ours.token_ids == reference[0, ids.shape[1]:].tolist()


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

"""The Serving tab's compute on the embedded SmolLM2-135M: batched greedy decoding of prompts of different
lengths gives each prompt's own greedy tokens (HF generate as the reference), and the KV bytes measured
from the real cache equal the formula."""

from __future__ import annotations

import pytest
import torch

from playground.attention.shape import AttentionShape
from playground.serving import batched_greedy, formula_cache_bytes, measure_batching

pytestmark = pytest.mark.slow

PROMPTS = ("The capital of France is", "Water boils at", "Once upon a time, in a small village by the sea,")


def test_batched_greedy_equals_each_prompt_decoded_alone(real_model):
    tokenizer, model = real_model.tokenizer, real_model.model
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS]
    together = batched_greedy(model, prompts, 8, tokenizer.pad_token_id or 0, lock=real_model.lock)
    with real_model.lock, torch.inference_mode():
        alone = [model.generate(torch.tensor([p]), max_new_tokens=8, min_new_tokens=8, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id or 0)[0, len(p):].tolist() for p in prompts]
    assert together == alone


def test_measured_kv_bytes_equal_the_formula(real_model):
    ids = real_model.tokenizer("The sky is blue because", return_tensors="pt")["input_ids"]
    curve = measure_batching(real_model.model, ids, [1, 3], 2, lock=real_model.lock)
    shape = AttentionShape.from_config(real_model.model.config)
    assert (shape.num_layers, shape.num_kv_heads, shape.head_dim) == (30, 3, 64)
    for point in curve.points:
        tokens = ids.shape[1] + 2
        assert point.kv.tokens == tokens
        assert point.kv.measured_bytes == formula_cache_bytes(shape, tokens, point.batch, point.kv.bytes_per_value)

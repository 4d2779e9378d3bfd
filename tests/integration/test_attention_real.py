"""Attention on the real embedded SmolLM2-135M-Instruct in the app's default precision (GQA: 9 query heads,
3 KV heads). The int8-dynamic path (torch.ao Linear) is covered on the tiny model in tests/unit."""

from __future__ import annotations

import pytest
import torch

from playground import attention as att
from playground.ui.attention_tab import DEFAULT_PROMPT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(real_model):
    with real_model.eager_attention() as model:
        return att.run_attention(model, real_model.tokenizer, DEFAULT_PROMPT)


def test_weights_equal_a_direct_eager_forward_and_sdpa_comes_back(run, real_model):
    ids = torch.tensor([run.token_ids])
    with real_model.eager_attention() as model, torch.no_grad():
        expected = model(ids, output_attentions=True, use_cache=False).attentions
    assert real_model.model.config._attn_implementation == "sdpa"
    assert len(run.weights) == len(expected) == 30
    for ours, theirs in zip(run.weights, expected):
        torch.testing.assert_close(ours, theirs[0].float(), rtol=0, atol=1e-6)


def test_rows_sum_to_one_and_nothing_looks_ahead_in_every_layer_and_head(run):
    causal = torch.ones(run.length, run.length, dtype=torch.bool).tril()
    for layer in range(30):
        sums = run.weights[layer].double().sum(dim=-1)  # [heads, n]
        assert (sums - 1).abs().max() < 1e-5
        assert run.weights[layer][:, ~causal].abs().max() == 0
        assert torch.equal(att.layer_allowed(run, layer), causal)


def test_score_story_matches_the_models_weights(run):
    # Q and K recomputed with the model's own projections and RoPE reproduce the returned weights.
    for layer in (0, 14, 29):
        for head in range(9):
            story = att.score_story(run, layer, head)
            assert story.max_abs_diff_vs_model < 1e-5, (layer, head)
            assert story.kv_head == head // 3 and story.scale == pytest.approx(64 ** -0.5)


def test_gqa_groups_of_the_real_model(run):
    assert run.shape == att.AttentionShape(num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64)
    assert run.shape.kv_groups() == ((0, 1, 2), (3, 4, 5), (6, 7, 8))


def test_the_model_has_sink_and_previous_token_heads(run):
    # Properties of this model on this prompt, as the tab describes them.
    patterns = [att.head_pattern(att.attention_view(run, layer, head)) for layer in range(30) for head in range(9)]
    assert sum(p.first_token > 0.5 for p in patterns) > 100  # most heads park weight on token 0
    assert any(p.previous_token > 0.5 for p in patterns)


def test_kv_estimate_equals_the_real_cache(real_model, run):
    with torch.no_grad():
        cache = real_model.model(torch.tensor([run.token_ids]), use_cache=True).past_key_values
    measured = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    estimate = att.kv_cache_estimate(run.shape, run.length, "float32")
    assert estimate.cache_bytes(3) == measured == run.length * 46_080


def test_long_prompt_is_capped_at_256_tokens(real_model):
    text = open(__file__, encoding="utf-8").read() * 2
    with real_model.eager_attention() as model:
        capped = att.run_attention(model, real_model.tokenizer, text)
    assert capped.length == att.MAX_ANALYSED_TOKENS == 256 and capped.total_tokens > 256
    assert "first 256 are analysed" in capped.note
    assert att.attention_view(capped, 29, None).max_row_sum_error < 1e-5

"""The Attention tab's endpoints, driven through gradio_client like a script would."""

from __future__ import annotations

import pytest
import torch

from playground.ui.attention_tab import DEFAULT_PROMPT

pytestmark = pytest.mark.slow

JSON_OUTPUT = 8  # /attention returns: status, heatmap, chips, query, row plot, grid, patterns, story, JSON, ...


def test_attention_returns_the_models_weights_as_json(client, real_model):
    outputs = client.predict(DEFAULT_PROMPT, 2, "4", api_name="/attention")
    data = outputs[JSON_OUTPUT]
    weights = torch.tensor(data["weights"], dtype=torch.float64)
    n = len(data["tokens"])
    assert data["layer"] == 2 and data["head"] == 4 and weights.shape == (n, n)
    assert (weights.sum(dim=-1) - 1).abs().max() < 1e-5
    assert weights.triu(diagonal=1).abs().max() == 0
    # The same numbers as a direct eager forward of the same model on the same ids.
    with real_model.eager_attention() as model, torch.no_grad():
        direct = model(torch.tensor([data["token_ids"]]), output_attentions=True, use_cache=False).attentions
    torch.testing.assert_close(weights, direct[2][0, 4].double(), rtol=0, atol=1e-7)
    assert data["shape"]["kv_head_of_query_head"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data["checks"]["story_max_abs_diff_vs_model"] < 1e-5
    assert [p["head"] for p in data["grid"]["patterns"]] == list(range(9))


def test_mean_over_heads_across_layers(client):
    data = client.predict("Hello there, world.", 0, "mean", "layers", api_name="/attention")[JSON_OUTPUT]
    assert data["head"] == "mean" and data["grid"]["mode"] == "layers" and len(data["grid"]["patterns"]) == 30


def test_attention_mask_endpoint(client):
    note, _plot, data = client.predict("a b c d\ne f", "padding_left", 3, 4, 4, api_name="/attention_mask")
    long, short = data["sequences"]
    assert short["tokens"][:2] == ["[pad]", "[pad]"] and short["allowed_pairs"] == 3
    assert short["allowed"][3] == [0, 0, 1, 1] and "✓" in note


def test_kv_cache_endpoint(client):
    _note, _plot, data = client.predict(8192, "float32", 1, api_name="/kv_cache")
    sizes = {v["name"]: v["megabytes"] for v in data["variants"]}
    assert sizes == {"MHA": 1132.462, "GQA": 377.487, "MQA": 125.829}


def test_empty_prompt_and_bad_head_are_handled(client):
    assert client.predict("", 0, "mean", api_name="/attention")[JSON_OUTPUT]["empty"] is True
    with pytest.raises(Exception, match=r"this model has 9 query heads \(0..8\)"):
        client.predict("Hello", 0, "12", api_name="/attention")

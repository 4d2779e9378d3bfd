"""Attention: eager weights (rows sum to 1, zero above the diagonal) == a direct forward, the score story, views,
the KV-cache formula against the real cache, the mask explorer."""

from __future__ import annotations

import json
import time

import pytest
import torch

from harness import ATTENTION_TEXT, Run, Section, is_exact, model_device, step, sync, within
from playground import attention as att

pytestmark = pytest.mark.device


def test_attention(run: Run, section: Section) -> None:
    loaded = run.model()
    exact = is_exact(loaded)
    with loaded.eager_attention() as model:
        sync(run.device)
        started = time.perf_counter()
        result = att.run_attention(model, loaded.tokenizer, ATTENTION_TEXT, max_tokens=run.sizes.attention_tokens)
        sync(run.device)
        eager_seconds = time.perf_counter() - started
        ids = torch.tensor([result.token_ids], device=model_device(loaded))
        with torch.inference_mode():
            direct = model(ids, output_attentions=True, use_cache=False).attentions
    section.metric("run_attention (eager, hooks, copies to CPU)", eager_seconds, "s",
                   f"{result.length} tokens, {result.shape.num_layers} layers x {result.shape.num_heads} heads")
    section.check("attention switched back to SDPA", loaded.model.config._attn_implementation == "sdpa",
                  loaded.model.config._attn_implementation, "sdpa")
    n = result.length
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    row_error = max(float((w.double().sum(-1) - 1).abs().max()) for w in result.weights)
    above = max(float(w[:, ~causal].abs().max()) for w in result.weights)
    row_tolerance = 1e-5 if exact else 2e-2
    within(section, "rows sum to 1, every layer and head", row_error, row_tolerance, exact,
           f"weights dtype {direct[0].dtype}")
    section.check("causal: zero above the diagonal", above == 0.0, above, "0")
    section.check("each layer's mask is causal", all(torch.equal(att.layer_allowed(result, layer), causal)
                                                     for layer in range(result.shape.num_layers)))
    difference = max(float((ours - theirs[0].float().cpu()).abs().max())
                     for ours, theirs in zip(result.weights, direct))
    within(section, "weights == a direct eager forward", difference, 1e-6 if exact else 1e-3, exact)
    story_tolerance = 1e-5 if exact else 5e-2
    last_layer, last_head = result.shape.num_layers - 1, result.shape.num_heads - 1
    stories = {(layer, head): att.score_story(result, layer, head).max_abs_diff_vs_model
               for layer in (0, last_layer // 2, last_layer) for head in (0, last_head)}
    worst = max(stories.values())
    within(section, "score story (Q, K recomputed, softmax) == the model's weights", worst, story_tolerance, exact,
           f"layers/heads {sorted(stories)}")
    view = att.attention_view(result, last_layer // 2, None)
    grid = att.attention_grid(result, last_layer // 2, None, "heads")
    story = att.score_story(result, last_layer // 2, 0)
    payload = att.attention_json(result, view, grid, story)
    section.check("views and JSON", len(json.dumps(payload)) > 0 and len(grid.patterns) == result.shape.num_heads,
                  f"{len(json.dumps(payload)) / 1e3:.0f} kB JSON, dominant pattern of head 0: "
                  f"{grid.patterns[0].dominant[0]}")
    with step(section, "KV cache"):
        with loaded.lock, torch.inference_mode():
            sync(run.device)
            started = time.perf_counter()
            cache = loaded.model(ids, use_cache=True).past_key_values
            sync(run.device)
            sdpa_seconds = time.perf_counter() - started
        section.metric("one SDPA forward of the same tokens", sdpa_seconds, "s")
        tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        measured = sum(t.numel() * t.element_size() for t in tensors)
        dtype_name = str(tensors[0].dtype).replace("torch.", "")
        estimate = att.kv_cache_estimate(result.shape, n, dtype_name)
        section.check("KV-cache formula == the real cache",
                      estimate.cache_bytes(result.shape.num_kv_heads) == measured,
                      f"{measured} bytes ({dtype_name}, on {tensors[0].device})",
                      str(estimate.cache_bytes(result.shape.num_kv_heads)))
    with step(section, "mask explorer"):
        mask = att.explore_mask(ATTENTION_TEXT, "sliding_window", window=4)
        sequence = mask.sequences[0]
        section.check("mask explorer: counted pairs == closed form", sequence.allowed_pairs == sequence.formula_pairs,
                      f"{sequence.allowed_pairs} pairs")

"""The scores -> mask -> softmax story of one head, rebuilt from the captured Q and K with the model's
own projections and RoPE, and checked against the weights the model returned (`score_story`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from playground.attention.weights import AttentionRun, _decoder_layers, layer_allowed


@dataclass(frozen=True)
class ScoreStory:
    """One head, step by step: raw scores QKᵀ·scale, the mask, the softmax — rebuilt from Q and K."""

    layer: int
    head: int
    kv_head: int
    scale: float  # 1/sqrt(head_dim) for Llama-style models
    tokens: tuple[str, ...]
    scores: torch.Tensor  # [n, n] raw scores, future keys included
    allowed: torch.Tensor  # [n, n] bool, the mask this layer used
    probabilities: torch.Tensor  # [n, n] softmax over allowed keys
    max_abs_diff_vs_model: float  # |our softmax − the weights the model returned|, max over the matrix


@torch.no_grad()
def score_story(run: AttentionRun, layer: int, head: int) -> ScoreStory:
    """Recompute Q and K of `layer` from its captured input with the model's own projections and RoPE,
    then scores -> mask -> softmax, and compare with the weights the model itself returned."""
    attention = _decoder_layers(run.model)[layer].self_attn
    hidden = run.attention_inputs[layer]  # [1, n, hidden]
    n, head_dim = run.length, run.shape.head_dim
    query = attention.q_proj(hidden).view(1, n, -1, head_dim).transpose(1, 2)  # [1, heads, n, d]
    key = attention.k_proj(hidden).view(1, n, -1, head_dim).transpose(1, 2)  # [1, kv_heads, n, d]
    if hasattr(attention, "q_norm"):  # Qwen3 / Gemma 3 normalise Q and K per head before RoPE
        query, key = attention.q_norm(query), attention.k_norm(key)
    rope = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb")
    cos, sin = run.rotary[layer]
    query, key = rope(query, key, cos, sin)
    kv_head = run.shape.kv_head_of(head)
    scale = float(getattr(attention, "scaling", head_dim ** -0.5))
    scores = (query[0, head] @ key[0, kv_head].T).float() * scale  # [n, n]
    allowed = layer_allowed(run, layer)
    scores = scores.cpu()
    probabilities = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    difference = (probabilities - run.weights[layer][head].cpu()).abs().max()
    return ScoreStory(layer, head, kv_head, scale, run.tokens, scores, allowed, probabilities, float(difference))

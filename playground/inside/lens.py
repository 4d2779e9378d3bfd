"""The logit lens: decode the residual stream after every layer through the model's own final norm and
output head, as if the model stopped there.

For depth d (0 = the embeddings, d = the output of layer d), position i:
    logits_d,i = W_U · norm(h_d,i)          p_d,i = softmax(logits_d,i)
transformers' `hidden_states` hold h_0 .. h_{L-1} before the final norm, but its last entry is *after* the
norm (the model applies it before returning): the last row is therefore the model's own logits, not the
norm applied twice. Every row is compared with that final distribution: entropy, KL(p_final || p_d), the
rank and probability of the token the model finally puts on top, and the sampling filters' verdict on each
depth's top token (the one sampling pipeline, playground.sampling_pipeline; `with_sampling` re-reads it for
other settings without a forward).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from playground.attention import token_labels
from playground.inside.prompt import EncodedPrompt, decoder
from playground.sampling_pipeline import SamplingSettings, final_probabilities

TOP = 5  # tokens listed per cell in the hover
HEAD_ROWS = 256  # normed rows per product with the output head (see logit_lens)


@dataclass(frozen=True)
class LogitLens:
    """Arrays are [depth, position] (depth 0 = embeddings, depth L = the model's output) unless noted."""

    prompt: EncodedPrompt
    top_ids: np.ndarray  # [depth, pos, TOP] int: the TOP most likely tokens at each depth
    top_probs: np.ndarray  # [depth, pos, TOP]
    final_ids: np.ndarray  # [pos]: the model's own top-1 (argmax of the last row)
    final_probs: np.ndarray  # probability of final_ids[pos] at each depth
    final_ranks: np.ndarray  # its rank at each depth (1 = top)
    entropy_bits: np.ndarray
    kl_to_final: np.ndarray  # KL(p_final || p_depth) in nats (0 on the last row)
    commit_depth: np.ndarray  # [pos]: the first depth from which the final token stays top-1
    cut: np.ndarray  # bool: the sampling settings would never draw this depth's top token at this position
    kept: np.ndarray  # [pos]: how many tokens the settings keep at each position
    settings: SamplingSettings
    top_labels: tuple[tuple[tuple[str, ...], ...], ...]  # [depth][pos][TOP] the tokens drawn
    final_logits: torch.Tensor  # [pos, vocab] float32: the model's own logits, which `with_sampling` filters

    @property
    def depths(self) -> int:
        return int(self.top_ids.shape[0])

    def depth_name(self, depth: int) -> str:
        return "embeddings" if depth == 0 else f"layer {depth}"


def final_norm(model: Any) -> Any:
    return decoder(model).norm


def lens_logits(model: Any, hidden_states: tuple[torch.Tensor, ...], depth: int) -> torch.Tensor:
    """The output head applied to depth `depth`'s residual stream [n, hidden] -> logits [n, vocab] float32.
    The last entry of `hidden_states` is already normed (see the module docstring): it is not normed again."""
    hidden = hidden_states[depth][0]  # [n, hidden]
    if depth < len(hidden_states) - 1:
        hidden = final_norm(model)(hidden)
    return model.get_output_embeddings()(hidden).float()


def logit_lens(model: Any, tokenizer: Any, prompt: EncodedPrompt, settings: SamplingSettings,
               lock: Any = None, head_rows: int = HEAD_ROWS) -> LogitLens:
    """One forward with every hidden state, then every depth but the last through the final norm and the head.

    The head product is most of the work (SmolLM2, 64 tokens: 30 x [64 x 576] x [576 x 49152], ~6x the
    forward's multiply-adds). It runs on blocks of whole depths, about `head_rows` rows at a time (one larger
    matrix product is faster than one per depth, and a block's logits stay bounded: 256 x 49152 floats =
    50 MB, never the 31 x 128 x 49152 of every depth at once); each depth's statistics then read its slice of
    the block. `head_rows` changes the speed only, never a number (a test checks)."""
    guard = lock if lock is not None else contextlib.nullcontext()
    with guard, torch.inference_mode():
        output = model(prompt.ids, output_hidden_states=True, use_cache=False)
        hidden_states = output.hidden_states  # depths = layers + 1 tensors [1, n, hidden]
        n = prompt.length
        final_logits = output.logits[0].float()  # [n, vocab]
        final_ids = final_logits.argmax(-1)  # [n]
        final_p = final_logits.softmax(-1)  # [n, vocab]
        last = _depth_stats(final_logits, final_p, torch.zeros(n), final_ids)
        last["kl"][:] = 0.0  # the final distribution against itself
        final_neg_entropy = -torch.from_numpy(last["entropy_bits"]) * math.log(2)  # Σ p log p, nats: [n]
        # depths 0 .. L-1 normed and stacked depth-major: row d·n + i is depth d, position i
        normed = final_norm(model)(torch.cat([hidden[0] for hidden in hidden_states[:-1]]))  # [L·n, hidden]
        head = model.get_output_embeddings()
        per_block = max(1, head_rows // n)  # whole depths per head product
        rows = []
        for first in range(0, len(hidden_states) - 1, per_block):
            block = head(normed[first * n:(first + per_block) * n]).float()  # [depths in block · n, vocab]
            for logits in block.split(n):  # one depth each: [n, vocab], a contiguous view
                rows.append(_depth_stats(logits, final_p, final_neg_entropy, final_ids))
        rows.append(last)
    stacked = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    labels = _labels(tokenizer, stacked["top_ids"])
    commit = _commit_depth(stacked["top_ids"][..., 0], final_ids.numpy())
    cut, kept = _sampling_marks(final_logits, stacked["top_ids"], settings)
    return LogitLens(prompt, stacked["top_ids"], stacked["top_probs"], final_ids.numpy(), stacked["final_probs"],
                     stacked["final_ranks"], stacked["entropy_bits"], stacked["kl"], commit, cut, kept, settings,
                     labels, final_logits)


def with_sampling(lens: LogitLens, settings: SamplingSettings) -> LogitLens:
    """The same lens with other sampling settings: only the ✕ marks and kept counts depend on them (read from
    the final logits, no forward), so a sampling move never runs the model again."""
    cut, kept = _sampling_marks(lens.final_logits, lens.top_ids, settings)
    return dataclasses.replace(lens, cut=cut, kept=kept, settings=settings)


def _sampling_marks(final_logits: torch.Tensor, top_ids: np.ndarray,
                    settings: SamplingSettings) -> tuple[np.ndarray, np.ndarray]:
    """final_logits [pos, vocab], top_ids [depth, pos, TOP] -> (cut [depth, pos]: the settings never draw that
    depth's top token; kept [pos]: how many tokens they keep)."""
    # What sampling with these settings could ever draw at each position (greedy: the argmax only).
    drawable = final_probabilities(final_logits, settings) > 0  # [pos, vocab]
    top1 = torch.from_numpy(top_ids[..., 0])  # [depth, pos]
    cut = ~drawable[torch.arange(top1.shape[1])[None, :], top1]  # [depth, pos]
    return cut.numpy(), drawable.sum(-1).numpy()


def _depth_stats(logits: torch.Tensor, final_p: torch.Tensor, final_neg_entropy: torch.Tensor,
                 final_ids: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-position numbers of one depth, in a few passes over logits z [n, vocab] (final_p: [n, vocab];
    final_neg_entropy Σ p_final log p_final, final_ids: [n]). With m = max z, d = z − m, S = Σ e^d:
        log p = d − log S,  entropy = log S − Σ e^d·d / S,
        KL(final || p) = Σ p_final log p_final − Σ p_final·d + log S   (Σ p_final = 1),
    all from d, whose entries are ≤ 0, so no large logits cancel in float32 and no log-probability of
    a zero probability (-inf) is ever multiplied."""
    top = logits.topk(TOP, dim=-1)  # [n, TOP]; values sorted, so the max is the first
    shifted = logits - top.values[:, :1]  # d: [n, vocab]
    exp_shifted = shifted.exp()
    log_total = exp_shifted.sum(-1).log()  # log S: [n]
    final_shifted = shifted.gather(-1, final_ids[:, None])[:, 0]  # d at the final token: [n]
    entropy = log_total - torch.linalg.vecdot(exp_shifted, shifted) / log_total.exp()
    kl = final_neg_entropy - torch.linalg.vecdot(final_p, shifted) + log_total
    return {
        "top_ids": top.indices.numpy(),
        "top_probs": (top.values - top.values[:, :1] - log_total[:, None]).exp().numpy(),
        "final_probs": (final_shifted - log_total).exp().numpy(),
        "final_ranks": ((shifted > final_shifted[:, None]).sum(-1) + 1).numpy(),
        "entropy_bits": (entropy / math.log(2)).numpy(),
        "kl": kl.clamp(min=0).numpy(),
    }


def _commit_depth(top1: np.ndarray, final_ids: np.ndarray) -> np.ndarray:
    """top1 [depth, pos], final_ids [pos] -> the first depth from which every later depth's top-1 is final."""
    agrees = top1 == final_ids[None, :]  # [depth, pos]; the last row always agrees
    # walking up from the output, the run of agreeing depths ends at the first disagreement
    from_top = np.cumprod(agrees[::-1], axis=0)[::-1]  # 1 where this depth and all later ones agree
    return agrees.shape[0] - from_top.sum(axis=0)


def _labels(tokenizer: Any, top_ids: np.ndarray) -> tuple[tuple[tuple[str, ...], ...], ...]:
    unique = np.unique(top_ids)
    drawn = dict(zip(unique.tolist(), token_labels(tokenizer, unique.tolist())))
    return tuple(tuple(tuple(drawn[int(t)] for t in cell) for cell in row) for row in top_ids)


def lens_json(lens: LogitLens, decimals: int = 6) -> dict[str, Any]:
    """The raw numbers of the lens, as the `logit_lens` endpoint returns them."""
    def rounded(array: np.ndarray) -> list[Any]:
        return np.round(array.astype(float), decimals).tolist()

    settings = lens.settings
    return {
        "tokens": list(lens.prompt.tokens), "token_ids": lens.prompt.ids[0].tolist(),
        "total_tokens": lens.prompt.total_tokens, "note": lens.prompt.note,
        "depths": [lens.depth_name(d) for d in range(lens.depths)],
        "final_ids": lens.final_ids.tolist(), "final_tokens": [row[0] for row in lens.top_labels[-1]],
        "top_ids": lens.top_ids.tolist(), "top_tokens": [[list(cell) for cell in row] for row in lens.top_labels],
        "top_probs": rounded(lens.top_probs), "final_probs": rounded(lens.final_probs),
        "final_ranks": lens.final_ranks.tolist(), "entropy_bits": rounded(lens.entropy_bits),
        "kl_to_final": rounded(lens.kl_to_final), "commit_depth": lens.commit_depth.tolist(),
        "cut_by_sampling": lens.cut.tolist(), "kept_by_sampling": lens.kept.tolist(),
        "sampling": {"temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p,
                     "min_p": settings.min_p},
    }

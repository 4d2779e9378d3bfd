"""Next-token sampling, stage by stage: logits -> repetition penalty -> temperature -> top-k -> top-p
-> min-p -> softmax -> draw.

This is the app's one sampling pipeline: the generation loop, the sampling tab and speculative
decoding all call it. Each stage is a pure function over logits of shape [..., vocab] that masks cut
tokens with -inf, with the same semantics as transformers' logits processors (tests check that).

It sits below the generation loop (playground/generation.py imports it), and what the Sampling tab
shows (playground/sampling/: views, the prompt-logits cache, traces) sits above both. It is a module
of its own, outside that package, because importing a package's submodule runs the package's
__init__ first: were the pipeline playground/sampling/pipeline.py, importing generation would run
playground/sampling/__init__.py, whose traces import generation back.

Tiny worked example (vocabulary of 4):

    >>> import torch
    >>> logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    >>> apply_top_k(logits, 2)
    tensor([2., 1., -inf, -inf])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from playground.limits import shown

NEG_INF = float("-inf")

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit seed


class SamplingSettingsError(ValueError):
    """A sampling setting is out of range; the message says which and the allowed range."""


@dataclass(frozen=True)
class SamplingSettings:
    """How to turn logits into the next token. Defaults switch every filter off.

    temperature = 0 means greedy (argmax), the deterministic limit of T -> 0.
    top_k = 0, top_p = 1 and min_p = 0 mean "no filter"; repetition_penalty = 1 means none.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        def finite(name: str, value: float) -> None:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise SamplingSettingsError(f"{name} must be a finite number, got {shown(value)}")

        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            finite(name, getattr(self, name))
        if self.temperature < 0:
            raise SamplingSettingsError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise SamplingSettingsError(f"top_k must be a whole number >= 0 (0 = off), got {shown(self.top_k)}")
        if not 0 < self.top_p <= 1:
            raise SamplingSettingsError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise SamplingSettingsError(f"min_p must be in [0, 1] (0 = off), got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise SamplingSettingsError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise SamplingSettingsError(f"seed must be a whole number in 0..{MAX_SEED} (2**63 - 1), got {shown(self.seed, 40)}")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def generator(self) -> torch.Generator | None:
        """A CPU torch.Generator seeded with `seed` (None when unseeded), so runs can be replayed."""
        if self.seed is None:
            return None
        return torch.Generator().manual_seed(self.seed)


# ---------------------------------------------------------------------------------------------
# Stages: logits [..., vocab] -> logits [..., vocab] with cut tokens at -inf
# ---------------------------------------------------------------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor | None, penalty: float) -> torch.Tensor:
    """CTRL-style penalty on every token already seen: positive logits / penalty, negative * penalty.

    logits: [batch, vocab] or [vocab]; previous_ids: [batch, n] or [n] (prompt + generated so far).
    """
    if penalty == 1.0 or previous_ids is None or previous_ids.numel() == 0:
        return logits
    squeeze = logits.dim() == 1
    scores = logits.unsqueeze(0) if squeeze else logits
    ids = (previous_ids.unsqueeze(0) if previous_ids.dim() == 1 else previous_ids).to(scores.device)
    seen = torch.gather(scores, -1, ids)
    penalised = torch.where(seen < 0, seen * penalty, seen / penalty)
    scores = scores.scatter(-1, ids, penalised)
    return scores.squeeze(0) if squeeze else scores


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by T: T < 1 sharpens the distribution, T > 1 flattens it. T = 0 is handled as greedy."""
    if temperature in (0.0, 1.0):
        return logits
    return logits / temperature


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the k highest logits (and any tied with the k-th); k >= vocab size keeps everything."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth_value = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # [..., 1]
    return logits.masked_fill(logits < kth_value, NEG_INF)


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose probability sums to >= p.

    Same tokens as transformers' TopPLogitsWarper (`top_p_by_full_sort`). The nucleus is usually a
    few dozen tokens of a 49,152-token vocabulary, so it is first looked for among the top k logits
    (`top_p_keep_among_top_k`, k growing), which costs a partial selection instead of a full sort;
    where that cannot decide exactly, the full sort does.
    """
    if top_p >= 1.0:
        return logits
    keep = top_p_keep_among_top_k(logits, top_p)
    if keep is None:
        return top_p_by_full_sort(logits, top_p)
    return logits.masked_fill(~keep, NEG_INF)


def top_p_by_full_sort(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """top-p as transformers computes it: sort ascending and drop the low tail whose cumulative
    probability is <= 1 - p; the most likely token always stays. logits: [..., vocab]."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_remove = cumulative <= (1 - top_p)
    sorted_remove[..., -1:] = False
    remove = sorted_remove.scatter(-1, sorted_indices, sorted_remove)
    return logits.masked_fill(remove, NEG_INF)


TOP_P_FIRST_K = 64  # candidates looked at first; each retry takes 4x more, up to vocab / 8
TOP_P_MARGIN = 1e-5  # a cumulative probability this close to 1 - p is left to the full sort


def top_p_keep_among_top_k(logits: torch.Tensor, top_p: float) -> torch.Tensor | None:
    """Which tokens top-p keeps ([..., vocab] bool), decided from the k highest logits only; None when
    that cannot be decided exactly (the caller then sorts everything).

    The full sort keeps a token iff the probability of it and everything below it (its ascending
    cumulative sum) is > 1 - p. That sum is total - (mass strictly above it), and the mass above a
    token only involves higher tokens, so the top k suffice once the first removed token is among
    them. Two cases are left to the full sort, so the kept set is always exactly the full sort's:
    a sum within TOP_P_MARGIN of 1 - p (the sums here are taken in another order; float32 rounding
    of a sum near 1 is ~6e-8), and the boundary inside a group of tied logits (which of the tied
    tokens stay depends on the sort's order among equals).
    """
    vocab = logits.shape[-1]
    rows = logits.reshape(-1, vocab)  # [rows, vocab]
    probs = rows.softmax(dim=-1)
    total = probs.double().sum(dim=-1, keepdim=True)  # [rows, 1]; ~1, as the full sort's last cumulative sum
    threshold = 1.0 - top_p
    k = TOP_P_FIRST_K
    while k <= vocab // 8:
        top_logits, top_ids = torch.topk(rows, k, dim=-1)  # [rows, k], descending
        top_probs = probs.gather(-1, top_ids).double()
        above = top_probs.cumsum(dim=-1) - top_probs  # mass strictly above each candidate
        cumulative = total - above  # [rows, k]: each candidate's ascending cumulative sum
        kept = cumulative > threshold
        kept[:, 0] = True  # the most likely token always stays
        if not bool((~kept[:, -1]).all()):  # some row keeps all k: its first removed token lies further down
            k *= 4
            continue
        count = kept.sum(dim=-1, keepdim=True)  # [rows, 1]; 1 <= count < k
        last_kept, first_removed = (count - 1), count
        # The most likely token stays whatever its sum, so its sum is no edge when it stays alone.
        last_kept_near = ((cumulative.gather(-1, last_kept) - threshold).abs() < TOP_P_MARGIN) & (count > 1)
        first_removed_near = (cumulative.gather(-1, first_removed) - threshold).abs() < TOP_P_MARGIN
        tie_at_edge = top_logits.gather(-1, last_kept) == top_logits.gather(-1, first_removed)
        if bool((last_kept_near | first_removed_near | tie_at_edge).any()):
            return None
        keep = torch.zeros_like(rows, dtype=torch.bool).scatter_(-1, top_ids, kept)
        return keep.reshape(logits.shape)
    return None


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p x the top token's probability."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    remove = probs < threshold
    remove.scatter_(-1, probs.argmax(dim=-1, keepdim=True), False)  # the top token always stays
    return logits.masked_fill(remove, NEG_INF)


STAGE_NAMES = ("raw", "repetition_penalty", "temperature", "top_k", "top_p", "min_p")


def pipeline_stages(
    logits: torch.Tensor, settings: SamplingSettings, previous_ids: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Logits after every stage, in order (keys: STAGE_NAMES). Float32 throughout.

    For greedy settings the temperature stage is the identity: greedy picks the argmax of the
    penalised logits, which no later filter can remove.
    """
    stages = {"raw": logits.float()}
    stages["repetition_penalty"] = apply_repetition_penalty(stages["raw"], previous_ids, settings.repetition_penalty)
    stages["temperature"] = apply_temperature(stages["repetition_penalty"], settings.temperature)
    stages["top_k"] = apply_top_k(stages["temperature"], settings.top_k)
    stages["top_p"] = apply_top_p(stages["top_k"], settings.top_p)
    stages["min_p"] = apply_min_p(stages["top_p"], settings.min_p)
    return stages


def final_probabilities(
    logits: torch.Tensor, settings: SamplingSettings, previous_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """The distribution the next token is drawn from: [..., vocab], rows sum to 1.

    Greedy settings give a one-hot at the argmax, so greedy and sampled decoding share one code
    path (speculative decoding relies on that: p and q are both one-hot when T = 0).
    """
    processed = pipeline_stages(logits, settings, previous_ids)["min_p"]
    if settings.is_greedy:
        return torch.nn.functional.one_hot(processed.argmax(dim=-1), processed.shape[-1]).to(processed.dtype)
    return processed.softmax(dim=-1)


def sample_from(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token id per row of probs [..., vocab] -> [...] (long)."""
    flat = probs.reshape(-1, probs.shape[-1])
    drawn = torch.multinomial(flat, num_samples=1, generator=generator)  # [rows, 1]
    return drawn.reshape(probs.shape[:-1])


def sample_next_token(
    logits: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    previous_ids: torch.Tensor | None = None,
) -> int:
    """The next token id for one sequence. logits: [vocab]."""
    return draw_next_token(logits, settings, generator, previous_ids)[0]


def draw_next_token(
    logits: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    previous_ids: torch.Tensor | None = None,
) -> tuple[int, torch.Tensor | None]:
    """(the next token id, the final distribution it was drawn from: [vocab] on the CPU, None when greedy).
    logits: [vocab]. The generation loop hands the distribution to a trace, which would otherwise run the
    pipeline a second time for the same step."""
    if settings.is_greedy:
        # Same result as drawing from the one-hot, without spending a random number.
        return int(apply_repetition_penalty(logits.float(), previous_ids, settings.repetition_penalty).argmax()), None
    # Draw on the CPU with a CPU generator, so a seed replays the same tokens on any device.
    probs = final_probabilities(logits, settings, previous_ids).cpu()
    return int(sample_from(probs, generator)), probs

"""What the Sampling tab shows about one next-token distribution, all computed with the one pipeline
(playground/sampling_pipeline.py): the distribution after every stage (`next_token_view`), a
temperature sweep (`temperature_sweep`), and many draws checked with a chi-square test
(`sample_histogram`).

    >>> import torch
    >>> round(entropy_bits(torch.tensor([0.5, 0.25, 0.25])), 3)
    1.5
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from playground.limits import LIMITS, shown
from playground.sampling_pipeline import (
    STAGE_NAMES,
    SamplingSettings,
    SamplingSettingsError,
    apply_repetition_penalty,
    final_probabilities,
    pipeline_stages,
    sample_next_token,
)

MAX_SAMPLES = LIMITS.samples
DEFAULT_TOP_N = 20
SWEEP_TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
STAGE_LABELS = {"raw": "raw softmax", "repetition_penalty": "repetition penalty", "temperature": "temperature",
                "top_k": "top-k", "top_p": "top-p (nucleus)", "min_p": "min-p"}


def stage_is_active(stage: str, settings: SamplingSettings, vocab_size: int) -> bool:
    """Whether a stage can change anything with these settings (raw and temperature always show)."""
    if stage == "repetition_penalty":
        return settings.repetition_penalty != 1.0
    if stage == "top_k":
        return 0 < settings.top_k < vocab_size
    if stage == "top_p":
        return settings.top_p < 1.0
    if stage == "min_p":
        return settings.min_p > 0.0
    return True


def entropy_bits(probs: torch.Tensor) -> float | list[float]:
    """Shannon entropy in bits of probs [vocab] (a float) or of each row of probs [rows, vocab]
    (a list), computed in float64; 0 log 0 counts as 0."""
    p = probs.double()
    entropy = -torch.special.xlogy(p, p).sum(dim=-1) / math.log(2)
    return (entropy + 0.0).tolist()  # + 0.0 turns the -0.0 of a one-hot into 0.0


def settings_notes(settings: SamplingSettings, vocab_size: int) -> tuple[str, ...]:
    """Plain-language notes about settings that do something other than they seem to."""
    notes = []
    if settings.is_greedy:
        notes.append("T = 0 means greedy: the most likely token (after the repetition penalty) gets probability 1, "
                     "so top-k, top-p and min-p cannot change the result.")
    if settings.top_k >= vocab_size:
        notes.append(f"top-k = {settings.top_k} is larger than the vocabulary ({vocab_size} tokens): "
                     f"clamped to {vocab_size}, so it keeps every token.")
    return tuple(notes)


def stage_probabilities(
    logits: torch.Tensor, settings: SamplingSettings, previous_ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities after every stage [stages, vocab], index of the stage that cut each token [vocab])
    for logits [vocab]; rows follow STAGE_NAMES.

    Each stage's probabilities are the softmax of its logits: renormalised over the tokens still in
    play, which is exactly what the next stage sees. The cut index is the position in STAGE_NAMES of
    the first stage that set the token to -inf (0 when the model's own logit is -inf), or -1 for
    tokens that survive. With T = 0 every stage from temperature on is the greedy one-hot (the
    T -> 0 limit), and temperature cuts the rest.
    """
    stage_logits = pipeline_stages(logits, settings, previous_ids)
    stacked = torch.stack([stage_logits[name] for name in STAGE_NAMES])  # [stages, vocab]
    probs = stacked.softmax(dim=-1)
    finite = torch.isfinite(stacked)
    if settings.is_greedy:
        temperature = STAGE_NAMES.index("temperature")
        probs[temperature:] = final_probabilities(logits, settings, previous_ids)
        finite[temperature:] &= probs[temperature:] > 0
    # Stages only ever remove tokens, so a token finite in the first s stages was cut by stage s.
    alive_stages = finite.sum(dim=0)  # [vocab]
    cut = torch.where(alive_stages == len(STAGE_NAMES), -1, alive_stages)
    return probs, cut


@dataclass(frozen=True)
class TokenStages:
    """One candidate token across the pipeline."""

    token_id: int
    text: str
    rank: int  # 1-based rank in the raw (model) distribution
    probs: dict[str, float]  # stage name -> probability after that stage (0 once cut)
    cut_by: str | None  # the stage that removed it, None if it survives to the final distribution


@dataclass(frozen=True)
class ChosenToken:
    """The token one seeded draw picks: the same token generation's first step picks."""

    token_id: int
    text: str
    rank: int  # 1-based, raw distribution
    raw_prob: float
    final_prob: float


@dataclass(frozen=True)
class NextTokenView:
    """Everything the stage chart and the numbers beside it show, for one prompt and one setting."""

    settings: SamplingSettings
    vocab_size: int
    tokens: tuple[TokenStages, ...]  # sorted by probability after the repetition penalty
    active_stages: tuple[str, ...]
    entropy_bits: dict[str, float]  # per stage
    kept: dict[str, int]  # tokens still possible after each stage
    nucleus_size: int  # tokens left after the top-p stage
    mass_kept: float  # share of the (penalised, temperature-scaled) mass that the filters keep
    chosen: ChosenToken
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = asdict(self.settings)
        data["stages"] = list(STAGE_NAMES)
        return data


def token_text(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([int(token_id)], skip_special_tokens=False)


def raw_ranks(logits: torch.Tensor, token_ids: list[int]) -> list[int]:
    """1-based rank of each token in logits [vocab] (ties share the better rank)."""
    chosen = logits[torch.tensor(token_ids, dtype=torch.long)]  # [n]
    return ((logits[None, :] > chosen[:, None]).sum(dim=-1) + 1).tolist()  # [n, vocab] compare -> [n]


def _candidate_ids(probs: torch.Tensor, top_n: int) -> list[int]:
    """The top_n tokens after the repetition penalty, plus raw top_n tokens the penalty pushed down,
    sorted by probability after the penalty. Every filter keeps a prefix of that order, so the
    chart shows every surviving token that ranks in the top_n. probs: [stages, vocab]."""
    raw, penalised = probs[STAGE_NAMES.index("raw")], probs[STAGE_NAMES.index("repetition_penalty")]
    top_n = min(top_n, raw.shape[-1])
    ids = set(torch.topk(penalised, top_n).indices.tolist()) | set(torch.topk(raw, top_n).indices.tolist())
    return sorted(ids, key=lambda i: (-float(penalised[i]), i))


def next_token_view(
    logits: torch.Tensor,
    settings: SamplingSettings,
    tokenizer: Any,
    previous_ids: torch.Tensor | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> NextTokenView:
    """The pipeline applied to one next-token distribution. logits: [vocab] raw model logits;
    previous_ids: [n] the prompt (what the repetition penalty looks at)."""
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise SamplingSettingsError(f"the number of tokens to show must be a whole number >= 1, got {shown(top_n)}")
    logits = logits.float().cpu()
    vocab_size = logits.shape[-1]
    probs, cut = stage_probabilities(logits, settings, previous_ids)  # [stages, vocab], [vocab]
    final = probs[-1]
    ids = _candidate_ids(probs, top_n)
    chosen_id = sample_next_token(logits, settings, settings.generator(), previous_ids)
    ranks = raw_ranks(logits, ids + [chosen_id])
    columns = probs[:, ids].T.tolist()  # [candidates, stages]
    tokens = tuple(
        TokenStages(i, token_text(tokenizer, i), rank, dict(zip(STAGE_NAMES, column)),
                    STAGE_NAMES[int(cut[i])] if int(cut[i]) >= 0 else None)
        for i, rank, column in zip(ids, ranks, columns)
    )
    chosen = ChosenToken(chosen_id, token_text(tokenizer, chosen_id), ranks[-1], float(probs[0, chosen_id]),
                         float(final[chosen_id]))
    # kept after stage i: tokens never cut, or cut by a later stage.
    kept = {name: int((cut < 0).sum() + (cut > index).sum()) for index, name in enumerate(STAGE_NAMES)}
    return NextTokenView(
        settings=settings,
        vocab_size=vocab_size,
        tokens=tokens,
        active_stages=tuple(name for name in STAGE_NAMES if stage_is_active(name, settings, vocab_size)),
        entropy_bits=dict(zip(STAGE_NAMES, entropy_bits(probs))),
        kept=kept,
        nucleus_size=kept["top_p"],
        mass_kept=float(probs[STAGE_NAMES.index("temperature")][cut < 0].double().sum()),
        chosen=chosen,
        notes=settings_notes(settings, vocab_size),
    )


@dataclass(frozen=True)
class SweepPanel:
    temperature: float
    entropy_bits: float
    kept: int  # tokens with non-zero final probability
    probs: tuple[float, ...]  # final probability of each of the sweep's tokens
    other_mass: float  # final probability of every other token together


@dataclass(frozen=True)
class TemperatureSweep:
    token_ids: tuple[int, ...]
    texts: tuple[str, ...]
    panels: tuple[SweepPanel, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def temperature_sweep(
    logits: torch.Tensor,
    settings: SamplingSettings,
    tokenizer: Any,
    previous_ids: torch.Tensor | None = None,
    temperatures: tuple[float, ...] = SWEEP_TEMPERATURES,
    top_n: int = 8,
) -> TemperatureSweep:
    """The final distribution at several temperatures, every other setting unchanged.

    The tokens are the same in every panel (the top_n after the repetition penalty; temperature
    never reorders tokens), so the panels compare like with like.
    """
    logits = logits.float().cpu()
    penalised = apply_repetition_penalty(logits, previous_ids, settings.repetition_penalty)
    ids = torch.topk(penalised, min(top_n, logits.shape[-1])).indices  # [top_n]
    panels = []
    for temperature in temperatures:
        final = final_probabilities(logits, replace(settings, temperature=temperature), previous_ids)
        shown = final[ids]
        panels.append(SweepPanel(temperature, entropy_bits(final), int((final > 0).sum()),
                                 tuple(shown.tolist()), max(0.0, 1.0 - float(shown.double().sum()))))
    return TemperatureSweep(tuple(ids.tolist()), tuple(token_text(tokenizer, i) for i in ids.tolist()), tuple(panels))


# -- drawing many samples, and checking them against the distribution --------------------------


def draw_samples(probs: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n independent draws (with replacement) from one distribution probs [vocab] -> ids [n].

    The same distribution `sample_from` draws one token from; drawing n at once avoids
    expanding probs to [n, vocab] (1000 x 49k rows would take a second).
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise SamplingSettingsError(f"number of samples must be a whole number in 1..{MAX_SAMPLES}, got {shown(n)}")
    return torch.multinomial(probs.float().cpu(), n, replacement=True, generator=generator)


@dataclass(frozen=True)
class ChiSquare:
    """Pearson's goodness-of-fit test of counts against a distribution, on pooled bins."""

    statistic: float
    dof: int
    p_value: float
    bins: int
    smallest_expected: float = 0.0  # the least expected count of any bin: under ~5 the approximation is rough


def _equal_mass_bins(expected: list[float], observed: list[float], floor: float) -> tuple[list[float], list[float]]:
    """Consecutive tokens (most likely first) pooled until a bin expects at least `floor` draws; a short last
    bin joins the one before."""
    bins_expected: list[float] = []
    bins_observed: list[float] = []
    current_e = current_o = 0.0
    for e, o in zip(expected, observed):
        current_e += e
        current_o += o
        if current_e >= floor:
            bins_expected.append(current_e)
            bins_observed.append(current_o)
            current_e = current_o = 0.0
    if current_e > 0 or current_o > 0:
        if bins_expected:
            bins_expected[-1] += current_e
            bins_observed[-1] += current_o
        else:
            bins_expected.append(current_e)
            bins_observed.append(current_o)
    return bins_expected, bins_observed


def chi_square_test(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> ChiSquare | None:
    """counts [vocab] (observed draws) vs probs [vocab]. Tokens expected fewer than min_expected times
    are pooled into one bin (the test's approximation needs ~5 per bin); None only when one token is
    possible (e.g. a greedy one-hot, which has nothing to test).

    When that pooling leaves one bin (a flat distribution over many tokens: at T = 2.5 ~31k tokens, none
    expected 5 times in 1,000 draws), the tokens are pooled in probability order into bins that each expect
    at least min_expected draws; with fewer than 2 · min_expected draws even that leaves one bin, so the
    floor is lowered to two bins of about half the draws each (the most likely tokens, the rest), and
    `smallest_expected` says how rough the approximation is. Bins depend on the distribution only, never
    on the draws, so the test stays valid."""
    n = float(counts.sum())
    expected = probs.double().cpu() / probs.double().sum() * n
    observed = counts.double().cpu()
    order = torch.argsort(expected, descending=True)
    expected, observed = expected[order], observed[order]
    possible = int((expected > 0).sum())
    big = int((expected >= min_expected).sum())
    bins_expected, bins_observed = list(expected[:big].tolist()), list(observed[:big].tolist())
    rest_expected, rest_observed = float(expected[big:].sum()), float(observed[big:].sum())
    if rest_expected >= min_expected or not bins_expected:
        bins_expected.append(rest_expected)
        bins_observed.append(rest_observed)
    elif rest_expected > 0:  # too small to stand alone: fold into the smallest kept bin
        bins_expected[-1] += rest_expected
        bins_observed[-1] += rest_observed
    if sum(e > 0 for e in bins_expected) < 2 and possible >= 2:
        kept_expected, kept_observed = expected[:possible].tolist(), observed[:possible].tolist()
        leftover = float(observed[possible:].sum())  # draws of impossible tokens (a wrong sampler) count too
        kept_observed[-1] += leftover
        bins_expected, bins_observed = _equal_mass_bins(kept_expected, kept_observed, min_expected)
        if len(bins_expected) < 2:  # too few draws: the most likely tokens up to about half, against the rest
            cumulative = torch.cumsum(torch.tensor(kept_expected, dtype=torch.float64), 0)[:-1]
            split = int(torch.argmin((cumulative - n / 2).abs())) + 1  # 1 .. possible - 1 tokens in the first bin
            bins_expected = [sum(kept_expected[:split]), sum(kept_expected[split:])]
            bins_observed = [sum(kept_observed[:split]), sum(kept_observed[split:])]
    pairs = [(o, e) for o, e in zip(bins_observed, bins_expected) if e > 0]
    if len(pairs) < 2:
        return None
    statistic = sum((o - e) ** 2 / e for o, e in pairs)
    dof = len(pairs) - 1
    # Chi-square survival function: the regularised upper incomplete gamma Q(dof/2, x/2).
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                            torch.tensor(statistic / 2, dtype=torch.float64)))
    return ChiSquare(statistic, dof, p_value, len(pairs), min(e for _, e in pairs))


@dataclass(frozen=True)
class SampleHistogram:
    n: int
    seed: int | None
    token_ids: tuple[int, ...]  # the most likely tokens of the final distribution
    texts: tuple[str, ...]
    expected: tuple[float, ...]  # their final probabilities
    counts: tuple[int, ...]  # how often each was drawn
    other_expected: float  # every other token together
    other_count: int
    distinct_drawn: int
    chi_square: ChiSquare | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_histogram(probs: torch.Tensor, n: int, tokenizer: Any, seed: int | None = None,
                     top_n: int = DEFAULT_TOP_N) -> SampleHistogram:
    """Draw n tokens from the final distribution probs [vocab] and count them."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    drawn = draw_samples(probs, n, generator)  # [n]
    counts = torch.bincount(drawn, minlength=probs.shape[-1])  # [vocab]
    probs = probs.float().cpu()
    shown = min(top_n, int((probs > 0).sum()))
    ids = torch.topk(probs, shown).indices
    expected = probs[ids]
    return SampleHistogram(
        n=n, seed=seed, token_ids=tuple(ids.tolist()), texts=tuple(token_text(tokenizer, i) for i in ids.tolist()),
        expected=tuple(expected.tolist()), counts=tuple(counts[ids].tolist()),
        other_expected=max(0.0, 1.0 - float(expected.double().sum())), other_count=n - int(counts[ids].sum()),
        distinct_drawn=int((counts > 0).sum()), chi_square=chi_square_test(counts, probs),
    )

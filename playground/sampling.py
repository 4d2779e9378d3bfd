"""Next-token sampling, stage by stage: logits -> repetition penalty -> temperature -> top-k -> top-p
-> min-p -> softmax -> draw.

This is the app's one sampling pipeline: the generation loop, the sampling tab and speculative
decoding all call it. Each stage is a pure function over logits of shape [..., vocab] that masks cut
tokens with -inf, with the same semantics as transformers' logits processors (tests check that).

Below the stages sit what the Sampling tab shows, all computed from the same functions: the
distribution after every stage (`next_token_view`), a temperature sweep, many draws with a
chi-square check (`sample_histogram`), the prompt's logits cached per prompt (`PromptLogitsCache`),
and step-through generation traces with branching (`trace_generation`, `branch_trace`), which run
the app's one generation loop (`playground.generation.generate_tokens`).

Tiny worked example (vocabulary of 4):

    >>> import torch
    >>> logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    >>> apply_top_k(logits, 2)
    tensor([2., 1., -inf, -inf])
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from playground.limits import LIMITS

NEG_INF = float("-inf")


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
                raise SamplingSettingsError(f"{name} must be a finite number, got {value!r}")

        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            finite(name, getattr(self, name))
        if self.temperature < 0:
            raise SamplingSettingsError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise SamplingSettingsError(f"top_k must be a whole number >= 0 (0 = off), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise SamplingSettingsError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise SamplingSettingsError(f"min_p must be in [0, 1] (0 = off), got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise SamplingSettingsError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise SamplingSettingsError(f"seed must be a whole number >= 0, got {self.seed!r}")

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

    Implemented like transformers: sort ascending and drop the low tail whose cumulative
    probability is <= 1 - p; the most likely token always stays.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_indices = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_remove = cumulative <= (1 - top_p)
    sorted_remove[..., -1:] = False
    remove = sorted_remove.scatter(-1, sorted_indices, sorted_remove)
    return logits.masked_fill(remove, NEG_INF)


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
    if settings.is_greedy:
        # Same result as drawing from the one-hot, without spending a random number.
        return int(apply_repetition_penalty(logits.float(), previous_ids, settings.repetition_penalty).argmax())
    # Draw on the CPU with a CPU generator, so a seed replays the same tokens on any device.
    probs = final_probabilities(logits, settings, previous_ids).cpu()
    return int(sample_from(probs, generator))


# ---------------------------------------------------------------------------------------------
# What the sampling tab shows: the pipeline stage by stage, samples, a temperature sweep, traces
# ---------------------------------------------------------------------------------------------

MAX_PROMPT_TOKENS = LIMITS.sampling_prompt_tokens  # longer prompts keep their last 512 tokens (prefill stays ~1-2 s on CPU)
MAX_SAMPLES = LIMITS.samples
MAX_TRACE_TOKENS = LIMITS.sampling_new_tokens
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
        raise SamplingSettingsError(f"the number of tokens to show must be a whole number >= 1, got {top_n!r}")
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
        raise SamplingSettingsError(f"number of samples must be a whole number in 1..{MAX_SAMPLES}, got {n!r}")
    return torch.multinomial(probs.float().cpu(), n, replacement=True, generator=generator)


@dataclass(frozen=True)
class ChiSquare:
    """Pearson's goodness-of-fit test of counts against a distribution, on pooled bins."""

    statistic: float
    dof: int
    p_value: float
    bins: int


def chi_square_test(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> ChiSquare | None:
    """counts [vocab] (observed draws) vs probs [vocab]. Tokens expected fewer than min_expected times
    are pooled into one bin (the test's approximation needs ~5 per bin); None when fewer than two
    bins remain (e.g. a greedy one-hot, which has nothing to test)."""
    n = float(counts.sum())
    expected = probs.double().cpu() / probs.double().sum() * n
    observed = counts.double().cpu()
    order = torch.argsort(expected, descending=True)
    expected, observed = expected[order], observed[order]
    big = int((expected >= min_expected).sum())
    bins_expected, bins_observed = list(expected[:big].tolist()), list(observed[:big].tolist())
    rest_expected, rest_observed = float(expected[big:].sum()), float(observed[big:].sum())
    if rest_expected >= min_expected or not bins_expected:
        bins_expected.append(rest_expected)
        bins_observed.append(rest_observed)
    elif rest_expected > 0:  # too small to stand alone: fold into the smallest kept bin
        bins_expected[-1] += rest_expected
        bins_observed[-1] += rest_observed
    pairs = [(o, e) for o, e in zip(bins_observed, bins_expected) if e > 0]
    if len(pairs) < 2:
        return None
    statistic = sum((o - e) ** 2 / e for o, e in pairs)
    dof = len(pairs) - 1
    # Chi-square survival function: the regularised upper incomplete gamma Q(dof/2, x/2).
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                            torch.tensor(statistic / 2, dtype=torch.float64)))
    return ChiSquare(statistic, dof, p_value, len(pairs))


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


# -- the prompt's logits, cached so sliders never wait for the model ----------------------------


def encode_capped_prompt(tokenizer: Any, prompt: str, chat: bool,
                         max_tokens: int = MAX_PROMPT_TOKENS) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Prompt -> input ids [1, n], keeping only the last max_tokens tokens of a long prompt text
    (the end is what the next token depends on most); the chat template is applied after the cut,
    so it stays whole."""
    from playground.generation import encode_prompt  # generation imports this module: import late

    if not prompt.strip():
        raise SamplingSettingsError("The prompt is empty: type something for the model to continue.")
    notes: tuple[str, ...] = ()
    text_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(text_ids) > max_tokens:
        prompt = tokenizer.decode(text_ids[-max_tokens:])
        notes = (f"The prompt is {len(text_ids)} tokens long; only its last {max_tokens} tokens are used.",)
    return encode_prompt(tokenizer, prompt, chat=chat), notes


@dataclass(frozen=True)
class PromptLogits:
    input_ids: torch.Tensor  # [1, n] what the model saw (chat template applied, long prompts cut)
    logits: torch.Tensor  # [vocab] float32 cpu: the raw next-token logits after the prompt
    notes: tuple[str, ...]


class PromptLogitsCache:
    """A small LRU of prompt -> next-token logits, keyed by (model key, prompt, chat flag).

    The logits come from the first step of `generate_tokens` (the same prefill a trace starts with),
    so the next-token view and the trace's first step agree to the bit.
    """

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[Any, str, bool], PromptLogits] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, model_key: Any, model: Any, tokenizer: Any, prompt: str, chat: bool,
            lock: Any = None) -> PromptLogits:
        key = (model_key, prompt, bool(chat))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        entry = compute_prompt_logits(model, tokenizer, prompt, chat, lock)  # outside the cache lock
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry


def compute_prompt_logits(model: Any, tokenizer: Any, prompt: str, chat: bool, lock: Any = None) -> PromptLogits:
    from playground.generation import generate_tokens

    input_ids, notes = encode_capped_prompt(tokenizer, prompt, chat)
    first = next(generate_tokens(model, tokenizer, input_ids, SamplingSettings(temperature=0.0), 1,
                                 lock=lock, keep_logits=True))
    return PromptLogits(input_ids, first.logits, notes)


# -- step-through generation: what was chosen at each step, and what else could have been -------


@dataclass(frozen=True)
class Alternative:
    token_id: int
    text: str
    prob: float  # final (sampling) probability
    raw_prob: float  # the model's own probability (T = 1, no filter)
    rank: int  # 1-based, raw distribution


@dataclass(frozen=True)
class TraceStep:
    index: int  # position in the continuation
    token_id: int
    text: str  # what this token added to the output
    prob: float  # final probability of the chosen token: what it was drawn with
    raw_prob: float  # the model's probability of it
    rank: int  # its 1-based rank in the raw distribution
    entropy_bits: float  # of the final distribution
    alternatives: tuple[Alternative, ...]  # the most likely tokens at this step (final, then raw order)
    forced: bool = False  # substituted by the user ("force this token")
    finish_reason: str | None = None


@dataclass(frozen=True)
class GenerationTrace:
    model_key: str
    settings: SamplingSettings
    max_new_tokens: int
    prompt_ids: tuple[int, ...]
    steps: tuple[TraceStep, ...]
    text: str
    finish_reason: str
    seconds: float

    @property
    def token_ids(self) -> list[int]:
        return [step.token_id for step in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationTrace:
        """Rebuild a trace from its JSON (what the API returns), e.g. to branch from it."""
        try:
            steps = tuple(
                TraceStep(**{**step, "alternatives": tuple(Alternative(**alt) for alt in step["alternatives"])})
                for step in data["steps"]
            )
            return cls(**{**data, "settings": SamplingSettings(**data["settings"]),
                          "prompt_ids": tuple(int(i) for i in data["prompt_ids"]), "steps": steps})
        except (KeyError, TypeError) as error:
            raise SamplingSettingsError(f"This is not a generation trace from generate_trace ({error}).") from error


def _top_by_final_then_raw(final: torch.Tensor, raw: torch.Tensor, top_n: int) -> list[int]:
    top_n = min(top_n, final.shape[-1])
    ids = set(torch.topk(final, top_n).indices.tolist()) | set(torch.topk(raw, top_n).indices.tolist())
    return sorted(ids, key=lambda i: (-float(final[i]), -float(raw[i]), i))[:top_n]


def analyse_step(logits: torch.Tensor, token_id: int, text: str, index: int, settings: SamplingSettings,
                 history: torch.Tensor, tokenizer: Any, top_n: int = 10,
                 finish_reason: str | None = None) -> TraceStep:
    """One generated token against the distribution it was drawn from. logits: [vocab] raw;
    history: [n] prompt + tokens before this one (what the repetition penalty saw)."""
    final = final_probabilities(logits, settings, history)  # [vocab]
    raw = logits.float().softmax(dim=-1)
    shown = _top_by_final_then_raw(final, raw, top_n)
    ranks = dict(zip(shown + [token_id], raw_ranks(logits, shown + [token_id])))
    alternatives = tuple(Alternative(i, token_text(tokenizer, i), float(final[i]), float(raw[i]), ranks[i])
                         for i in shown)
    return TraceStep(index, token_id, text, float(final[token_id]), float(raw[token_id]), ranks[token_id],
                     entropy_bits(final), alternatives, finish_reason=finish_reason)


def _check_trace_length(max_new_tokens: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_TRACE_TOKENS:
        raise SamplingSettingsError(f"max_new_tokens must be a whole number in 1..{MAX_TRACE_TOKENS}, "
                                    f"got {max_new_tokens!r}")


def trace_generation(
    model: Any,
    tokenizer: Any,
    prompt_ids: torch.Tensor,
    settings: SamplingSettings,
    max_new_tokens: int,
    eos_token_ids: tuple[int, ...] = (),
    lock: Any = None,
    model_key: str = "",
    top_n: int = 10,
    prefix: tuple[TraceStep, ...] = (),
) -> GenerationTrace:
    """Generate with the app's one loop (`generate_tokens`, logits kept) and record every step.

    prompt_ids: [1, n]. `prefix` are steps already decided (a branch's kept steps and its forced
    token): generation continues after them, for max_new_tokens minus their count.
    """
    from playground.generation import generate_tokens  # generation imports this module: import late

    _check_trace_length(max_new_tokens)
    started = time.perf_counter()
    history = prompt_ids[0].tolist() + [step.token_id for step in prefix]
    steps = list(prefix)
    remaining = max_new_tokens - len(prefix)
    if remaining > 0 and (not prefix or prefix[-1].finish_reason is None):
        for generated in generate_tokens(model, tokenizer, torch.tensor([history]), settings, remaining,
                                         eos_token_ids, lock=lock, keep_logits=True):
            steps.append(analyse_step(generated.logits, generated.token_id, generated.text,
                                      len(prefix) + generated.index, settings, torch.tensor(history), tokenizer,
                                      top_n, generated.finish_reason))
            history.append(generated.token_id)
    return _finish_trace(model_key, settings, max_new_tokens, prompt_ids, steps, tokenizer, eos_token_ids,
                         time.perf_counter() - started)


def _finish_trace(model_key: str, settings: SamplingSettings, max_new_tokens: int, prompt_ids: torch.Tensor,
                  steps: list[TraceStep], tokenizer: Any, eos_token_ids: tuple[int, ...],
                  seconds: float) -> GenerationTrace:
    ids = [step.token_id for step in steps]
    if ids and ids[-1] in set(eos_token_ids):
        ids = ids[:-1]  # the turn's end marker is not part of the text
    finish = steps[-1].finish_reason if steps and steps[-1].finish_reason else "length"
    return GenerationTrace(model_key, settings, max_new_tokens, tuple(prompt_ids[0].tolist()), tuple(steps),
                           tokenizer.decode(ids, skip_special_tokens=False), finish, seconds)


def branch_trace(
    model: Any,
    tokenizer: Any,
    trace: GenerationTrace,
    position: int,
    token_id: int,
    eos_token_ids: tuple[int, ...] = (),
    lock: Any = None,
    top_n: int = 10,
) -> GenerationTrace:
    """Rewind `trace` to `position`, put `token_id` (one of that step's alternatives) there instead,
    and continue with the same settings and seed through the same generation loop."""
    if not 0 <= position < len(trace.steps):
        raise SamplingSettingsError(f"position must be in 0..{len(trace.steps) - 1} (a step of this trace), "
                                    f"got {position}")
    step = trace.steps[position]
    alternative = next((alt for alt in step.alternatives if alt.token_id == token_id), None)
    if alternative is None:
        listed = ", ".join(str(alt.token_id) for alt in step.alternatives)
        raise SamplingSettingsError(f"token {token_id} is not one of step {position}'s alternatives ({listed}); "
                                    "pick one of those.")
    is_last = token_id in set(eos_token_ids) or position + 1 >= trace.max_new_tokens
    finish = ("eos" if token_id in set(eos_token_ids) else "length") if is_last else None
    forced = replace(step, token_id=token_id, text=alternative.text, prob=alternative.prob,
                     raw_prob=alternative.raw_prob, rank=alternative.rank, forced=True, finish_reason=finish)
    return trace_generation(model, tokenizer, torch.tensor([trace.prompt_ids]), trace.settings,
                            trace.max_new_tokens, eos_token_ids, lock, trace.model_key, top_n,
                            prefix=trace.steps[:position] + (forced,))

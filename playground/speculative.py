"""Exact speculative sampling (Leviathan et al. 2023; Chen et al. 2023), one step at a time, with a
record of every decision.

One step, with a draft and a target that share the tokenizer:

1. the draft proposes d <= k tokens x_1..x_d, each drawn from its own distribution q_i;
2. the target runs ONCE over the new tokens (its KV cache holds the rest) and returns p_1..p_{d+1},
   its distributions after each prefix;
3. for i = 1..d: draw u ~ U[0, 1) and accept x_i if u < min(1, p_i(x_i) / q_i(x_i)); at the first
   rejection, draw the replacement from normalize(max(0, p_i - q_i)) and stop;
4. if all d were accepted, draw a bonus token from p_{d+1}.

Then both KV caches are cropped back to the accepted prefix. Temperature, top-k, top-p, min-p and
the repetition penalty shape p and q through the app's one sampling pipeline (playground/sampling_pipeline.py);
greedy (T = 0) makes both one-hot, so a draft token is accepted exactly when it is the target's argmax.

Why the output is exactly the target's, for one position: P(emit y) = q(y) min(1, p(y)/q(y)) +
P(reject) r(y) = min(p(y), q(y)) + max(0, p(y) - q(y)) = p(y), because P(reject) = 1 - sum min(p, q)
= sum max(0, p - q), the normaliser of r.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import torch

from playground.drafts import CachedModel, Draft, Proposal, SpeculativeError, draw_token, penalty_history
from playground.generation import GeneratedToken, encode_prompt, generate_tokens
from playground.sampling_pipeline import SamplingSettings, final_probabilities
from playground.limits import LIMITS, shown

MAX_K = LIMITS.speculative_k
MAX_NEW_TOKENS = LIMITS.speculative_new_tokens
MAX_PROMPT_TOKENS = LIMITS.speculative_prompt_tokens  # longer prompts keep their last 1024 tokens (prefill stays a few seconds on CPU)
RESIDUAL_TOP = 5  # how many of the residual distribution's top tokens a rejection records

OUTCOMES = ("accepted", "rejected", "unchecked")  # a drafted token's fate; "unchecked": after a rejection
FINAL_KINDS = ("resampled", "bonus")  # where a step's last token came from


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftedToken:
    position: int  # 1..d within its step
    token_id: int
    text: str
    q: float  # the draft's probability of this token
    p: float  # the target's probability of this token, after the same prefix
    accept_probability: float  # min(1, p / q)
    draw: float | None  # the uniform u it was checked with; None when unchecked
    outcome: str  # one of OUTCOMES


@dataclass(frozen=True)
class ResidualToken:
    token_id: int
    text: str
    probability: float  # in normalize(max(0, p - q))
    p: float
    q: float


@dataclass(frozen=True)
class SpeculativeStep:
    index: int  # 0-based
    context_length: int  # prompt + generated tokens before this step
    drafted: tuple[DraftedToken, ...]
    accepted: int  # how many drafted tokens were accepted (a prefix of `drafted`)
    final_token_id: int | None  # the resampled or bonus token; None when an accepted end-of-turn ended the text
    final_text: str
    final_kind: str | None  # one of FINAL_KINDS
    final_probability: float | None  # its probability in the distribution it was drawn from
    residual_top: tuple[ResidualToken, ...]  # only after a rejection
    emitted: tuple[int, ...]  # the tokens this step added: the accepted drafts, then the final token
    draft_seconds: float
    target_seconds: float
    seconds: float  # the whole step, bookkeeping included
    draft_forwards: int
    finish_reason: str | None  # set on the last step: eos | length | cancelled


@dataclass(frozen=True)
class SpeculativeRun:
    draft: str
    k: int
    prompt_length: int
    token_ids: tuple[int, ...]
    text: str
    finish_reason: str
    steps: tuple[SpeculativeStep, ...]
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def check_request(k: int, max_new_tokens: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise SpeculativeError(f"k (draft tokens per step) must be a whole number in 1..{MAX_K}, got {shown(k)}")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise SpeculativeError(f"max_new_tokens must be a whole number in 1..{MAX_NEW_TOKENS}, got {shown(max_new_tokens)}")


def prepare_prompt(tokenizer: Any, prompt: str, chat: bool = True) -> tuple[list[int], tuple[str, ...]]:
    """Prompt text -> (token ids, notes). An empty prompt is refused; a long one keeps its end."""
    if not prompt or not prompt.strip():
        raise SpeculativeError("The prompt is empty: type a prompt (or pick an example) and run again.")
    ids = encode_prompt(tokenizer, prompt, chat=chat)[0].tolist()
    if len(ids) <= MAX_PROMPT_TOKENS:
        return ids, ()
    note = (f"The prompt has {len(ids)} tokens; only its last {MAX_PROMPT_TOKENS} are used, so the run stays "
            "a few seconds long on a CPU.")
    return ids[-MAX_PROMPT_TOKENS:], (note,)


# ---------------------------------------------------------------------------------------------
# One step: the target checks the proposal
# ---------------------------------------------------------------------------------------------


def _widen(probs: torch.Tensor, width: int) -> torch.Tensor:
    """Pad the vocabulary axis with zeros: models of one family may pad their embeddings differently."""
    missing = width - probs.shape[-1]
    return torch.nn.functional.pad(probs, (0, missing)) if missing > 0 else probs


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """normalize(max(0, p - q)): where the target wants more mass than the draft gave. p, q: [vocab].

    If p == q there is no residual, but then a rejection has probability 0; fall back to p so a
    float rounding in min(1, p/q) can never produce an invalid distribution.
    """
    residual = torch.clamp(p - q, min=0.0)
    total = residual.sum()
    return residual / total if total > 0 else p


def target_distributions(target: CachedModel, sequence: Sequence[int], drafts: Sequence[int],
                         settings: SamplingSettings) -> torch.Tensor:
    """One target forward over the uncached tokens + the drafts -> p [len(drafts) + 1, vocab].

    Row i is the target's next-token distribution after sequence + drafts[:i], through the same
    sampling pipeline as the draft's q (so greedy rows are one-hot).
    """
    to_feed = target.pending(sequence)  # usually just the last emitted token; the whole prompt at first
    logits = target.feed(to_feed + list(drafts), keep=len(drafts) + 1)  # [d + 1, vocab]
    history = list(sequence)
    rows = []
    for i in range(len(drafts) + 1):
        rows.append(final_probabilities(logits[i], settings, penalty_history(history + list(drafts[:i]), settings)))
    return torch.stack(rows)


def _decode(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def accept_or_resample(
    proposal: Proposal, p: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None, tokenizer: Any
) -> tuple[list[DraftedToken], int, int, str, float, tuple[ResidualToken, ...]]:
    """The accept/reject loop for one step. p: [d + 1, vocab] from the target; proposal.q: [d, vocab].

    Returns (drafted-token records, number accepted, final token, its kind, its probability,
    the residual's top tokens when a draft was rejected).
    """
    drafts = proposal.token_ids
    width = max(p.shape[-1], proposal.q.shape[-1]) if drafts else p.shape[-1]
    p = _widen(p, width)
    q = _widen(proposal.q, width) if drafts else proposal.q
    records: list[DraftedToken] = []
    for i, token in enumerate(drafts):
        p_token, q_token = float(p[i, token]), float(q[i, token])
        accept_probability = min(1.0, p_token / q_token)
        draw = float(torch.rand((), generator=generator))
        accepted = draw < accept_probability
        records.append(DraftedToken(i + 1, token, _decode(tokenizer, token), q_token, p_token, accept_probability,
                                    draw, "accepted" if accepted else "rejected"))
        if accepted:
            continue
        residual = residual_distribution(p[i], q[i])  # [vocab]
        final = draw_token(residual, settings, generator)
        top = torch.topk(residual, min(RESIDUAL_TOP, int((residual > 0).sum())))
        residual_top = tuple(ResidualToken(int(t), _decode(tokenizer, int(t)), float(r), float(p[i, t]), float(q[i, t]))
                             for r, t in zip(top.values, top.indices))
        for j in range(i + 1, len(drafts)):  # never looked at: the text already changed before them
            later = drafts[j]
            p_later, q_later = float(p[j, later]), float(q[j, later])
            records.append(DraftedToken(j + 1, later, _decode(tokenizer, later), q_later, p_later,
                                        min(1.0, p_later / q_later), None, "unchecked"))
        return records, i, final, "resampled", float(residual[final]), residual_top
    bonus = draw_token(p[len(drafts)], settings, generator)  # every draft accepted: the target's own next token
    return records, len(drafts), bonus, "bonus", float(p[len(drafts), bonus]), ()


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def speculative_steps(
    target: CachedModel,
    draft: Draft,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    settings: SamplingSettings = SamplingSettings(temperature=0.0),
    k: int = 4,
    max_new_tokens: int = 64,
    stop_ids: Sequence[int] = (),
    cancel: threading.Event | None = None,
) -> Iterator[SpeculativeStep]:
    """Yield one record per speculative step until an end-of-turn token, max_new_tokens or cancel.

    Each step emits 1..k+1 tokens for one target forward. Near the end the draft proposes fewer
    tokens, so the run never goes past max_new_tokens. Seeded settings replay the same run.
    """
    check_request(k, max_new_tokens)
    if not prompt_ids:
        raise SpeculativeError("The prompt has no tokens: type a prompt and run again.")
    generator = settings.generator()
    stops = frozenset(int(i) for i in stop_ids)
    sequence = list(prompt_ids)
    produced = 0
    index = 0
    while produced < max_new_tokens:
        if cancel is not None and cancel.is_set():
            return
        started = time.perf_counter()
        proposal = draft.propose(sequence, min(k, max_new_tokens - produced - 1), settings, generator, stops)
        target_started = time.perf_counter()
        p = target_distributions(target, sequence, proposal.token_ids, settings)  # [d + 1, vocab]
        records, accepted, final, kind, final_probability, residual_top = accept_or_resample(
            proposal, p, settings, generator, tokenizer)
        # Roll the target's cache back to the accepted prefix: the rejected drafts' keys/values go.
        target.crop(len(sequence) + accepted)
        target_seconds = time.perf_counter() - target_started
        emitted = list(proposal.token_ids[:accepted])
        ended_by_draft = any(token in stops for token in emitted)  # an accepted end-of-turn: nothing follows
        if ended_by_draft:
            emitted = emitted[: next(i for i, token in enumerate(emitted) if token in stops) + 1]
        else:
            emitted.append(final)
        sequence.extend(emitted)
        produced += len(emitted)
        finish = None
        if ended_by_draft or final in stops:
            finish = "eos"
        elif produced >= max_new_tokens:
            finish = "length"
        elif cancel is not None and cancel.is_set():
            finish = "cancelled"
        yield SpeculativeStep(
            index=index, context_length=len(sequence) - len(emitted), drafted=tuple(records), accepted=accepted,
            final_token_id=None if ended_by_draft else final,
            final_text="" if ended_by_draft else _decode(tokenizer, final),
            final_kind=None if ended_by_draft else kind,
            final_probability=None if ended_by_draft else final_probability,
            residual_top=residual_top, emitted=tuple(emitted), draft_seconds=proposal.seconds,
            target_seconds=target_seconds, seconds=time.perf_counter() - started, draft_forwards=proposal.forwards,
            finish_reason=finish,
        )
        if finish is not None:
            return
        index += 1


def collect_run(steps: Sequence[SpeculativeStep], tokenizer: Any, draft_label: str, k: int, prompt_length: int,
                stop_ids: Sequence[int] = ()) -> SpeculativeRun:
    """Put the step records together. The text leaves out a final end-of-turn token's text."""
    token_ids = [token for step in steps for token in step.emitted]
    shown = token_ids[:-1] if token_ids and token_ids[-1] in set(stop_ids) else token_ids
    finish = steps[-1].finish_reason if steps and steps[-1].finish_reason else "cancelled"
    return SpeculativeRun(draft_label, k, prompt_length, tuple(token_ids), tokenizer.decode(shown, skip_special_tokens=False),
                          finish, tuple(steps), sum(step.seconds for step in steps))


def speculative_generate(
    target: CachedModel,
    draft: Draft,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    settings: SamplingSettings = SamplingSettings(temperature=0.0),
    k: int = 4,
    max_new_tokens: int = 64,
    stop_ids: Sequence[int] = (),
    cancel: threading.Event | None = None,
) -> SpeculativeRun:
    """Run `speculative_steps` to the end and collect the records."""
    steps = list(speculative_steps(target, draft, tokenizer, prompt_ids, settings, k, max_new_tokens, stop_ids, cancel))
    return collect_run(steps, tokenizer, draft.label, k, len(prompt_ids), stop_ids)


# ---------------------------------------------------------------------------------------------
# Statistics: acceptance, and measured vs predicted speed-up
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionStats:
    position: int  # 1..k
    checked: int  # drafted tokens at this position that were checked
    accepted: int
    acceptance_rate: float  # accepted / checked
    mean_accept_probability: float  # mean min(1, p/q) over the checked ones


@dataclass(frozen=True)
class AcceptanceStats:
    steps: int
    drafted: int
    checked: int
    accepted: int
    alpha: float  # mean min(1, p/q) over checked drafts: the expected acceptance per token
    acceptance_rate: float  # accepted / checked (equals alpha under greedy)
    mean_drafted_per_step: float
    tokens_per_target_forward: float  # plain decoding: 1
    by_position: tuple[PositionStats, ...]
    accepted_length_counts: tuple[int, ...]  # [n] = steps that accepted exactly n drafts, n = 0..k
    draft_seconds: float
    target_seconds: float
    other_seconds: float  # bookkeeping: decoding token texts, building records


def acceptance_stats(run: SpeculativeRun) -> AcceptanceStats:
    checked = [token for step in run.steps for token in step.drafted if token.outcome != "unchecked"]
    by_position = []
    for position in range(1, run.k + 1):
        here = [token for token in checked if token.position == position]
        accepted = sum(token.outcome == "accepted" for token in here)
        by_position.append(PositionStats(position, len(here), accepted, accepted / len(here) if here else 0.0,
                                         sum(t.accept_probability for t in here) / len(here) if here else 0.0))
    counts = [0] * (run.k + 1)
    for step in run.steps:
        counts[step.accepted] += 1
    steps = max(len(run.steps), 1)
    accepted_total = sum(token.outcome == "accepted" for token in checked)
    draft_seconds = sum(step.draft_seconds for step in run.steps)
    target_seconds = sum(step.target_seconds for step in run.steps)
    return AcceptanceStats(
        steps=len(run.steps),
        drafted=sum(len(step.drafted) for step in run.steps),
        checked=len(checked),
        accepted=accepted_total,
        alpha=sum(token.accept_probability for token in checked) / len(checked) if checked else 0.0,
        acceptance_rate=accepted_total / len(checked) if checked else 0.0,
        mean_drafted_per_step=sum(len(step.drafted) for step in run.steps) / steps,
        tokens_per_target_forward=len(run.token_ids) / steps,
        by_position=tuple(by_position),
        accepted_length_counts=tuple(counts),
        draft_seconds=draft_seconds,
        target_seconds=target_seconds,
        other_seconds=max(0.0, run.seconds - draft_seconds - target_seconds),
    )


def expected_tokens_per_step(alpha: float, drafted: int) -> float:
    """E[tokens a step emits] when each of `drafted` tokens is accepted independently with
    probability alpha: 1 + alpha + ... + alpha^d = (1 - alpha^(d+1)) / (1 - alpha)."""
    if alpha >= 1.0:
        return drafted + 1.0
    return (1.0 - alpha ** (drafted + 1)) / (1.0 - alpha)


def predicted_speedup(alpha: float, k: int, cost_ratio: float) -> float:
    """Leviathan et al.'s expected speed-up over plain decoding: (1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)),
    with c = the time of one draft step / the time of one target step."""
    return expected_tokens_per_step(alpha, k) / (k * cost_ratio + 1.0)


def predicted_speedup_for_steps(alpha: float, drafted_per_step: Sequence[int], cost_ratio: float,
                                verify_cost_ratio: float = 1.0) -> float:
    """The same prediction with what a run really did: step s drafted d_s <= k tokens (prompt lookup
    finds nothing at times; the last steps draft fewer) and one check cost v plain steps (scoring
    k+1 tokens is not free on a CPU): sum E[tokens | d_s] / sum (d_s c + v). With d_s = k and v = 1
    this is `predicted_speedup`."""
    if not drafted_per_step:
        return 0.0
    tokens = sum(expected_tokens_per_step(alpha, d) for d in drafted_per_step)
    cost = sum(d * cost_ratio + verify_cost_ratio for d in drafted_per_step)
    return tokens / cost


def break_even_cost(alpha: float, k: int) -> float:
    """The draft cost ratio c below which the textbook formula predicts a win: E[tokens per step] / (k c + 1) > 1
    exactly when c < (E - 1) / k, i.e. the tokens a step gains beyond the one plain decoding makes must pay for k
    draft steps. alpha = 0 gives 0: no draft is cheap enough when nothing is accepted.

        >>> round(break_even_cost(0.5, 2), 3)  # E = 1 + 0.5 + 0.25 = 1.75
        0.375
    """
    return (expected_tokens_per_step(alpha, k) - 1.0) / k


@dataclass(frozen=True)
class PlainRun:
    """Plain decoding with the target through playground/generation.py: the race's baseline."""

    token_ids: tuple[int, ...]
    text: str
    seconds: float
    first_token_seconds: float  # the prompt's prefill and the first token

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_per_token(self) -> float:
        """One decoding step after the prefill: what the draft's cost is measured against."""
        later = len(self.token_ids) - 1
        return (self.seconds - self.first_token_seconds) / later if later > 0 else self.seconds


def plain_decode_steps(model: Any, tokenizer: Any, prompt_ids: Sequence[int], settings: SamplingSettings,
                       max_new_tokens: int, stop_ids: Sequence[int] = (), lock: Any = None
                       ) -> Iterator[tuple[GeneratedToken, float]]:
    """The race's baseline, token by token: (token, seconds spent producing it). Only the time inside
    the generation loop counts, so a caller that updates a page between tokens does not slow it down."""
    tokens = generate_tokens(model, tokenizer, torch.tensor([list(prompt_ids)]), settings, max_new_tokens, stop_ids,
                             lock=lock)
    while True:
        started = time.perf_counter()
        step = next(tokens, None)
        seconds = time.perf_counter() - started
        if step is None:
            return
        yield step, seconds


def collect_plain(steps: Sequence[tuple[GeneratedToken, float]]) -> PlainRun:
    """The text leaves out a final end-of-turn token's text, like `generate_text`."""
    return PlainRun(tuple(step.token_id for step, _ in steps),
                    "".join(step.text for step, _ in steps if step.finish_reason != "eos"),
                    sum(seconds for _, seconds in steps), steps[0][1] if steps else 0.0)


def plain_decode(model: Any, tokenizer: Any, prompt_ids: Sequence[int], settings: SamplingSettings,
                 max_new_tokens: int, stop_ids: Sequence[int] = (), lock: Any = None) -> PlainRun:
    return collect_plain(list(plain_decode_steps(model, tokenizer, prompt_ids, settings, max_new_tokens, stop_ids,
                                                 lock)))


@dataclass(frozen=True)
class SpeedReport:
    plain_tokens_per_second: float  # plain decoding of the same target, same precision
    speculative_tokens_per_second: float
    measured_speedup: float  # speculative tokens/s over plain tokens/s of the same target: what the draft buys
    alpha: float
    k: int
    cost_ratio: float  # c: draft seconds per drafted token / seconds per plain decoding step
    verify_cost_ratio: float  # v: seconds per target check of the drafts / seconds per plain decoding step
    predicted_speedup: float  # the textbook formula: (1 - alpha^(k+1)) / ((1 - alpha)(k c + 1))
    # fitted from this run: each step's real draft length and the measured v, with this run's alpha and c, so it
    # shares its inputs with the measurement (not an independent prediction)
    predicted_speedup_measured_costs: float
    same_tokens: bool  # greedy: must be True; sampling: the two runs draw different random numbers
    target_precision: str = ""  # e.g. fp32
    # The fastest plain decoding the app offers for this model on this device: plain decoding in the default
    # precision (auto: int4 on a CPU), same prompt and token count, measured in the same run; the target's
    # own plain decoding when the target already is in that precision.
    fastest_plain_precision: str = ""
    fastest_plain_tokens_per_second: float = 0.0
    speedup_vs_fastest_plain: float = 0.0  # speculative tokens/s over fastest plain tokens/s
    beats_fastest_plain: bool = False
    fastest_plain_is_target: bool = True


def cost_ratios(run: SpeculativeRun, plain: PlainRun) -> tuple[float, float]:
    """(c, v): draft seconds per drafted token and target seconds per check, each over the seconds of
    one plain decoding step. The first step is left out: it includes both models' prefill of the prompt."""
    later = run.steps[1:] or run.steps
    step_seconds = plain.seconds_per_token
    if not later or step_seconds <= 0:
        return 0.0, 1.0
    drafted = sum(len(step.drafted) for step in later)
    c = sum(step.draft_seconds for step in later) / drafted / step_seconds if drafted else 0.0
    v = sum(step.target_seconds for step in later) / len(later) / step_seconds
    return c, v


def speed_report(run: SpeculativeRun, plain: PlainRun, stats: AcceptanceStats, fastest: PlainRun | None = None,
                 fastest_precision: str = "", target_precision: str = "") -> SpeedReport:
    """Measured and predicted speed-ups. `plain` is plain decoding of the same target; `fastest` is plain
    decoding in the app's default precision for as many tokens as the speculative run made (None: the target
    already is in that precision, so `plain` is the fastest plain decoding)."""
    c, v = cost_ratios(run, plain)
    plain_tps = plain.tokens_per_second
    fastest_tps = plain_tps if fastest is None else fastest.tokens_per_second
    versus_fastest = run.tokens_per_second / fastest_tps if fastest_tps > 0 else 0.0
    return SpeedReport(
        plain_tokens_per_second=plain_tps,
        speculative_tokens_per_second=run.tokens_per_second,
        measured_speedup=run.tokens_per_second / plain_tps if plain_tps > 0 else 0.0,
        alpha=stats.alpha,
        k=run.k,
        cost_ratio=c,
        verify_cost_ratio=v,
        predicted_speedup=predicted_speedup(stats.alpha, run.k, c),
        predicted_speedup_measured_costs=predicted_speedup_for_steps(stats.alpha, [len(s.drafted) for s in run.steps],
                                                                     c, v),
        same_tokens=run.token_ids == plain.token_ids,
        target_precision=target_precision,
        fastest_plain_precision=target_precision if fastest is None else fastest_precision,
        fastest_plain_tokens_per_second=fastest_tps,
        speedup_vs_fastest_plain=versus_fastest,
        beats_fastest_plain=versus_fastest > 1.0,
        fastest_plain_is_target=fastest is None,
    )


@dataclass(frozen=True)
class SpeedVerdict:
    """Why a run was not faster than plain decoding of the same target (None from `speed_verdict` when it was).

    kind: "draft-too-slow" (c at or above the break-even cost for this alpha and k: the formula itself predicts a
    loss), or "overhead" (the formula predicts a win, but the check of k + 1 tokens cost v > 1 plain steps or the
    machine was busy: the measurement lost anyway)."""

    kind: str
    alpha: float
    k: int
    cost_ratio: float
    break_even_cost: float  # at this alpha and k
    best_k: int  # the k in 1..MAX_K the formula rates best at this alpha and c
    best_predicted_speedup: float
    verify_cost_ratio: float
    measured_speedup: float


def speed_verdict(speed: SpeedReport, max_k: int = MAX_K) -> SpeedVerdict | None:
    """Decide, from the run's own alpha, c and v, why speculation did not beat plain decoding of the same target."""
    if speed.measured_speedup > 1.0:
        return None
    best_k = max(range(1, max_k + 1), key=lambda k: predicted_speedup(speed.alpha, k, speed.cost_ratio))
    threshold = break_even_cost(speed.alpha, speed.k)
    kind = "draft-too-slow" if speed.cost_ratio >= threshold else "overhead"
    return SpeedVerdict(kind, speed.alpha, speed.k, speed.cost_ratio, threshold, best_k,
                        predicted_speedup(speed.alpha, best_k, speed.cost_ratio), speed.verify_cost_ratio,
                        speed.measured_speedup)


def report_json(run: SpeculativeRun, stats: AcceptanceStats, speed: SpeedReport | None = None,
                notes: Sequence[str] = (), plain: PlainRun | None = None,
                fastest: PlainRun | None = None) -> dict[str, Any]:
    """Everything as plain data (the `speculate` API's JSON): step records, stats, timings, speed-up.
    `fastest_plain` is plain decoding in the app's default precision (None when the target already is in it)."""
    def rounded(value: Any) -> Any:  # 6 decimals keep the JSON readable without hiding differences
        if isinstance(value, float):
            return round(value, 6) if math.isfinite(value) else None
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [rounded(item) for item in value]
        return value

    data = {
        "draft": run.draft,
        "k": run.k,
        "prompt_tokens": run.prompt_length,
        "generated_tokens": len(run.token_ids),
        "text": run.text,
        "token_ids": list(run.token_ids),
        "finish_reason": run.finish_reason,
        "seconds": run.seconds,
        "tokens_per_second": run.tokens_per_second,
        "stats": asdict(stats),
        "speed": asdict(speed) if speed is not None else None,
        "plain": None if plain is None else {"token_ids": list(plain.token_ids), "text": plain.text,
                                             "seconds": plain.seconds, "tokens_per_second": plain.tokens_per_second,
                                             "first_token_seconds": plain.first_token_seconds},
        "fastest_plain": None if fastest is None else {
            "precision": speed.fastest_plain_precision if speed is not None else "",
            "token_ids": list(fastest.token_ids), "seconds": fastest.seconds,
            "tokens_per_second": fastest.tokens_per_second, "first_token_seconds": fastest.first_token_seconds},
        "notes": list(notes),
        "steps": [asdict(step) for step in run.steps],
    }
    return rounded(data)

"""Step-through generation: what the one generation loop chose at each step, and what else it could
have chosen (`trace_generation`; `stream_trace` yields the trace after every token), and a branch that
forces one of those alternatives and continues with the same settings and seed (`branch_trace`,
`branch_prefix`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator

import torch

from playground.generation import generate_tokens
from playground.limits import LIMITS, LimitExceededError, shown
from playground.sampling.views import entropy_bits, raw_ranks, token_text
from playground.sampling_pipeline import SamplingSettings, SamplingSettingsError, final_probabilities

MAX_TRACE_TOKENS = LIMITS.sampling_new_tokens
MAX_ALTERNATIVES = 64  # alternatives a step may list (analyse_step shows top_n = 10)
GENERATING = "generating"  # a streamed trace's finish_reason until its last token


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


class TraceFieldError(SamplingSettingsError):
    """A field of a trace sent back by a client is missing, of the wrong type or out of range (named)."""


def _field(data: Any, key: str, path: str) -> Any:
    if not isinstance(data, dict):
        raise TraceFieldError(f"{path} must be a JSON object (a trace from generate_trace), got {type(data).__name__}.")
    if key not in data:
        raise TraceFieldError(f"{path}.{key} is missing: send back the trace generate_trace returned.")
    return data[key]


def _whole(value: Any, path: str, low: int, high: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise TraceFieldError(f"{path} must be a whole number, got {type(value).__name__}.")
    if not low <= value <= high:
        raise TraceFieldError(f"{path} is {int(value)}, {what or 'out of range'} ({low}..{high}).")
    return int(value)


def _token_id(value: Any, path: str, vocab_size: int) -> int:
    return _whole(value, path, 0, vocab_size - 1, "not a token id of this model")


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TraceFieldError(f"{path} must be a number, got {type(value).__name__}.")
    return float(value)


def _text(value: Any, path: str, optional: bool = False) -> Any:
    if (value is None and optional) or isinstance(value, str):
        return value
    raise TraceFieldError(f"{path} must be text, got {type(value).__name__}.")


def _items(value: Any, path: str, most: int, why: str = "", unit: str = "items") -> list[Any]:
    if not isinstance(value, (list, tuple)):  # JSON sends lists; asdict() in-process keeps tuples
        raise TraceFieldError(f"{path} must be a list, got {type(value).__name__}.")
    if len(value) > most:
        raise LimitExceededError(f"{path} has {len(value):,} {unit}; a trace from generate_trace has at most "
                                 f"{most:,}" + (f" ({why})." if why else "."))
    return list(value)


def trace_from_client(data: Any, vocab_size: int, max_prompt_tokens: int, max_new_tokens: int = MAX_TRACE_TOKENS,
                      name: str = "trace") -> GenerationTrace:
    """A trace sent back by a client (force_token's input), every field checked before any model work: the
    prompt within `max_prompt_tokens` (the prompt cut), the steps within its max_new_tokens (itself within
    `max_new_tokens`), every token id within the vocabulary, every number finite, every text text. A field
    that is wrong is named (`trace.steps[2].token_id ...`)."""
    settings_data = _field(data, "settings", name)
    if not isinstance(settings_data, dict):
        raise TraceFieldError(f"{name}.settings must be a JSON object, got {type(settings_data).__name__}.")
    try:
        settings = SamplingSettings(**settings_data)
    except TypeError as error:
        raise TraceFieldError(f"{name}.settings has a field SamplingSettings does not know ({error}).") from None
    limit = _whole(_field(data, "max_new_tokens", name), f"{name}.max_new_tokens", 1, max_new_tokens)
    prompt = _items(_field(data, "prompt_ids", name), f"{name}.prompt_ids", max_prompt_tokens,
                    "longer prompts are cut to their last tokens", "tokens")
    if not prompt:
        raise TraceFieldError(f"{name}.prompt_ids must not be empty.")
    prompt_ids = tuple(_token_id(value, f"{name}.prompt_ids[{i}]", vocab_size) for i, value in enumerate(prompt))
    raw_steps = _items(_field(data, "steps", name), f"{name}.steps", limit, "its max_new_tokens")
    steps = []
    for i, step in enumerate(raw_steps):
        path = f"{name}.steps[{i}]"
        alternatives = []
        for j, alt in enumerate(_items(_field(step, "alternatives", path), f"{path}.alternatives", MAX_ALTERNATIVES,
                                       "the most likely tokens of one step")):
            at = f"{path}.alternatives[{j}]"
            alternatives.append(Alternative(_token_id(_field(alt, "token_id", at), f"{at}.token_id", vocab_size),
                                            _text(_field(alt, "text", at), f"{at}.text"),
                                            _number(_field(alt, "prob", at), f"{at}.prob"),
                                            _number(_field(alt, "raw_prob", at), f"{at}.raw_prob"),
                                            _whole(_field(alt, "rank", at), f"{at}.rank", 1, vocab_size)))
        forced = step.get("forced", False)
        if not isinstance(forced, bool):
            raise TraceFieldError(f"{path}.forced must be true or false, got {type(forced).__name__}.")
        steps.append(TraceStep(_whole(_field(step, "index", path), f"{path}.index", 0, limit - 1),
                               _token_id(_field(step, "token_id", path), f"{path}.token_id", vocab_size),
                               _text(_field(step, "text", path), f"{path}.text"),
                               _number(_field(step, "prob", path), f"{path}.prob"),
                               _number(_field(step, "raw_prob", path), f"{path}.raw_prob"),
                               _whole(_field(step, "rank", path), f"{path}.rank", 1, vocab_size),
                               _number(_field(step, "entropy_bits", path), f"{path}.entropy_bits"),
                               tuple(alternatives), forced,
                               _text(step.get("finish_reason"), f"{path}.finish_reason", optional=True)))
    return GenerationTrace(_text(_field(data, "model_key", name), f"{name}.model_key"), settings, limit,
                           prompt_ids, tuple(steps), _text(_field(data, "text", name), f"{name}.text"),
                           _text(_field(data, "finish_reason", name), f"{name}.finish_reason"),
                           _number(_field(data, "seconds", name), f"{name}.seconds"))


def _top_by_final_then_raw(final: torch.Tensor, raw: torch.Tensor, top_n: int) -> tuple[list[int], list[float],
                                                                                       list[float]]:
    """The top_n token ids by (final probability, raw probability, id), with their final and raw probabilities.

    final, raw: [vocab]. Candidates are the top_n of each; their values are read in one gather each (not one
    tensor index per token), which returns the same float32 values as Python floats."""
    top_n = min(top_n, final.shape[-1])
    candidates = list(set(torch.topk(final, top_n).indices.tolist()) | set(torch.topk(raw, top_n).indices.tolist()))
    index = torch.tensor(candidates, dtype=torch.long)  # [candidates]
    final_of = dict(zip(candidates, final[index].tolist()))
    raw_of = dict(zip(candidates, raw[index].tolist()))
    shown = sorted(candidates, key=lambda i: (-final_of[i], -raw_of[i], i))[:top_n]
    return shown, [final_of[i] for i in shown], [raw_of[i] for i in shown]


RANK_WINDOW = 64  # raw ranks are counted among the top 64 logits when the token lies there (almost always)


def _raw_ranks(logits: torch.Tensor, token_ids: list[int]) -> list[int]:
    """1-based rank of each token in logits [vocab] (ties share the better rank), as `views.raw_ranks`.

    A token whose logit is at least the 64th highest has only higher logits among those 64 (anything outside
    them is <= the 64th), so its rank is counted there: a [tokens, 64] comparison instead of [tokens, vocab].
    The others (a sampled token far down the list) are counted over the whole vocabulary."""
    window = torch.topk(logits, min(RANK_WINDOW, logits.shape[-1])).values  # [64], descending
    chosen = logits[torch.tensor(token_ids, dtype=torch.long)]  # [tokens]
    inside = chosen >= window[-1]
    if not bool(inside.all()):
        return raw_ranks(logits, token_ids)
    return ((window[None, :] > chosen[:, None]).sum(dim=-1) + 1).tolist()


def analyse_step(logits: torch.Tensor, token_id: int, text: str, index: int, settings: SamplingSettings,
                 history: torch.Tensor, tokenizer: Any, top_n: int = 10,
                 finish_reason: str | None = None, token_texts: dict[int, str] | None = None,
                 final: torch.Tensor | None = None) -> TraceStep:
    """One generated token against the distribution it was drawn from. logits: [vocab] raw;
    history: [n] prompt + tokens before this one (what the repetition penalty saw). `token_texts` (id -> text)
    keeps the texts already decoded by earlier steps of a trace: consecutive steps list many of the same tokens.
    `final` is the final distribution [vocab] when the caller has it (the loop's, what the token was drawn from,
    computed by the same pipeline from the same logits and history); otherwise it is computed here."""
    if final is None:
        final = final_probabilities(logits, settings, history)  # [vocab]
    raw = logits.float().softmax(dim=-1)
    shown, final_probs, raw_probs = _top_by_final_then_raw(final, raw, top_n)
    ranks = dict(zip(shown + [token_id], _raw_ranks(logits, shown + [token_id])))
    texts = token_texts if token_texts is not None else {}
    for i in shown:
        if i not in texts:
            texts[i] = token_text(tokenizer, i)
    alternatives = tuple(Alternative(i, texts[i], final_prob, raw_prob, ranks[i])
                         for i, final_prob, raw_prob in zip(shown, final_probs, raw_probs))
    # A greedy step's final distribution is a one-hot, whose entropy is exactly 0.0 (what entropy_bits returns).
    entropy = 0.0 if settings.is_greedy else entropy_bits(final)
    chosen = torch.tensor([token_id], dtype=torch.long)
    return TraceStep(index, token_id, text, final[chosen].item(), raw[chosen].item(), ranks[token_id],
                     entropy, alternatives, finish_reason=finish_reason)


def _check_trace_length(max_new_tokens: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_TRACE_TOKENS:
        raise SamplingSettingsError(f"max_new_tokens must be a whole number in 1..{MAX_TRACE_TOKENS}, "
                                    f"got {shown(max_new_tokens)}")


def stream_trace(
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
) -> Iterator[GenerationTrace]:
    """Generate with the app's one loop (`generate_tokens`, logits kept), recording every step, and yield the
    trace so far after each new token (finish_reason "generating"), then the finished trace last.

    prompt_ids: [1, n]. `prefix` are steps already decided (a branch's kept steps and its forced
    token): generation continues after them, for max_new_tokens minus their count.
    """
    _check_trace_length(max_new_tokens)
    started = time.perf_counter()
    prompt = tuple(prompt_ids[0].tolist())
    start = list(prompt) + [step.token_id for step in prefix]
    steps = list(prefix)
    remaining = max_new_tokens - len(prefix)
    # history[:length] is prompt + tokens so far (what the repetition penalty sees): one buffer filled in place
    # instead of a new tensor from a growing list at every step. [prompt + prefix + remaining]
    history = torch.tensor(start + [0] * max(remaining, 0), dtype=torch.long)
    length = len(start)
    token_texts: dict[int, str] = {}  # id -> text, shared by the steps of this trace
    if remaining > 0 and (not prefix or prefix[-1].finish_reason is None):
        for generated in generate_tokens(model, tokenizer, torch.tensor([start]), settings, remaining,
                                         eos_token_ids, lock=lock, keep_logits=True):
            steps.append(analyse_step(generated.logits, generated.token_id, generated.text,
                                      len(prefix) + generated.index, settings, history[:length], tokenizer,
                                      top_n, generated.finish_reason, token_texts, generated.probs))
            history[length] = generated.token_id
            length += 1
            if generated.finish_reason is None:  # the last step is yielded once, finished, below
                yield _finish_trace(model_key, settings, max_new_tokens, prompt, steps, tokenizer, eos_token_ids,
                                    time.perf_counter() - started, GENERATING)
    yield _finish_trace(model_key, settings, max_new_tokens, prompt, steps, tokenizer, eos_token_ids,
                        time.perf_counter() - started)


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
    """The finished trace of `stream_trace` (same arguments)."""
    trace = None
    for trace in stream_trace(model, tokenizer, prompt_ids, settings, max_new_tokens, eos_token_ids, lock, model_key,
                              top_n, prefix):
        pass
    assert trace is not None  # stream_trace always yields the finished trace last
    return trace


def _finish_trace(model_key: str, settings: SamplingSettings, max_new_tokens: int, prompt: tuple[int, ...],
                  steps: list[TraceStep], tokenizer: Any, eos_token_ids: tuple[int, ...],
                  seconds: float, finish: str | None = None) -> GenerationTrace:
    ids = [step.token_id for step in steps]
    if ids and ids[-1] in set(eos_token_ids):
        ids = ids[:-1]  # the turn's end marker is not part of the text
    finish = finish or (steps[-1].finish_reason if steps and steps[-1].finish_reason else "length")
    return GenerationTrace(model_key, settings, max_new_tokens, prompt, tuple(steps),
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
    return trace_generation(model, tokenizer, torch.tensor([trace.prompt_ids]), trace.settings,
                            trace.max_new_tokens, eos_token_ids, lock, trace.model_key, top_n,
                            prefix=branch_prefix(trace, position, token_id, eos_token_ids))


def branch_prefix(trace: GenerationTrace, position: int, token_id: int,
                  eos_token_ids: tuple[int, ...] = ()) -> tuple[TraceStep, ...]:
    """The steps a branch keeps: `trace`'s steps before `position`, then `token_id` (one of that step's
    alternatives) forced there. Continue after them with `stream_trace(..., prefix=...)`."""
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
    return trace.steps[:position] + (forced,)

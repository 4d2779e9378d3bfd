"""Grounded answers: retrieved chunks become numbered context passages in a chat prompt, the model
answers through the app's one generation loop, and its [n] citations are mapped back to chunks.

"Lost in the middle" (Liu et al., 2023): models use a passage less when it sits in the middle of a
long context. `place_best` puts the best chunk first, in the middle or last so the effect can be seen.

    >>> place_best(["best", "b", "c", "d", "e"], "middle")
    ['b', 'c', 'best', 'd', 'e']
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence, TypeVar

from playground.engine.source import EngineTokenSource
from playground.generation import encode_prompt, generate_tokens
from playground.rag.chunking import Chunk
from playground.sampling_pipeline import SamplingSettings
from playground.limits import LIMITS

POSITIONS = ("first", "middle", "last")
CONTEXT_TOKEN_BUDGET = 1500  # prompt tokens spent on passages (prefill time grows with it on a CPU)
MAX_NEW_TOKENS = LIMITS.rag_new_tokens
UNKNOWN_REPLY = "I don't know"
STRICT_SYSTEM = ("Answer the question using only the numbered context passages. Cite the passages you use "
                 "by their numbers in square brackets, like [1]. If the passages do not contain the answer, "
                 f"reply exactly: {UNKNOWN_REPLY}.")
OPEN_SYSTEM = ("Answer the question. The numbered context passages may help; cite the ones you use by their "
               "numbers in square brackets, like [1].")
# Small models tend to go on by inventing a next "[n] (source: ...)" passage; stop them there.
STOP_STRINGS = ("(source:",)
GENERATING = "generating"  # a streamed answer's finish_reason until its last token
_CITATION_GROUP = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")

T = TypeVar("T")


class AnswerInputError(ValueError):
    """An answer setting is out of range; the message gives the allowed values."""


def place_best(items_best_first: Sequence[T], position: str) -> list[T]:
    """The best item moved to `position`; the others keep their order around it."""
    if position not in POSITIONS:
        raise AnswerInputError(f"position must be one of {POSITIONS}, got {position!r}")
    if not items_best_first:
        return []
    best, rest = items_best_first[0], list(items_best_first[1:])
    if position == "first":
        return [best, *rest]
    if position == "last":
        return [*rest, best]
    middle = len(rest) // 2
    return [*rest[:middle], best, *rest[middle:]]


def fit_budget(chunks_best_first: Sequence[Chunk], tokenizer: Any,
               budget: int = CONTEXT_TOKEN_BUDGET) -> tuple[list[Chunk], int]:
    """The best chunks whose texts fit in `budget` LLM tokens (always at least one), and how many were dropped."""
    kept: list[Chunk] = []
    used = 0
    for chunk in chunks_best_first:
        tokens = len(tokenizer.encode(chunk.text, add_special_tokens=False))
        if kept and used + tokens > budget:
            break
        kept.append(chunk)
        used += tokens
    return kept, len(chunks_best_first) - len(kept)


def grounded_messages(question: str, passages: Sequence[Chunk], strict: bool) -> list[dict[str, str]]:
    """System instruction + one user turn: the passages numbered from 1 in the given order, then the question."""
    context = "\n\n".join(f"[{number}] (source: {chunk.source})\n{chunk.text}"
                          for number, chunk in enumerate(passages, start=1))
    return [{"role": "system", "content": STRICT_SYSTEM if strict else OPEN_SYSTEM},
            {"role": "user", "content": f"Context passages:\n\n{context}\n\nQuestion: {question}"}]


def parse_citations(answer: str, passage_count: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(valid passage numbers in order of first citation, numbers cited that no passage has)."""
    cited: list[int] = []
    for group in _CITATION_GROUP.findall(answer):
        for number in re.findall(r"\d+", group):
            if int(number) not in cited:
                cited.append(int(number))
    valid = tuple(n for n in cited if 1 <= n <= passage_count)
    invalid = tuple(n for n in cited if not 1 <= n <= passage_count)
    return valid, invalid


@dataclass(frozen=True)
class Passage:
    number: int  # as cited: [number]
    chunk_index: int
    source: str
    text: str
    retrieval_rank: int  # 1 = the best retrieved chunk
    cited: bool


@dataclass(frozen=True)
class GroundedAnswer:
    question: str
    strict: bool
    position: str
    prompt_text: str  # exactly the tokens the model read, decoded (chat template included)
    prompt_tokens: int
    passages: tuple[Passage, ...]
    answer: str
    citations: tuple[int, ...]
    invalid_citations: tuple[int, ...]
    says_unknown: bool
    best_passage_cited: bool
    finish_reason: str
    new_tokens: int
    seconds: float
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _engine_generate(source: EngineTokenSource, messages: list[dict[str, str]],
                     max_new_tokens: int) -> tuple[list[int], str, str, str, int, float]:
    """The grounded prompt answered by the engine (its chat template, greedy, the same stop strings):
    (prompt ids, prompt text, answer text, finish reason, new tokens, seconds)."""
    started = time.perf_counter()
    ids = source.prompt_ids(messages, chat=True)
    completion = source.client.complete(ids, max_tokens=max_new_tokens, logprobs=0,
                                        extra={"stop": list(STOP_STRINGS)})[0]
    finish = {"stop": "eos"}.get(completion.finish_reason or "", completion.finish_reason or "length")
    return ids, source.client.detokenize(ids), completion.text, finish, len(completion.tokens), \
        time.perf_counter() - started



def _grounded(question: str, strict: bool, position: str, prompt_text: str, prompt_tokens: int,
              ordered: Sequence[Chunk], ranks: dict[int, int], answer: str, finish_reason: str, new_tokens: int,
              seconds: float, notes: tuple[str, ...]) -> GroundedAnswer:
    valid, invalid = parse_citations(answer, len(ordered))
    passages = tuple(Passage(number, chunk.index, chunk.source, chunk.text, ranks[chunk.index], number in valid)
                     for number, chunk in enumerate(ordered, start=1))
    return GroundedAnswer(
        question=question, strict=strict, position=position, prompt_text=prompt_text, prompt_tokens=prompt_tokens,
        passages=passages, answer=answer, citations=valid, invalid_citations=invalid,
        says_unknown=UNKNOWN_REPLY.lower() in answer.lower().replace("’", "'"),
        best_passage_cited=any(p.cited and p.retrieval_rank == 1 for p in passages),
        finish_reason=finish_reason, new_tokens=new_tokens, seconds=round(seconds, 3), notes=notes)


def stream_answer(model: Any, tokenizer: Any, question: str, chunks_best_first: Sequence[Chunk],
                  strict: bool = True, position: str = "first", max_new_tokens: int = 160,
                  eos_token_ids: Sequence[int] = (), lock: Any = None,
                  source: EngineTokenSource | None = None) -> Iterator[GroundedAnswer]:
    """Generate a grounded answer (greedy, so it is reproducible) from the retrieved chunks, yielding the answer
    so far after every token (finish_reason "generating") and the finished answer last: the text generate_text
    would give (no end-of-turn text, cut at the first stop string). With `source` (an engine) the engine
    generates it in one request, yielded once (the local tokenizer still sizes the passages' token budget)."""
    if not chunks_best_first:
        raise AnswerInputError("There are no retrieved chunks to answer from.")
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise AnswerInputError(f"max new tokens must be a whole number in 1..{MAX_NEW_TOKENS}, got {max_new_tokens!r}")
    kept, dropped = fit_budget(chunks_best_first, tokenizer)
    notes = (f"{dropped} lower-ranked chunks left out to stay within {CONTEXT_TOKEN_BUDGET} context tokens.",) \
        if dropped else ()
    ranks = {chunk.index: rank for rank, chunk in enumerate(kept, start=1)}
    ordered = place_best(kept, position)
    messages = grounded_messages(question, ordered, strict)
    if source is not None:
        ids, prompt_text, text, finish, new_tokens, seconds = _engine_generate(source, messages, max_new_tokens)
        yield _grounded(question, strict, position, prompt_text, len(ids), ordered, ranks, text.strip(), finish,
                        new_tokens, seconds, notes)
        return
    input_ids = encode_prompt(tokenizer, messages)  # [1, prompt_len]
    prompt_text = tokenizer.decode(input_ids[0], skip_special_tokens=False)
    started, text, count, finish = time.perf_counter(), "", 0, "cancelled"
    for step in generate_tokens(model, tokenizer, input_ids, SamplingSettings(temperature=0.0), max_new_tokens,
                                eos_token_ids, STOP_STRINGS, lock=lock):
        count += 1
        if step.finish_reason != "eos":  # the end-of-turn token's text is not part of the answer
            text += step.text
        if step.finish_reason is not None:
            finish = step.finish_reason
            break
        yield _grounded(question, strict, position, prompt_text, int(input_ids.shape[1]), ordered, ranks,
                        text.strip(), GENERATING, count, time.perf_counter() - started, notes)
    for stop in STOP_STRINGS:  # an invented next passage starts at the stop string: not part of the answer
        text = text[: text.index(stop)] if stop in text else text
    yield _grounded(question, strict, position, prompt_text, int(input_ids.shape[1]), ordered, ranks, text.strip(),
                    finish, count, time.perf_counter() - started, notes)


def answer_question(model: Any, tokenizer: Any, question: str, chunks_best_first: Sequence[Chunk],
                    strict: bool = True, position: str = "first", max_new_tokens: int = 160,
                    eos_token_ids: Sequence[int] = (), lock: Any = None,
                    source: EngineTokenSource | None = None) -> GroundedAnswer:
    """The finished answer of `stream_answer` (same arguments)."""
    *_, answer = stream_answer(model, tokenizer, question, chunks_best_first, strict, position, max_new_tokens,
                               eos_token_ids, lock, source)
    return answer


def answer_problems(answer: GroundedAnswer, min_repeats: int = 3, ngram: int = 6) -> tuple[str, ...]:
    """What makes a finished answer a poor grounded answer, as codes the UI explains: "cites-nothing" (no valid
    [n] and not "I don't know"), "invalid-citations" (cites passages that do not exist), "repeats" (some run of
    `ngram` words occurs `min_repeats` times or more: a small greedy model looping).

        >>> _ngram_repeats("a b a b a b a b".split(), 2)
        4
    """
    problems = []
    if not answer.citations and not answer.says_unknown and answer.answer:
        problems.append("cites-nothing")
    if answer.invalid_citations:
        problems.append("invalid-citations")
    if _ngram_repeats(answer.answer.lower().split(), ngram) >= min_repeats:
        problems.append("repeats")
    return tuple(problems)


def _ngram_repeats(words: Sequence[str], n: int) -> int:
    """How often the most frequent run of n consecutive words occurs."""
    counts: dict[tuple[str, ...], int] = {}
    for start in range(len(words) - n + 1):
        gram = tuple(words[start:start + n])
        counts[gram] = counts.get(gram, 0) + 1
    return max(counts.values(), default=0)

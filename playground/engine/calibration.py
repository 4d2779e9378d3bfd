"""The Calibration tab's letter scores from an engine: log p(letter) at the answer position, exact (not
limited to the top N), read from the engine's echoed prompt log-probabilities.

For each question the prompt (the engine's chat template) is sent four times, once ending in each
letter A-D, with echo: the engine returns the log-probability of every prompt token given the ones
before it, and the last one is log p(letter | question), the number `score_questions` reads from the
local model's logits. Many prompts go in one request, so the engine batches them.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import numpy as np

from playground.calibration import LETTERS, CalibrationInputError, Question, QuestionScores, ScoringCancelled, question_messages
from playground.engine.errors import EngineResponseError
from playground.engine.source import EngineTokenSource

PROMPTS_PER_REQUEST = 64  # 16 questions x 4 letters: one request the engine batches


def engine_letter_ids(source: EngineTokenSource) -> list[int]:
    """The engine tokenizer's id of each bare letter A-D (one token each, as for the local model)."""
    ids = []
    for letter in LETTERS:
        encoded = source.client.tokenize(letter)[0]
        if len(encoded) != 1:
            raise CalibrationInputError(f"The engine's tokenizer splits the letter {letter!r} into {len(encoded)} "
                                        "tokens; letter scoring needs one token per option letter.")
        ids.append(encoded[0])
    return ids


def engine_scores(source: EngineTokenSource, questions: Sequence[Question],
                  progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None) -> QuestionScores:
    """Every question's four letter log-probabilities [n, 4] from the engine (float64)."""
    if not questions:
        raise CalibrationInputError("There are no questions to score.")
    started = time.perf_counter()
    letters = engine_letter_ids(source)
    prompts = [source.prompt_ids(question_messages(question), chat=True) for question in questions]
    # rows: (question index, letter index, prompt ending in that letter)
    rows = [(q, l, prompt + [letter]) for q, prompt in enumerate(prompts) for l, letter in enumerate(letters)]
    log_probs = np.zeros((len(questions), len(LETTERS)))
    per_request = PROMPTS_PER_REQUEST
    for start in range(0, len(rows), per_request):
        if cancel is not None and cancel.is_set():
            raise ScoringCancelled(start // len(LETTERS), len(questions))
        chunk = rows[start:start + per_request]
        completions = source.client.complete([ids for _, _, ids in chunk], max_tokens=1, logprobs=1, echo=True)
        if len(completions) != len(chunk):
            raise EngineResponseError(f"The engine at {source.client.url} answered {len(completions)} of "
                                      f"{len(chunk)} prompts.")
        for (question, letter, ids), completion in zip(chunk, completions):
            # echo: tokens[0 .. len(ids)-1] are the prompt; the last prompt token is the letter.
            scored = completion.tokens[len(ids) - 1]
            if scored.token_id != ids[-1] or not np.isfinite(scored.logprob):
                raise EngineResponseError(f"The engine at {source.client.url} echoed the prompt differently "
                                          "(another tokenizer or template?): cannot read the letter's log-probability.")
            log_probs[question, letter] = scored.logprob
        if progress is not None:
            progress(min((start + per_request) // len(LETTERS), len(questions)), len(questions))
    return QuestionScores(tuple(q.id for q in questions), log_probs, time.perf_counter() - started,
                          PROMPTS_PER_REQUEST // len(LETTERS), 0)

"""Calibration: batched letter scores vs a direct forward, ECE & co, the score cache, self-consistency."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from harness import Run, Section, forward_logits, is_exact, plain, step, sync, within
from playground import calibration as cal

pytestmark = pytest.mark.device


def test_calibration(run: Run, section: Section) -> None:
    loaded = run.model()
    tokenizer = loaded.tokenizer
    questions = cal.load_questions()
    count = run.sizes.calibration_questions
    subset = questions[:: max(1, len(questions) // count)][:count]
    sync(run.device)
    started = time.perf_counter()
    scores = cal.score_questions(loaded.model, tokenizer, subset, batch_size=16, lock=loaded.lock)
    sync(run.device)
    seconds = time.perf_counter() - started
    section.metric("batched letter scoring", len(subset) / seconds, "questions/s",
                   f"{len(subset)} questions, batch 16, shared prefix {scores.prefix_tokens} tokens")
    section.check("scores finite", bool(np.isfinite(scores.letter_log_probs).all()), scores.letter_log_probs.shape)
    letters = cal.letter_token_ids(tokenizer)
    worst, agree = 0.0, 0
    direct_count = min(run.sizes.calibration_direct, len(subset))
    for question, row in zip(subset[:direct_count], scores.letter_log_probs):
        ids = tokenizer.apply_chat_template(cal.question_messages(question), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        direct = forward_logits(loaded, ids).double().log_softmax(-1)[letters].cpu().numpy()
        worst = max(worst, float(np.abs(row - direct).max()))
        agree += int(row.argmax() == direct.argmax())
    within(section, f"batched scores == a direct forward ({direct_count} questions), max |log p| difference",
           worst, 1e-4 if is_exact(loaded) else 0.15, is_exact(loaded), f"same best letter in {agree}/{direct_count}")
    mass = float(scores.raw_probabilities().sum(axis=1).mean())
    section.check("the prompt puts mass on the letters", mass > 0.5, mass, "> 0.5", soft=True)
    with step(section, "calibration metrics"):
        predictions = cal.predictions_from_scores(scores, subset)
        started = time.perf_counter()
        result = cal.calibrate(predictions, cal.calibration_split(subset), resamples=run.sizes.bootstrap_resamples)
        metrics = result.overall.metrics
        section.metric("accuracy / ECE / MCE / Brier / NLL", [metrics.accuracy, metrics.ece, metrics.mce,
                                                              metrics.brier, metrics.nll],
                       note=f"n = {metrics.n}, 10 equal-width bins, {run.sizes.bootstrap_resamples} bootstrap "
                            f"resamples in {time.perf_counter() - started:.1f} s")
        section.check("metrics in range", 0 <= metrics.ece <= 1 and 0 <= metrics.mce <= 1
                      and math.isfinite(metrics.nll) and bool(np.allclose(predictions.probs.sum(axis=1), 1)),
                      metrics.ece)
        section.check("result JSON", len(json.dumps(plain(cal.result_json(result)))) > 0,
                      f"temperature {result.scaling.fit.temperature:.3g}" if result.scaling else "no scaling")
    with step(section, "score cache"):
        cache = run.scratch / "calibration"
        key = (loaded.spec.key, loaded.precision.quantization, loaded.device)
        _, first_from_cache = cal.cached_scores(cache, *key, subset, lambda: scores)
        again, second_from_cache = cal.cached_scores(cache, *key, subset, lambda: scores)
        section.check("score cache round trip", not first_from_cache and second_from_cache
                      and np.array_equal(again.letter_log_probs, scores.letter_log_probs))
    with step(section, "self-consistency"):
        started = time.perf_counter()
        consistency = cal.self_consistency(loaded.model, tokenizer, subset[:2], samples=2,
                                           eos_token_ids=loaded.eos_token_ids, lock=loaded.lock)
        section.check("self-consistency (2 questions x 2 samples)", len(consistency.majority) == 2
                      and bool(((consistency.confidence >= 0) & (consistency.confidence <= 1)).all()),
                      [list(a) for a in consistency.answers], detail=f"{time.perf_counter() - started:.2f} s")

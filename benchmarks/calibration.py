"""Calibration benchmarks: letter scoring throughput, ours vs naive loops, same model, same run.

1. Questions/s: `score_questions` (one forward per question, 16 per batch, left padded, the shared
   prompt prefix computed once) vs the naive loop of one forward per option (prompt + letter, read
   log p(letter): 4 unbatched forwards per question). Target: ratio >= 3. A second row compares with one
   unbatched forward per question, to show what batching alone buys.
2. The whole 512-question set, timed once after the warm-up, vs the issue's 2-minute target (the
   process's CPU seconds are printed too: on a shared machine they show the cost without the neighbours).

Both for the default precision (auto: int4 on CPU) and exact fp32 (`none`). Timing is interleaved (ours, baseline,
ours, ...) so both see the same machine load; medians of the repeats. Before timing, the naive
scores are checked against ours (max |difference| of log p, printed in the conditions).

`python -m benchmarks.calibration [--quick] [--precision auto,none,int8]` prints the table.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Sequence

import numpy as np
import torch

from benchmarks.common import interleaved, load_default_model, median, print_table, row
from playground import calibration as cal
from playground.generation import encode_prompt

FULL_SET_TARGET_SECONDS = 120.0


def naive_letter_log_probs(model: Any, tokenizer: Any, questions: Sequence[cal.Question]) -> np.ndarray:
    """The baseline: for every option, run prompt + its letter and read log p(letter | prompt)."""
    letters = cal.letter_token_ids(tokenizer)
    scores = np.zeros((len(questions), len(letters)))
    with torch.inference_mode():
        for row_index, question in enumerate(questions):
            prompt = encode_prompt(tokenizer, cal.question_messages(question))  # [1, n]
            for column, letter in enumerate(letters):
                ids = torch.cat([prompt, torch.tensor([[letter]])], dim=1)  # [1, n + 1]
                logits = model(input_ids=ids).logits[0, -2]  # the position that predicts the letter
                scores[row_index, column] = logits.float().log_softmax(-1)[letter].item()
    return scores


def unbatched_letter_log_probs(model: Any, tokenizer: Any, questions: Sequence[cal.Question]) -> np.ndarray:
    """One plain forward per question (no batching, no shared prefix)."""
    letters = cal.letter_token_ids(tokenizer)
    with torch.inference_mode():
        return np.stack([model(input_ids=encode_prompt(tokenizer, cal.question_messages(q))).logits[0, -1]
                         .float().log_softmax(-1)[letters].double().numpy() for q in questions])


def precision_rows(precision: str, subset_size: int, repeats: int, full_set: bool) -> list[dict[str, Any]]:
    loaded = load_default_model(precision)
    model, tokenizer = loaded.model, loaded.tokenizer
    questions = cal.load_questions()
    subset = questions[:: len(questions) // subset_size][:subset_size]
    ours = cal.score_questions(model, tokenizer, subset).letter_log_probs
    difference = float(np.abs(naive_letter_log_probs(model, tokenizer, subset) - ours).max())
    conditions = (f"{loaded.spec.label}, {loaded.precision.label}, {torch.get_num_threads()} threads, "
                  f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}; {subset_size} questions, "
                  f"median of {repeats}; max |log p ours - naive| = {difference:.1e}")
    label = loaded.precision.label.split(" ")[0]

    def ours_run() -> None:
        cal.score_questions(model, tokenizer, subset)

    ours_times, naive_times = interleaved(ours_run, lambda: naive_letter_log_probs(model, tokenizer, subset), repeats)
    rows = [row(f"scoring q/s ({label}): batched vs 1 forward/option", subset_size / median(ours_times),
                subset_size / median(naive_times), "questions/s", conditions, higher_is_better=True, target=">= 3x")]
    ours_times, single_times = interleaved(ours_run, lambda: unbatched_letter_log_probs(model, tokenizer, subset),
                                           repeats, warmup=0)
    rows.append(row(f"scoring q/s ({label}): batched vs 1 forward/question", subset_size / median(ours_times),
                    subset_size / median(single_times), "questions/s", conditions, higher_is_better=True))
    if full_set:
        # CPU seconds too: on a shared machine the wall time says as much about the neighbours as about us.
        started, cpu_started = time.perf_counter(), time.process_time()
        cal.score_questions(model, tokenizer, questions)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        rows.append(row(f"all {len(questions)} questions ({label}) vs the 2-min target", seconds,
                        FULL_SET_TARGET_SECONDS, "s", conditions.split(";")[0] + f"; one run, {cpu_seconds:.0f} CPU-s",
                        target="<= 1x"))
    return rows


def run(quick: bool = False, precisions: Sequence[str] = ("auto", "none")) -> list[dict[str, Any]]:
    rows = []
    for precision in precisions:
        rows += precision_rows(precision, subset_size=16 if quick else 32, repeats=1 if quick else 3,
                               full_set=not quick)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Calibration scoring benchmarks")
    parser.add_argument("--quick", action="store_true", help="16 questions, one repeat, no full-set timing")
    parser.add_argument("--precision", default="auto,none", help="comma-separated: auto, none, int4, int8")
    arguments = parser.parse_args()
    print_table(run(arguments.quick, [p for p in arguments.precision.split(",") if p]))

"""Speculative decoding benchmark: our speculative loop vs plain decoding with the same code path
(playground/generation.py), and vs transformers' assisted generation on the same pair. T = 0, the
embedded SmolLM2-135M on CPU, fp32 target.

For every draft option and k in {2, 4, 6}: acceptance alpha, cost ratio c (draft time per drafted
token / plain step), check cost v (target check / plain step), the predicted speed-up
(1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)), the same with the run's draft lengths and v, and the
measured speed-up (speculative tok/s / plain tok/s). Drafts: the int4 and int8 copies and layer skipping
on open text, prompt lookup on a RAG prompt (documentation + a question answered from it).

The speed-up a user assumes is against the best plain alternative the app offers, and the app's default on a
CPU is int4, which decodes faster than the fp32 target: so for each prompt the best draft (highest measured
speed-up there) also races plain decoding in the default precision (`auto`), same prompt and token count,
side by side: the row "speculative (best draft) vs plain decoding in the default precision".

Timing is interleaved (plain, speculative, plain, ...) after a warm-up, so both see the same machine
load; medians of the repeats. Before timing, every speculative output is checked to equal the plain
greedy output.

`python -m benchmarks.speculative [--repeats N] [--new-tokens N] [--quick]` prints the table.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from benchmarks.common import interleaved, median, model_manager, print_table, row
from playground import speculative as spec
from playground.drafts import DEFAULT_SKIP, OPEN_PROMPT, CachedModel, Draft, build_draft
from playground.runtime.variants import draft_model
from playground.sampling import SamplingSettings

GREEDY = SamplingSettings(temperature=0.0)
TARGET_SPEEDUP = 1.3
PREDICTION_TOLERANCE = 0.15


def rag_prompt() -> str:
    """Documentation + a question answered from it: the copy-heavy case prompt lookup is made for."""
    from pydoc_data.topics import topics

    return (f"Use the documentation below to answer.\n\n{topics['pass'].strip()}\n\n"
            "Question: What does the pass statement do? Answer by quoting the documentation.")


@dataclass(frozen=True)
class Case:
    draft: str  # int4 | int8 | layer_skip | ngram
    prompt_name: str
    k: int


def speculate(target: Any, draft: Draft, prompt_ids: list[int], k: int, new_tokens: int) -> spec.SpeculativeRun:
    return spec.speculative_generate(CachedModel(target.model, target.lock), draft, target.tokenizer, prompt_ids,
                                     GREEDY, k, new_tokens, target.eos_token_ids)


def plain(target: Any, prompt_ids: list[int], new_tokens: int) -> spec.PlainRun:
    return spec.plain_decode(target.model, target.tokenizer, prompt_ids, GREEDY, new_tokens, target.eos_token_ids,
                             target.lock)


def timed_pairs(run_spec: Callable[[], spec.SpeculativeRun], run_plain: Callable[[], spec.PlainRun],
                repeats: int) -> list[tuple[spec.SpeculativeRun, spec.PlainRun]]:
    """Alternate plain and speculative runs (no warm-up here: the caller warmed both models up)."""
    runs: list[Any] = []
    interleaved(lambda: runs.append(run_spec()), lambda: runs.append(run_plain()), repeats, warmup=0)
    return list(zip(runs[0::2], runs[1::2]))


def case_row(case: Case, pairs: list[tuple[spec.SpeculativeRun, spec.PlainRun]], load: str) -> dict[str, Any]:
    reports = [spec.speed_report(run, plain_run, spec.acceptance_stats(run)) for run, plain_run in pairs]
    def mid(field: str) -> float:
        return median([getattr(report, field) for report in reports])

    predicted, predicted_costs = mid("predicted_speedup"), mid("predicted_speedup_measured_costs")
    label = {"int4": "int4 self-draft", "int8": "int8 self-draft", "layer_skip": f"layer-skip {DEFAULT_SKIP}", "ngram": "prompt lookup"}[case.draft]
    conditions = (f"T=0, fp32 SmolLM2-135M target on CPU, {len(pairs[0][0].token_ids)} new tokens, "
                  f"median of {len(pairs)} interleaved pairs, torch threads {torch.get_num_threads()}, {load}")
    result = row(f"{label}, k={case.k}, {case.prompt_name}: tok/s vs plain", mid("speculative_tokens_per_second"),
                 mid("plain_tokens_per_second"), "tok/s", conditions, higher_is_better=True,
                 target=f">= {TARGET_SPEEDUP}x" if case.draft != "layer_skip" else "")
    measured = result["ratio"]  # median speculative tok/s over median plain tok/s
    result.update({"alpha": mid("alpha"), "cost_ratio": mid("cost_ratio"), "verify_cost_ratio": mid("verify_cost_ratio"),
                   "predicted_speedup": predicted, "predicted_speedup_measured_costs": predicted_costs,
                   "measured_speedup": measured, "measured_over_predicted": measured / predicted,
                   "measured_over_predicted_measured_costs": measured / predicted_costs,
                   "tokens_per_target_forward": spec.acceptance_stats(pairs[0][0]).tokens_per_target_forward})
    return result


def plain_exact(model: Any, prompt_ids: list[int], new_tokens: int) -> spec.PlainRun:
    """Plain greedy decoding of exactly `new_tokens` tokens (no stop), as the tab's second baseline."""
    return spec.plain_decode(model.model, model.tokenizer, prompt_ids, GREEDY, new_tokens, (), model.lock)


def default_precision_row(case: Case, target: Any, draft: Draft, default: Any, prompt_ids: list[int], new_tokens: int,
                          repeats: int, load: str) -> dict[str, Any]:
    """The best draft's speculative run vs plain decoding in the app's default precision, interleaved, on the
    same prompt and the same number of tokens (the speculative run's)."""
    tokens = len(speculate(target, draft, prompt_ids, case.k, new_tokens).token_ids)
    runs: list[Any] = []
    interleaved(lambda: runs.append(speculate(target, draft, prompt_ids, case.k, new_tokens)),
                lambda: runs.append(plain_exact(default, prompt_ids, tokens)), repeats, warmup=1)
    speculative_runs, plain_runs = runs[2::2], runs[3::2]  # after the warm-up pair
    speculative_tps = median([run.tokens_per_second for run in speculative_runs])
    plain_tps = median([run.tokens_per_second for run in plain_runs])
    label = {"int4": "int4 self-draft", "int8": "int8 self-draft", "layer_skip": f"layer-skip {DEFAULT_SKIP}",
             "ngram": "prompt lookup"}[case.draft]
    conditions = (f"T=0, speculative: fp32 target + best draft; plain: {default.precision.quantization} "
                  f"(the app's default on CPU), {tokens} new tokens, median of {repeats} interleaved pairs, torch "
                  f"threads {torch.get_num_threads()}, {load}")
    result = row(f"speculative (best draft: {label}, k={case.k}) vs plain decoding in the default precision "
                 f"({default.precision.quantization}), {case.prompt_name}", speculative_tps, plain_tps, "tok/s",
                 conditions, higher_is_better=True, target="> 1.0x")
    result["default_precision"] = default.precision.quantization
    return result


def assisted_row(name: str, ours: Callable[[], int], theirs: Callable[[], int], repeats: int,
                 load: str) -> dict[str, Any]:
    """ours / theirs return how many tokens they generated (both stop at the same end-of-turn token)."""
    counts: list[int] = []
    ours_times, their_times = interleaved(lambda: counts.append(ours()), lambda: counts.append(theirs()), repeats,
                                          warmup=1)
    if len(set(counts)) != 1:
        raise AssertionError(f"{name}: the two sides generated different numbers of tokens: {sorted(set(counts))}")
    tokens = counts[0]
    conditions = (f"T=0, fp32 SmolLM2-135M target on CPU, {tokens} new tokens, same draft and k, median of "
                  f"{repeats} interleaved runs, torch threads {torch.get_num_threads()}, {load}")
    return row(name, tokens / median(ours_times), tokens / median(their_times), "tok/s", conditions,
               higher_is_better=True, target=">= 1.0x")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def run(repeats: int = 3, new_tokens: int = 64, ks: tuple[int, ...] = (2, 4, 6)) -> list[dict[str, Any]]:
    manager = model_manager()
    target = manager.load(precision="none")
    int8_copy = manager.load(target.spec.key, "int8", "cpu", activate=False)  # also transformers' assistant
    prompts = {"open text": spec.prepare_prompt(target.tokenizer, OPEN_PROMPT)[0],
               "RAG prompt": spec.prepare_prompt(target.tokenizer, rag_prompt())[0]}
    cases = [Case(draft, prompt, k) for draft, prompt in (("ngram", "RAG prompt"), ("int4", "open text"),
                                                          ("int8", "open text"), ("layer_skip", "open text"))
             for k in ks]
    references = {name: plain(target, ids, new_tokens) for name, ids in prompts.items()}  # also the warm-up
    rows = []
    for case in cases:
        ids = prompts[case.prompt_name]
        draft = build_draft(case.draft, target, model=draft_model(manager, case.draft, target))
        warm = speculate(target, draft, ids, case.k, new_tokens)
        if warm.token_ids != references[case.prompt_name].token_ids:
            raise AssertionError(f"{case}: speculative greedy output differs from plain greedy output")
        pairs = timed_pairs(lambda: speculate(target, draft, ids, case.k, new_tokens),
                            lambda: plain(target, ids, new_tokens), repeats)
        rows.append(case_row(case, pairs, load_average()))
        print(f"  {rows[-1]['name']}: measured {rows[-1]['measured_speedup']:.2f}x, predicted "
              f"{rows[-1]['predicted_speedup']:.2f}x / {rows[-1]['predicted_speedup_measured_costs']:.2f}x", flush=True)

    # The best draft on each prompt vs the app's default precision's plain decoding (int4 on a CPU).
    default = manager.load(target.spec.key, "auto", "cpu", activate=False)
    case_rows = list(zip(cases, rows))
    for prompt_name, ids in prompts.items():
        best, best_row = max(((c, r) for c, r in case_rows if c.prompt_name == prompt_name),
                             key=lambda pair: pair[1]["measured_speedup"])
        draft = build_draft(best.draft, target, model=draft_model(manager, best.draft, target))
        rows.append(default_precision_row(best, target, draft, default, ids, new_tokens, repeats, load_average()))
        print(f"  {rows[-1]['name']}: {rows[-1]['ours']:.1f} vs {rows[-1]['baseline']:.1f} tok/s = "
              f"{rows[-1]['ratio']:.2f}x (vs the fp32 target: {best_row['measured_speedup']:.2f}x)", flush=True)

    # Ours vs transformers' assisted generation, same pair, same k = 4: a constant schedule and no
    # confidence early-stop (HF's default stops drafting when the draft is unsure; ours drafts k).
    def ours(draft_kind: str, ids: list[int]) -> int:
        draft = build_draft(draft_kind, target, model=draft_model(manager, draft_kind, target))
        return len(speculate(target, draft, ids, 4, new_tokens).token_ids)

    def theirs(ids: list[int], **kwargs: Any) -> int:
        with torch.inference_mode():
            output = target.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=new_tokens,
                                           pad_token_id=target.tokenizer.pad_token_id, **kwargs)
        return output.shape[1] - len(ids)

    open_ids, rag_ids = prompts["open text"], prompts["RAG prompt"]
    rows.append(assisted_row("ours vs HF assisted generation, int8 draft, k=4, open text",
                             lambda: ours("int8", open_ids),
                             lambda: theirs(open_ids, assistant_model=int8_copy.model, num_assistant_tokens=4,
                                            num_assistant_tokens_schedule="constant",
                                            assistant_confidence_threshold=0.0), repeats + 2, load_average()))
    rows.append(assisted_row("ours vs HF prompt lookup decoding, k=4, RAG prompt",
                             lambda: ours("ngram", rag_ids), lambda: theirs(rag_ids, prompt_lookup_num_tokens=4),
                             repeats + 2, load_average()))
    return rows


def print_details(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'case':58} {'alpha':>6} {'c':>6} {'v':>5} {'tok/fwd':>7} {'pred':>6} {'pred*':>6} {'meas':>6} "
          f"{'meas/pred':>9} {'meas/pred*':>10}")
    for r in rows:
        if "alpha" in r:
            print(f"{r['name'][:58]:58} {r['alpha']:6.3f} {r['cost_ratio']:6.3f} {r['verify_cost_ratio']:5.2f} "
                  f"{r['tokens_per_target_forward']:7.2f} {r['predicted_speedup']:6.2f} "
                  f"{r['predicted_speedup_measured_costs']:6.2f} {r['measured_speedup']:6.2f} "
                  f"{r['measured_over_predicted']:9.2f} {r['measured_over_predicted_measured_costs']:10.2f}")
    print("pred = the formula with alpha, k, c; pred* = with each step's draft length and the measured check cost v")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="k = 4 only, 2 repeats, 32 tokens")
    args = parser.parse_args()
    if args.quick:
        table = run(repeats=2, new_tokens=32, ks=(4,))
    else:
        table = run(repeats=args.repeats, new_tokens=args.new_tokens)
    print_table(table)
    print_details(table)
    cases = [r for r in table if "alpha" in r]
    for key, label in (("measured_over_predicted", "pred"), ("measured_over_predicted_measured_costs", "pred*")):
        close = sum(abs(r[key] - 1) <= PREDICTION_TOLERANCE for r in cases)
        print(f"measured within {PREDICTION_TOLERANCE:.0%} of {label}: {close} of {len(cases)} cases")

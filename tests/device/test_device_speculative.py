"""Speculative decoding: greedy speculative == greedy plain for each draft the tab offers on the device (prompt
lookup, layer skip, a draft model, the quantized copies on CPU); acceptance; measured speed-up; transformers'
prompt lookup; a seeded sampled run replays."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Callable

import pytest
import torch

from benchmarks.common import interleaved, median
from benchmarks.speculative import rag_prompt
from harness import GREEDY, Run, Section, compare_greedy, model_device, step
from playground import sampling as smp
from playground import speculative as spec
from playground.drafts import (
    DEFAULT_SKIP,
    OPEN_PROMPT,
    QUANTIZED_SELF_DRAFTS,
    CachedModel,
    Draft,
    PromptLookupDraft,
    build_draft,
)
from playground.runtime import LoadedModel
from playground.runtime.variants import draft_model as load_draft_model
from playground.runtime.variants import speculative_target

pytestmark = pytest.mark.device


def speculative_drafts(run: Run, section: Section, target: LoadedModel) -> list[tuple[str, str, Callable[[], Draft]]]:
    """(name, prompt, factory) for each draft the Speculative tab offers on this device (drafts.build_draft).
    Offline, "another model with the same tokenizer" can only be the preset itself, loaded at auto precision:
    on a GPU that is the target's own weights (alpha = 1)."""
    def make(kind: str, draft_model: str = "") -> Callable[[], Draft]:
        return lambda: build_draft(kind, target, DEFAULT_SKIP, load_draft_model(run.manager, kind, target, draft_model))

    drafts = [("prompt lookup", "RAG prompt", make("ngram")),
              (f"layer skip {DEFAULT_SKIP}", "open text", make("layer_skip")),
              ("draft model (same preset, auto)", "open text", make("model", target.spec.key))]
    if target.device == "cpu":
        drafts += [(f"{kind} copy", "open text", make(kind)) for kind in QUANTIZED_SELF_DRAFTS]
    else:
        section.metric("quantized self-drafts", f"{', '.join(QUANTIZED_SELF_DRAFTS)}: CPU-only, not offered on a GPU")
    return drafts


def test_speculative(run: Run, section: Section) -> None:
    target = speculative_target(run.manager, run.model())
    tokenizer = target.tokenizer
    tokens = run.sizes.speculative_tokens
    stops = target.eos_token_ids
    vocab = int(target.model.config.vocab_size)
    section.metric("target", f"{target.spec.key} {target.precision.label} on {target.device}")
    prompts = {"open text": spec.prepare_prompt(tokenizer, OPEN_PROMPT)[0],
               "RAG prompt": spec.prepare_prompt(tokenizer, rag_prompt())[0]}

    def plain_run(ids: list[int]) -> spec.PlainRun:
        return spec.plain_decode(target.model, tokenizer, ids, GREEDY, tokens, stops, target.lock)

    def speculate(draft: Draft, k: int, ids: list[int],
                  settings: smp.SamplingSettings = GREEDY) -> spec.SpeculativeRun:
        return spec.speculative_generate(CachedModel(target.model, target.lock), draft, tokenizer, ids, settings, k,
                                         tokens, stops)

    plain = {name: plain_run(ids) for name, ids in prompts.items()}  # the references, and the warm-up
    for name, prompt_name, make in speculative_drafts(run, section, target):
        ids = prompts[prompt_name]
        with step(section, f"{name}: draft and run"):
            draft = make()
            for k in run.sizes.speculative_ks:
                label = f"{name}, k={k}, {prompt_name}"
                first = speculate(draft, k, ids)
                compare_greedy(section, f"{label}: speculative == plain greedy", first.token_ids,
                               plain[prompt_name].token_ids, target, ids)
                stats = spec.acceptance_stats(first)
                section.check(f"{label}: the draft proposed tokens", stats.checked > 0 and 0 <= stats.alpha <= 1,
                              f"alpha {stats.alpha:.3f}, {stats.tokens_per_target_forward:.2f} tokens per target "
                              "forward")
                runs: list[Any] = []
                interleaved(lambda: runs.append(speculate(draft, k, ids)), lambda: runs.append(plain_run(ids)),
                            run.sizes.repeats, warmup=0)
                reports = [spec.speed_report(s, p, spec.acceptance_stats(s)) for s, p in zip(runs[0::2], runs[1::2])]
                fast = median([r.speculative_tokens_per_second for r in reports])
                slow = median([r.plain_tokens_per_second for r in reports])
                section.metric(f"{label}: speed-up vs plain", fast / slow, "x",
                               f"alpha {stats.alpha:.3f}, {fast:.1f} vs {slow:.1f} tok/s, predicted "
                               f"{median([r.predicted_speedup_measured_costs for r in reports]):.2f}x, "
                               f"median of {len(reports)}")
                section.data.setdefault("cases", []).append(
                    {"draft": name, "k": k, "prompt": prompt_name, "alpha": stats.alpha, "measured_speedup": fast / slow,
                     "reports": [asdict(r) for r in reports]})
    ids = prompts["RAG prompt"]
    with step(section, "prompt lookup vs transformers"):
        ours = speculate(PromptLookupDraft(vocab), 4, ids)
        with target.lock, torch.inference_mode():
            lookup = target.model.generate(torch.tensor([ids], device=model_device(target)), prompt_lookup_num_tokens=4,
                                           do_sample=False, max_new_tokens=tokens, eos_token_id=list(stops),
                                           pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
        compare_greedy(section, "prompt lookup k=4: ours == transformers' prompt_lookup_num_tokens", ours.token_ids,
                       lookup, target, ids)
    with step(section, "sampled speculative run"):
        sampled = smp.SamplingSettings(temperature=0.8, top_p=0.95, seed=1)
        runs = [speculate(PromptLookupDraft(vocab), 4, ids, sampled) for _ in range(2)]
        data = spec.report_json(runs[0], spec.acceptance_stats(runs[0]))
        section.check("sampled speculative run (T=0.8) replays with its seed",
                      runs[0].token_ids == runs[1].token_ids and len(json.dumps(data)) > 0,
                      f"{len(runs[0].token_ids)} tokens, alpha {data['stats']['alpha']}")

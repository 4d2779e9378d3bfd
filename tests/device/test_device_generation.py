"""Sampling and generation: every sampling stage vs transformers' logits processors on the device's logits (tests/
reference.py), draws, traces, streaming; our generation loop's greedy tokens == model.generate and its speed."""

from __future__ import annotations

import time

import pytest
import torch

from benchmarks.common import interleaved, median
from harness import (
    ENGINE_PROMPT,
    GREEDY,
    NEXT_TOKEN_PROMPT,
    Run,
    Section,
    compare_greedy,
    compare_logits,
    forward_logits,
    model_device,
    step,
    sync,
)
from playground import sampling as smp
from playground.generation import encode_prompt, generate_text, generate_tokens
from playground.runtime import LoadedModel
from reference import transformers_stage, transformers_stage_logits

pytestmark = pytest.mark.device


def test_sampling(run: Run, section: Section) -> None:
    loaded = run.model()
    tokenizer, lock = loaded.tokenizer, loaded.lock
    cached = smp.PromptLogitsCache().get(loaded.spec.key, loaded.model, tokenizer, NEXT_TOKEN_PROMPT, False, lock)
    ids = cached.input_ids  # [1, n]
    raw = forward_logits(loaded, ids)  # [vocab] on the model's device
    history = ids.to(raw.device)
    section.check("prompt logits (our loop, logits_to_keep=1) top-1 == a full forward's",
                  int(raw.argmax()) == int(cached.logits.argmax()),
                  float((raw.cpu() - cached.logits).abs().max()), detail="value: max |difference| of the logits")
    for name, stage, (key, value) in (
            ("repetition penalty 1.3", lambda x: smp.apply_repetition_penalty(x, history[0], 1.3),
             ("repetition_penalty", 1.3)),
            ("temperature 0.7", lambda x: smp.apply_temperature(x, 0.7), ("temperature", 0.7)),
            ("top-k 50", lambda x: smp.apply_top_k(x, 50), ("top_k", 50)),
            ("top-p 0.9", lambda x: smp.apply_top_p(x, 0.9), ("top_p", 0.9)),
            ("min-p 0.05", lambda x: smp.apply_min_p(x, 0.05), ("min_p", 0.05))):
        compare_logits(section, f"stage {name} vs transformers", stage(raw.clone()),
                       transformers_stage(key, value, raw[None], history)[0])
    for settings in (smp.SamplingSettings(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.3),
                     smp.SamplingSettings(temperature=1e-3), smp.SamplingSettings(temperature=2.0, top_k=1)):
        compare_logits(section, f"pipeline T={settings.temperature} k={settings.top_k} p={settings.top_p} "
                       f"min-p={settings.min_p} vs the processor chain",
                       smp.pipeline_stages(raw, settings, history[0])["min_p"],
                       transformers_stage_logits(raw, history, settings)["min_p"])
    settings = smp.SamplingSettings(temperature=0.8, top_p=0.95, seed=0)
    final = smp.final_probabilities(raw, settings, history[0])
    section.check("next-token distribution sums to 1", abs(float(final.double().sum()) - 1) < 1e-5
                  and bool((final >= 0).all()), float(final.double().sum()), detail=f"on {final.device}")
    on_cpu = smp.final_probabilities(raw.cpu(), settings, history[0].cpu())
    section.check("same distribution computed on the CPU", float((final.cpu() - on_cpu).abs().max()) < 1e-5,
                  float((final.cpu() - on_cpu).abs().max()), "<= 1e-5",
                  "a token at the top-p boundary may flip between devices", soft=True)
    view = smp.next_token_view(cached.logits, settings, tokenizer, ids[0])
    first = next(generate_tokens(loaded.model, tokenizer, ids, settings, 1, lock=lock))
    section.check("next-token view's draw == the generation loop's", view.chosen.token_id == first.token_id,
                  repr(view.chosen.text))
    sweep = smp.temperature_sweep(cached.logits, settings, tokenizer, ids[0])
    section.check("temperature sweep", len(sweep.panels) == len(smp.SWEEP_TEMPERATURES), len(sweep.panels))
    broad = smp.final_probabilities(raw, smp.SamplingSettings(temperature=1.5), history[0])  # many tokens to test
    histogram = smp.sample_histogram(broad.cpu(), run.sizes.histogram_draws, tokenizer, seed=0)
    if histogram.chi_square is None:  # one token holds nearly all the mass: nothing to test
        section.check("draws fit the distribution (chi-square)", False, "no test: fewer than 2 bins",
                      detail=f"top token {histogram.texts[0]!r}", soft=True)
    else:
        section.check(f"{run.sizes.histogram_draws:,} draws at T=1.5 fit the distribution (chi-square)",
                      histogram.chi_square.p_value > 1e-3, histogram.chi_square.p_value, "p > 0.001",
                      f"{histogram.chi_square.bins} bins, {histogram.distinct_drawn} distinct tokens drawn")
    tokens = run.sizes.trace_tokens
    greedy = smp.trace_generation(loaded.model, tokenizer, ids, GREEDY, tokens, loaded.eos_token_ids, lock=lock)
    with lock, torch.inference_mode():  # both stop after an end-of-turn token, both include it
        reference = loaded.model.generate(ids.to(model_device(loaded)), do_sample=False, max_new_tokens=tokens,
                                          eos_token_id=list(loaded.eos_token_ids),
                                          pad_token_id=tokenizer.pad_token_id)
    compare_greedy(section, "greedy trace == model.generate", greedy.token_ids, reference[0, ids.shape[1]:].tolist(),
                   loaded, ids[0].tolist())
    sampled = smp.SamplingSettings(temperature=1.0, top_k=40, seed=3)
    traces = [smp.trace_generation(loaded.model, tokenizer, ids, sampled, tokens, lock=lock) for _ in range(2)]
    section.check("a seeded sampled trace replays", traces[0].token_ids == traces[1].token_ids,
                  repr(traces[0].text[:60]))
    section.check("top-k 40 never picks rank 41+", all(0 < s.prob <= 1 and s.rank <= 40 for s in traces[0].steps))
    # A streamed generation, as the RAG and LoRA tabs consume it: time to each token.
    with step(section, "streamed generation"):
        streamed(run, section, loaded, settings)


def streamed(run: Run, section: Section, loaded: LoadedModel, settings: smp.SamplingSettings) -> None:
    tokenizer, lock = loaded.tokenizer, loaded.lock
    prompt = encode_prompt(tokenizer, ENGINE_PROMPT)
    stamps, pieces, token_ids = [], [], []
    started = time.perf_counter()
    for generated in generate_tokens(loaded.model, tokenizer, prompt, settings, run.sizes.new_tokens,
                                     loaded.eos_token_ids, lock=lock):
        stamps.append(time.perf_counter() - started)
        pieces.append(generated.text)
        token_ids.append(generated.token_id)
    decoded = tokenizer.decode(token_ids, skip_special_tokens=False)
    section.check("streamed pieces add up to the decoded text", "".join(pieces) == decoded or decoded.endswith("\ufffd"),
                  f"{len(token_ids)} tokens", detail=repr(decoded[:60]))
    section.metric("streamed: time to first token", stamps[0], "s")
    if len(stamps) > 1:
        section.metric("streamed: tokens/s after the first", (len(stamps) - 1) / (stamps[-1] - stamps[0]), "tok/s",
                       f"{len(stamps)} tokens, T=0.8 top-p 0.95")


def test_engine(run: Run, section: Section) -> None:
    loaded = run.model()
    model, tokenizer, device = loaded.model, loaded.tokenizer, model_device(loaded)
    ids = encode_prompt(tokenizer, ENGINE_PROMPT)
    tokens = run.sizes.new_tokens
    eos = list(loaded.eos_token_ids)
    ours = generate_text(model, tokenizer, ids, GREEDY, tokens, loaded.eos_token_ids, lock=loaded.lock)
    with loaded.lock, torch.inference_mode():
        reference = model.generate(ids.to(device), do_sample=False, max_new_tokens=tokens, eos_token_id=eos,
                                   pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    compare_greedy(section, "greedy: our loop == model.generate(do_sample=False)", ours.token_ids, reference, loaded,
                   ids[0].tolist())
    section.data["greedy_text"] = ours.text

    def our_decode() -> None:
        generate_text(model, tokenizer, ids, GREEDY, tokens)  # no stop ids: exactly `tokens` tokens

    def their_decode() -> None:
        with torch.inference_mode():
            model.generate(ids.to(device), do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens,
                           pad_token_id=tokenizer.pad_token_id)
        sync(run.device)

    repeats = max(run.sizes.repeats, 2)
    ours_s, theirs_s = interleaved(our_decode, their_decode, repeats, warmup=1)
    ours_rate, their_rate = tokens / median(ours_s), tokens / median(theirs_s)
    section.metric("decode: our loop", ours_rate, "tok/s", f"{tokens} tokens, greedy, median of {repeats}")
    section.metric("decode: model.generate", their_rate, "tok/s", "same length, interleaved")
    section.metric("decode ratio ours / generate", ours_rate / their_rate, "x")
    ours_s, theirs_s = interleaved(lambda: generate_text(model, tokenizer, ids, GREEDY, 1),
                                   lambda: (model.generate(ids.to(device), do_sample=False, max_new_tokens=1,
                                                           pad_token_id=tokenizer.pad_token_id), sync(run.device)),
                                   repeats, warmup=1)
    section.metric("time to first token: our loop", median(ours_s) * 1e3, "ms", f"prompt {ids.shape[1]} tokens")
    section.metric("time to first token: model.generate", median(theirs_s) * 1e3, "ms")
    section.check("decode rates measured", ours_rate > 0 and their_rate > 0, f"{ours_rate:.1f} vs {their_rate:.1f}")

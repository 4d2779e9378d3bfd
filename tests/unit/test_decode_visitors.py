"""Many visitors, one int4 model: each visitor's generation through the lean decoding step is what it would be
alone, while another visitor generates at the same time or runs an ablation (hooks on the shared model, under
its lock) between the first one's steps."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from playground.generation import encode_prompt, generate_text
from playground.runtime.int4 import int4_available
from playground.runtime.locks import ModelLock
from playground.runtime.precision import requantize, resolve_precision
from playground.sampling_pipeline import SamplingSettings

pytestmark = pytest.mark.skipif(not int4_available(), reason="this torch build has no CPU int4 kernel")

SETTINGS = {"greedy": SamplingSettings(temperature=0.0),
            "sampled": SamplingSettings(temperature=0.9, top_p=0.95, seed=7)}


def run(model, tokenizer, prompt: str, settings: SamplingSettings, lock=None) -> tuple[list[int], torch.Tensor]:
    """A generation's tokens and every step's raw logits [steps, vocab]."""
    result = generate_text(model, tokenizer, encode_prompt(tokenizer, prompt), settings, max_new_tokens=16,
                           lock=lock, keep_logits=True)
    return result.token_ids, torch.stack([step.logits for step in result.steps])


def test_two_visitors_generating_at_once_each_get_what_they_would_get_alone(tiny_model, tiny_tokenizer):
    model, lock = requantize(copy.deepcopy(tiny_model), resolve_precision("int4", "cpu")), ModelLock()
    jobs = {"greedy": "The capital of France is", "sampled": "Once upon a time"}
    expected = {name: run(model, tiny_tokenizer, prompt, SETTINGS[name]) for name, prompt in jobs.items()}
    got: dict[str, tuple[list[int], torch.Tensor]] = {}
    start = threading.Barrier(len(jobs))

    def visitor(name: str) -> None:
        start.wait(10)
        got[name] = run(model, tiny_tokenizer, jobs[name], SETTINGS[name], lock)

    threads = [threading.Thread(target=visitor, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name in jobs:
        assert got[name][0] == expected[name][0] and torch.equal(got[name][1], expected[name][1])


def silence_attention(model):
    """An ablation as the Inside tab installs it (o_proj's input replaced), here every head of every layer, so that
    a generation which saw it would change: hook handles to remove."""
    return [layer.self_attn.o_proj.register_forward_pre_hook(lambda module, args: (torch.zeros_like(args[0]),))
            for layer in model.model.layers]


def test_another_visitors_ablation_between_the_steps_never_reaches_a_generation(tiny_model, tiny_tokenizer):
    model, lock = requantize(copy.deepcopy(tiny_model), resolve_precision("int4", "cpu")), ModelLock()
    prompt, greedy = "The capital of France is", SETTINGS["greedy"]
    ids = encode_prompt(tiny_tokenizer, prompt)
    expected = run(model, tiny_tokenizer, prompt, greedy)[1]
    handles = silence_attention(model)
    try:
        assert not torch.equal(run(model, tiny_tokenizer, prompt, greedy)[1], expected)  # a generation that saw it
    finally:
        for handle in handles:
            handle.remove()
    done, ablations = threading.Event(), []

    def ablating_visitor() -> None:  # hook, forward, unhook, all under the model's lock
        while not done.is_set() and len(ablations) < 2000:
            with lock:
                hooks = silence_attention(model)
                try:
                    with torch.inference_mode():
                        model(ids)
                    ablations.append(1)
                finally:
                    for hook in hooks:
                        hook.remove()

    other = threading.Thread(target=ablating_visitor)
    other.start()
    try:
        got = [run(model, tiny_tokenizer, prompt, greedy, lock)[1] for _ in range(3)]
    finally:
        done.set()
        other.join(60)
    assert ablations and all(torch.equal(logits, expected) for logits in got)

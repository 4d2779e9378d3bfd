"""The one generation loop, checked against transformers' generate on a tiny random Llama."""

from __future__ import annotations

import threading

import pytest
import torch

from playground.generation import encode_prompt, generate_text, generate_tokens
from playground.sampling import SamplingSettings

GREEDY = SamplingSettings(temperature=0.0)


@pytest.fixture(scope="module")
def prompt_ids(tiny_tokenizer):
    return encode_prompt(tiny_tokenizer, "The capital of France is", chat=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_equals_transformers_generate(tiny_tokenizer, prompt_ids, seed):
    from tiny import make_tiny_llama

    model = make_tiny_llama(len(tiny_tokenizer), seed=seed)
    ours = generate_text(model, tiny_tokenizer, prompt_ids, GREEDY, max_new_tokens=24)
    reference = model.generate(prompt_ids, do_sample=False, max_new_tokens=24, min_new_tokens=24,
                               pad_token_id=tiny_tokenizer.pad_token_id)
    assert ours.token_ids == reference[0, prompt_ids.shape[1]:].tolist()
    assert ours.finish_reason == "length" and len(ours.token_ids) == 24


def test_streamed_text_concatenates_to_the_decoded_continuation(tiny_model, tiny_tokenizer, prompt_ids):
    steps = list(generate_tokens(tiny_model, tiny_tokenizer, prompt_ids, SamplingSettings(seed=3), 30))
    assert "".join(step.text for step in steps) == tiny_tokenizer.decode([s.token_id for s in steps])
    assert [step.index for step in steps] == list(range(30))


def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny_model, tiny_tokenizer, prompt_ids):
    run = lambda seed: generate_text(tiny_model, tiny_tokenizer, prompt_ids, SamplingSettings(seed=seed), 20).token_ids
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_stops_on_eos(tiny_model, tiny_tokenizer, prompt_ids):
    greedy = generate_text(tiny_model, tiny_tokenizer, prompt_ids, GREEDY, 20).token_ids
    eos = greedy[5]
    result = generate_text(tiny_model, tiny_tokenizer, prompt_ids, GREEDY, 20, eos_token_ids=[eos])
    first = greedy.index(eos)
    assert result.token_ids == greedy[: first + 1] and result.finish_reason == "eos"


def test_stop_string_ends_generation_and_is_trimmed(tiny_model, tiny_tokenizer, prompt_ids):
    full = generate_text(tiny_model, tiny_tokenizer, prompt_ids, GREEDY, 20)
    stop = full.text[8:11]
    result = generate_text(tiny_model, tiny_tokenizer, prompt_ids, GREEDY, 20, stop_strings=[stop])
    assert result.finish_reason == "stop_string"
    assert result.text == full.text[: full.text.index(stop)]


def test_cancel_stops_within_a_step(tiny_model, tiny_tokenizer, prompt_ids):
    cancel = threading.Event()
    seen = []
    for step in generate_tokens(tiny_model, tiny_tokenizer, prompt_ids, GREEDY, 50, cancel=cancel):
        seen.append(step)
        if step.index == 4:
            cancel.set()
    assert len(seen) == 5  # no token after the one during which cancel was set
    cancel.clear()
    cancel.set()
    result = generate_text(tiny_model, tiny_tokenizer, prompt_ids, GREEDY, 50, cancel=cancel)
    assert result.token_ids == [] and result.finish_reason == "cancelled"


def test_kept_logits_are_the_models_next_token_logits(tiny_model, tiny_tokenizer, prompt_ids):
    steps = list(generate_tokens(tiny_model, tiny_tokenizer, prompt_ids, GREEDY, 3, keep_logits=True))
    ids = torch.cat([prompt_ids, torch.tensor([[s.token_id for s in steps]])], dim=1)
    with torch.inference_mode():
        full = tiny_model(ids).logits[0]  # [n, vocab]: row i predicts token i+1
    for step in steps:
        position = prompt_ids.shape[1] - 1 + step.index
        torch.testing.assert_close(step.logits, full[position].float(), atol=1e-4, rtol=1e-4)


def test_repetition_penalty_changes_greedy_like_transformers(tiny_model, tiny_tokenizer, prompt_ids):
    ours = generate_text(tiny_model, tiny_tokenizer, prompt_ids, SamplingSettings(temperature=0.0,
                         repetition_penalty=1.8), 20).token_ids
    reference = tiny_model.generate(prompt_ids, do_sample=False, repetition_penalty=1.8, max_new_tokens=20,
                                    min_new_tokens=20, pad_token_id=tiny_tokenizer.pad_token_id)
    assert ours == reference[0, prompt_ids.shape[1]:].tolist()


def test_chat_prompt_uses_the_template(tiny_tokenizer):
    ids = encode_prompt(tiny_tokenizer, "hi", chat=True, system="be brief")
    text = tiny_tokenizer.decode(ids[0])
    assert text == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_bad_shapes_are_refused(tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match=r"\[1, n\]"):
        next(generate_tokens(tiny_model, tiny_tokenizer, torch.tensor([1, 2, 3]), GREEDY, 3))


@pytest.mark.parametrize("settings", [GREEDY, SamplingSettings(temperature=0.9, repetition_penalty=1.3, seed=4)],
                         ids=["greedy", "sampled-penalty"])
def test_no_new_tensor_per_step(tiny_model, tiny_tokenizer, prompt_ids, monkeypatch, settings):
    """The loop fills buffers made before the first step (the next input, the penalty's history) instead of
    building tensors from Python lists at every step; the tokens stay the same."""
    import sys

    import playground.generation as generation

    expected = generate_text(tiny_model, tiny_tokenizer, prompt_ids, settings, 12).token_ids
    made = []
    real_tensor = torch.tensor

    def counting_tensor(*args, **kwargs):
        if sys._getframe(1).f_code.co_filename == generation.__file__:  # the loop's own, not the model's
            made.append(args)
        return real_tensor(*args, **kwargs)

    monkeypatch.setattr(generation.torch, "tensor", counting_tensor)
    assert generate_text(tiny_model, tiny_tokenizer, prompt_ids, settings, 12).token_ids == expected
    monkeypatch.undo()
    assert made == []

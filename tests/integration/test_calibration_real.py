"""Calibration on the real embedded SmolLM2-135M-Instruct: batched, prefix-cached letter scores equal
a plain forward per question; the prompt gets real probability mass on the letters; the disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from playground import calibration as cal
from playground.runtime import ModelManager

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp32_model(real_model, settings):
    """The real model in fp32. A dynamically quantized int8 model shares one activation scale per
    forward, so its batched rows legitimately differ from lone forwards; the comparison needs fp32."""
    if real_model.precision.quantization == "none":
        return real_model
    return ModelManager(settings).load(precision="none")


@pytest.fixture(scope="module")
def subset():
    return cal.load_questions()[::21][:24]  # every category, both splits, all four letters


def test_letter_scores_equal_a_direct_forward_per_question(fp32_model, subset):
    tokenizer = fp32_model.tokenizer
    scores = cal.score_questions(fp32_model.model, tokenizer, subset, batch_size=8, lock=fp32_model.lock)
    letters = [tokenizer.convert_tokens_to_ids(letter) for letter in "ABCD"]
    assert scores.prefix_tokens > 15  # system prompt + chat header, computed once
    for question, row in zip(subset, scores.letter_log_probs):
        ids = tokenizer.apply_chat_template(cal.question_messages(question), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            direct = fp32_model.model(input_ids=ids).logits[0, -1].double().log_softmax(-1)[letters].numpy()
        np.testing.assert_allclose(row, direct, atol=1e-4, err_msg=question.id)


def test_the_prompt_puts_real_mass_on_the_answer_letters(fp32_model, subset):
    scores = cal.score_questions(fp32_model.model, fp32_model.tokenizer, subset, lock=fp32_model.lock)
    mass = scores.raw_probabilities().sum(axis=1)
    assert mass.mean() > 0.5  # the model answers with a letter, not "The answer is"
    predictions = cal.predictions_from_scores(scores, subset)
    np.testing.assert_allclose(predictions.probs.sum(axis=1), 1)
    assert len(set(predictions.probs.argmax(axis=1))) >= 2  # not one letter for everything


def test_scores_are_cached_per_model_precision_and_dataset(fp32_model, subset, tmp_path):
    def compute():
        return cal.score_questions(fp32_model.model, fp32_model.tokenizer, subset, lock=fp32_model.lock)

    key = (fp32_model.spec.key, fp32_model.precision.quantization, fp32_model.device)
    first, from_cache = cal.cached_scores(tmp_path, *key, subset, compute)
    assert not from_cache

    def must_not_run():
        raise AssertionError("scored again although the cache holds these scores")

    second, from_cache = cal.cached_scores(tmp_path, *key, subset, must_not_run)
    assert from_cache
    np.testing.assert_array_equal(second.letter_log_probs, first.letter_log_probs)

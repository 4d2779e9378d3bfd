"""The sampling pipeline and traces on the real embedded model (49,152-token vocabulary)."""

from __future__ import annotations

import pytest

from playground.generation import generate_tokens
from playground.sampling import (
    PromptLogitsCache,
    SamplingSettings,
    final_probabilities,
    next_token_view,
    pipeline_stages,
    sample_histogram,
    trace_generation,
)
from reference import assert_stages_match, transformers_stage_logits

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def cached(real_model):
    return PromptLogitsCache().get("real", real_model.model, real_model.tokenizer, PROMPT, False, real_model.lock)


def test_pipeline_equals_transformers_on_real_logits(real_model, cached):
    assert cached.logits.shape == (49152,)
    history = cached.input_ids  # [1, n]
    for settings in (SamplingSettings(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.3),
                     SamplingSettings(temperature=1e-3, top_p=1.0), SamplingSettings(temperature=2.0, top_k=1)):
        expected = transformers_stage_logits(cached.logits, history, settings)["min_p"]
        ours = pipeline_stages(cached.logits, settings, history[0])["min_p"]
        assert_stages_match(ours, expected, atol=1e-6, rtol=1e-6)


def test_the_model_knows_the_capital_and_the_view_agrees_with_generation(real_model, cached):
    settings = SamplingSettings(temperature=0.8, top_p=0.95, seed=0)
    view = next_token_view(cached.logits, settings, real_model.tokenizer, cached.input_ids[0])
    assert view.vocab_size == 49152 and view.tokens[0].text == " Paris" and view.tokens[0].rank == 1
    assert view.entropy_bits["min_p"] < view.entropy_bits["raw"]  # T < 1 and a nucleus both sharpen
    first = next(generate_tokens(real_model.model, real_model.tokenizer, cached.input_ids, settings, 1,
                                 lock=real_model.lock))
    assert view.chosen.token_id == first.token_id


def test_greedy_trace_equals_generate_and_sampled_traces_replay(real_model, cached):
    ids = cached.input_ids
    greedy = trace_generation(real_model.model, real_model.tokenizer, ids, SamplingSettings(temperature=0.0), 16)
    reference = real_model.model.generate(ids, do_sample=False, max_new_tokens=16, min_new_tokens=16)
    assert greedy.token_ids == reference[0, ids.shape[1]:].tolist()
    assert greedy.steps[0].text == " Paris" and greedy.steps[0].rank == 1
    settings = SamplingSettings(temperature=1.0, top_k=40, seed=3)
    runs = [trace_generation(real_model.model, real_model.tokenizer, ids, settings, 10) for _ in range(2)]
    assert runs[0].token_ids == runs[1].token_ids
    assert all(0 < step.prob <= 1 and step.rank <= 40 for step in runs[0].steps)  # top-k 40 never picks rank 41+


def test_many_draws_follow_the_real_distribution(real_model, cached):
    probs = final_probabilities(cached.logits, SamplingSettings(temperature=1.0, top_p=0.9), cached.input_ids[0])
    histogram = sample_histogram(probs, 20_000, real_model.tokenizer, seed=0)
    assert histogram.chi_square is not None and histogram.chi_square.p_value > 1e-3
    assert histogram.texts[0] == " Paris"

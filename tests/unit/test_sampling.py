"""The sampling pipeline: every stage equals transformers' logits processor on the same logits, the
settings are validated, seeded draws replay, and draws match the distribution (chi-square)."""

from __future__ import annotations

import math

import pytest
import torch

from playground.sampling import (
    SamplingSettings,
    SamplingSettingsError,
    apply_min_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    chi_square_test,
    draw_samples,
    final_probabilities,
    pipeline_stages,
    sample_from,
    sample_next_token,
)
from reference import assert_stages_match, transformers_stage, transformers_stage_logits

VOCAB = 1000


def random_logits(seed: int, batch: int = 4, vocab: int = VOCAB, scale: float = 3.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, vocab, generator=generator) * scale  # [batch, vocab]


def tied_logits() -> torch.Tensor:
    """Many exact ties, including at the top-k / top-p boundaries: logits drawn from 5 values."""
    generator = torch.Generator().manual_seed(7)
    return torch.tensor([3.0, 1.0, 1.0 - 1e-3, 0.0, -2.0])[torch.randint(0, 5, (3, 64), generator=generator)]


def peaked_logits() -> torch.Tensor:
    """One token far ahead (p ~ 1), then a long flat tail: the top-p edge case where one token is the nucleus."""
    logits = torch.zeros(2, VOCAB)
    logits[:, 17] = 40.0
    return logits


LOGIT_CASES = {"random": random_logits(0), "random-wide": random_logits(1, scale=10.0), "ties": tied_logits(),
               "peaked": peaked_logits()}
DUMMY_IDS = torch.zeros(1, 1, dtype=torch.long)


same = assert_stages_match  # equal to 1e-6 where finite, and cut (-inf) at exactly the same places


@pytest.mark.parametrize("case", LOGIT_CASES)
@pytest.mark.parametrize("temperature", [1e-4, 0.05, 0.7, 1.0, 1.3, 5.0])
def test_temperature_equals_transformers(case, temperature):
    logits = LOGIT_CASES[case]
    same(apply_temperature(logits, temperature), transformers_stage("temperature", temperature, logits, DUMMY_IDS))


@pytest.mark.parametrize("case", LOGIT_CASES)
@pytest.mark.parametrize("top_k", [1, 2, 5, 40, 63, 64, 999, VOCAB, VOCAB + 5])
def test_top_k_equals_transformers(case, top_k):
    logits = LOGIT_CASES[case]
    same(apply_top_k(logits, top_k), transformers_stage("top_k", top_k, logits, DUMMY_IDS))


@pytest.mark.parametrize("case", LOGIT_CASES)
@pytest.mark.parametrize("top_p", [1e-6, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0])
def test_top_p_equals_transformers(case, top_p):
    logits = LOGIT_CASES[case]
    same(apply_top_p(logits, top_p), transformers_stage("top_p", top_p, logits, DUMMY_IDS))


@pytest.mark.parametrize("case", LOGIT_CASES)
@pytest.mark.parametrize("min_p", [0.0, 1e-4, 0.05, 0.3, 0.999, 1.0])
def test_min_p_equals_transformers(case, min_p):
    logits = LOGIT_CASES[case]
    same(apply_min_p(logits, min_p), transformers_stage("min_p", min_p, logits, DUMMY_IDS))


@pytest.mark.parametrize("case", LOGIT_CASES)
@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 3.0])
def test_repetition_penalty_equals_transformers(case, penalty):
    logits = LOGIT_CASES[case]
    generator = torch.Generator().manual_seed(3)
    # Repeated ids on purpose: the penalty applies once per token, however often it occurred.
    previous = torch.randint(0, logits.shape[-1], (logits.shape[0], 30), generator=generator)
    previous[:, :5] = previous[:, 5:10]
    same(apply_repetition_penalty(logits, previous, penalty),
         transformers_stage("repetition_penalty", penalty, logits, previous))


def test_stages_accept_a_single_row_like_a_batch_of_one():
    logits = random_logits(4)[0]  # [vocab]
    previous = torch.tensor([1, 2, 3, 3])
    settings = SamplingSettings(temperature=0.8, top_k=50, top_p=0.9, min_p=0.02, repetition_penalty=1.4)
    single = pipeline_stages(logits, settings, previous)
    batched = pipeline_stages(logits[None], settings, previous[None])
    for name, values in single.items():
        same(values, batched[name][0])


def transformers_chain(settings: SamplingSettings, previous: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The processors in the order `generate` builds them (penalty, temperature, top-k, top-p, min-p)."""
    return transformers_stage_logits(logits, previous, settings)["min_p"]


@pytest.mark.parametrize("case", LOGIT_CASES)
@pytest.mark.parametrize("settings", [
    SamplingSettings(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.2),
    SamplingSettings(temperature=1.5, top_k=1),
    SamplingSettings(temperature=0.01, top_p=0.5),
    SamplingSettings(temperature=2.0, min_p=0.2, repetition_penalty=0.8),
], ids=["all", "k1", "cold-nucleus", "hot-minp"])
def test_whole_pipeline_equals_transformers_chain(case, settings):
    logits = LOGIT_CASES[case]
    previous = torch.randint(0, logits.shape[-1], (logits.shape[0], 12), generator=torch.Generator().manual_seed(5))
    expected = transformers_chain(settings, previous, logits)
    same(pipeline_stages(logits, settings, previous)["min_p"], expected)
    torch.testing.assert_close(final_probabilities(logits, settings, previous), expected.softmax(-1),
                               atol=1e-6, rtol=1e-6)


def test_greedy_is_a_one_hot_at_the_penalised_argmax():
    logits = random_logits(9)
    previous = logits.argmax(-1, keepdim=True)  # penalise the raw winner, so the argmax moves
    settings = SamplingSettings(temperature=0.0, repetition_penalty=50.0, top_k=3, top_p=0.2)
    probs = final_probabilities(logits, settings, previous)
    penalised = transformers_stage("repetition_penalty", 50.0, logits, previous)
    assert torch.equal(probs.argmax(-1), penalised.argmax(-1)) and not torch.equal(probs.argmax(-1), logits.argmax(-1))
    assert torch.equal(probs.sum(-1), torch.ones(logits.shape[0])) and int((probs > 0).sum()) == logits.shape[0]
    for row, row_previous in zip(logits, previous):
        assert sample_next_token(row, settings, previous_ids=row_previous) == int(
            transformers_stage("repetition_penalty", 50.0, row[None], row_previous[None]).argmax())


def test_tiny_temperature_approaches_greedy():
    logits = random_logits(10)[0]
    probs = final_probabilities(logits, SamplingSettings(temperature=1e-4))
    assert float(probs[logits.argmax()]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("field, value, message", [
    ("temperature", -0.1, "temperature must be >= 0"),
    ("temperature", float("nan"), "temperature must be a finite number"),
    ("temperature", float("inf"), "temperature must be a finite number"),
    ("top_p", 0.0, r"top_p must be in \(0, 1\]"),
    ("top_p", 1.01, r"top_p must be in \(0, 1\]"),
    ("top_p", float("nan"), "top_p must be a finite number"),
    ("top_k", -1, "top_k must be a whole number >= 0"),
    ("top_k", 2.5, "top_k must be a whole number >= 0"),
    ("min_p", -0.01, r"min_p must be in \[0, 1\]"),
    ("min_p", 1.5, r"min_p must be in \[0, 1\]"),
    ("repetition_penalty", 0.0, "repetition_penalty must be > 0"),
    ("seed", -3, r"seed must be a whole number in 0\.\."), ("seed", 10**30, r"seed must be a whole number in 0\.\."),
])
def test_bad_settings_are_rejected_with_a_message(field, value, message):
    with pytest.raises(SamplingSettingsError, match=message):
        SamplingSettings(**{field: value})
    assert issubclass(SamplingSettingsError, ValueError)  # so the UI shows it as a gr.Error


def test_seeded_draws_replay_and_depend_on_the_seed():
    logits = random_logits(11)[0]
    settings = SamplingSettings(temperature=1.2, seed=123)
    run = lambda s: [sample_next_token(logits, s, s.generator()) for _ in range(1)] + \
        draw_samples(final_probabilities(logits, s), 200, s.generator()).tolist()
    assert run(settings) == run(settings)
    assert run(settings) != run(SamplingSettings(temperature=1.2, seed=124))
    assert SamplingSettings().generator() is None


@pytest.mark.parametrize("n", [0, -5, 10**9, 2.5, True])
def test_sample_counts_out_of_range_are_rejected(n):
    with pytest.raises(SamplingSettingsError, match="number of samples must be a whole number"):
        draw_samples(torch.tensor([0.5, 0.5]), n)


def counts_of(ids: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(ids, minlength=vocab)


@pytest.mark.parametrize("settings", [SamplingSettings(temperature=1.0), SamplingSettings(temperature=0.8, top_k=20),
                                      SamplingSettings(temperature=1.3, top_p=0.8, min_p=0.01)])
def test_draws_pass_a_chi_square_test_against_scipy(settings):
    from scipy import stats

    logits = random_logits(12, batch=1, vocab=200, scale=1.5)[0]
    probs = final_probabilities(logits, settings)
    counts = counts_of(draw_samples(probs, 20_000, torch.Generator().manual_seed(0)), 200)
    ours = chi_square_test(counts, probs)
    # The same pooled bins, tested by scipy: statistic and p-value must agree.
    expected = probs.double() / probs.double().sum() * 20_000
    order = torch.argsort(expected, descending=True)
    big = int((expected >= 5).sum())
    e = expected[order][:big].tolist() + [float(expected[order][big:].sum())]
    o = counts.double()[order][:big].tolist() + [float(counts.double()[order][big:].sum())]
    if e[-1] < 5:  # too small a bin: fold it into the one before
        e_last, o_last = e.pop(), o.pop()
        e[-1] += e_last
        o[-1] += o_last
    keep = [i for i, value in enumerate(e) if value > 0]
    reference = stats.chisquare([o[i] for i in keep], [e[i] for i in keep])
    assert ours.dof == len(keep) - 1
    assert ours.statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-12)
    assert ours.p_value > 1e-3  # the draws do follow the distribution


def test_sample_from_one_row_at_a_time_follows_the_distribution():
    probs = final_probabilities(random_logits(13, batch=1, vocab=12)[0], SamplingSettings(temperature=0.9))
    generator = torch.Generator().manual_seed(1)
    drawn = sample_from(probs.expand(5000, -1), generator)  # the generation loop's path, 5000 times
    result = chi_square_test(counts_of(drawn, 12), probs)
    assert result is not None and result.p_value > 1e-3


def test_chi_square_rejects_draws_from_the_wrong_distribution():
    logits = random_logits(14, batch=1, vocab=50)[0]
    probs = final_probabilities(logits, SamplingSettings(temperature=1.0))
    hotter = final_probabilities(logits, SamplingSettings(temperature=1.3))
    counts = counts_of(draw_samples(hotter, 20_000, torch.Generator().manual_seed(0)), 50)
    assert chi_square_test(counts, probs).p_value < 1e-6


def test_chi_square_of_a_one_hot_has_nothing_to_test():
    probs = torch.zeros(10)
    probs[3] = 1
    assert chi_square_test(counts_of(draw_samples(probs, 100), 10), probs) is None


def test_entropy_is_in_bits():
    from playground.sampling import entropy_bits

    assert entropy_bits(torch.full((8,), 1 / 8)) == pytest.approx(3.0)
    assert str(entropy_bits(torch.tensor([1.0, 0.0, 0.0]))) == "0.0"  # not -0.0 (shown as "-0.00 bits")
    p = torch.tensor([0.5, 0.25, 0.25])
    assert entropy_bits(p) == pytest.approx(-sum(x * math.log2(x) for x in p.tolist()))

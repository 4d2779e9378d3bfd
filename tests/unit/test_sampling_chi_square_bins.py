"""The draws-vs-math chi-square test pools rare tokens without leaving one bin (issue 18): at T = 2.5 on a
short prompt ~31k tokens are kept, none expected 5 times in 1,000 draws, and pooling them all into one bin
left nothing to test. The test must keep at least two bins whenever more than one token is possible, keep a
uniform-ish p-value under the right sampler, and still reject a wrong one."""

from __future__ import annotations

import pytest
import torch

from playground.sampling import SamplingSettings, chi_square_test, draw_samples, final_probabilities

VOCAB = 31_389


def flat_probs(seed: int = 0, temperature: float = 2.5) -> torch.Tensor:
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(seed)) * 3.0
    return final_probabilities(logits, SamplingSettings(temperature=temperature))


def counts_of(ids: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(ids, minlength=vocab)


def test_a_flat_distribution_over_many_tokens_keeps_enough_bins():
    probs = flat_probs()
    assert float(probs.max()) * 1000 < 5  # every token is expected fewer than 5 times: the one-bin case
    counts = counts_of(draw_samples(probs, 1000, torch.Generator().manual_seed(0)), VOCAB)
    result = chi_square_test(counts, probs)
    assert result is not None and result.bins >= 2 and result.dof == result.bins - 1
    assert result.smallest_expected >= 5  # 1,000 draws are enough for the usual floor of 5 per bin
    assert 1e-3 < result.p_value <= 1


@pytest.mark.parametrize("n", [2, 7])
def test_two_bins_whenever_two_tokens_are_possible_even_with_few_draws(n):
    probs = flat_probs()
    counts = counts_of(draw_samples(probs, n, torch.Generator().manual_seed(1)), VOCAB)
    result = chi_square_test(counts, probs)
    assert result is not None and result.bins == 2 and result.smallest_expected < 5  # a rough test, and it says so
    lopsided = torch.tensor([0.998, 0.001, 0.001])  # the runner-ups expected twice in 1,000: still two bins
    result = chi_square_test(counts_of(draw_samples(lopsided, 1000, torch.Generator().manual_seed(2)), 3), lopsided)
    assert result is not None and result.bins == 2


def test_p_values_stay_uniform_ish_under_the_right_sampler():
    probs = flat_probs()
    p_values = torch.tensor([chi_square_test(counts_of(draw_samples(probs, 1000, torch.Generator().manual_seed(s)),
                                                       VOCAB), probs).p_value for s in range(120)])
    assert 0.35 < float(p_values.mean()) < 0.65
    assert float((p_values < 0.05).double().mean()) < 0.13
    assert float((p_values < 0.5).double().mean()) == pytest.approx(0.5, abs=0.15)


def test_the_pooled_test_still_rejects_a_wrong_sampler():
    probs = flat_probs()
    wrong = flat_probs(temperature=1.8)  # the same logits, a sharper distribution
    rejected = [chi_square_test(counts_of(draw_samples(wrong, 1000, torch.Generator().manual_seed(s)), VOCAB),
                                probs).p_value < 0.01 for s in range(20)]
    assert sum(rejected) >= 18

"""top-p without sorting the whole vocabulary: `top_p_keep_among_top_k` keeps exactly the tokens the full sort
(and transformers' TopPLogitsWarper) keeps, on many random distributions with ties, masked tokens and peaks,
and hands the undecidable cases (a tie or a sum at the edge, a nucleus wider than vocab / 8) to the full sort."""

from __future__ import annotations

import pytest
import torch

from playground.sampling_pipeline import (
    TOP_P_FIRST_K,
    apply_top_k,
    apply_top_p,
    top_p_by_full_sort,
    top_p_keep_among_top_k,
)
from reference import transformers_stage

DUMMY_IDS = torch.zeros(1, 1, dtype=torch.long)
TOP_PS = (1e-6, 0.05, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999)


def distributions(count: int, vocab: int, seed: int) -> list[torch.Tensor]:
    """[3, vocab] logits of many shapes: Gaussian at several scales (flat to peaked), heavy tails, logits
    drawn from a handful of values (ties everywhere), top-k masked (-inf) rows and one dominant token."""
    generator = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            logits = torch.randn(3, vocab, generator=generator) * float(torch.empty(1).uniform_(0.5, 12, generator=generator))
        elif kind == 1:  # heavy tail: a few very likely tokens, a long flat rest
            logits = torch.distributions.Gumbel(0.0, 2.0).sample((3, vocab))
        elif kind == 2:  # ties: every logit is one of 6 values
            values = torch.randn(6, generator=generator) * 4
            logits = values[torch.randint(0, 6, (3, vocab), generator=generator)]
        elif kind == 3:  # what top-k leaves: most tokens at -inf, ties among the -inf
            logits = apply_top_k(torch.randn(3, vocab, generator=generator) * 3, int(torch.randint(1, 200, (1,),
                                                                                                   generator=generator)))
        else:  # one token far ahead
            logits = torch.randn(3, vocab, generator=generator)
            logits[:, int(torch.randint(0, vocab, (1,), generator=generator))] += 25.0
        cases.append(logits)
    return cases


@pytest.mark.parametrize("vocab", [4096, 16384])
def test_partial_selection_keeps_exactly_the_full_sorts_tokens(vocab):
    torch.manual_seed(0)  # the Gumbel sampler draws from the global generator
    decided = undecided = 0
    for logits in distributions(25 if vocab == 4096 else 8, vocab, seed=vocab):
        for top_p in TOP_PS:
            full = top_p_by_full_sort(logits, top_p)
            reference = transformers_stage("top_p", top_p, logits, DUMMY_IDS)
            assert torch.equal(torch.isinf(full), torch.isinf(reference))  # our full sort is transformers'
            keep = top_p_keep_among_top_k(logits, top_p)
            if keep is None:
                undecided += 1
            else:
                decided += 1
                assert torch.equal(keep, ~torch.isinf(full)), (top_p, logits[:, :8])
            assert torch.equal(apply_top_p(logits, top_p), full)
    # The fast path must carry most cases, or this test would only exercise the full sort.
    assert decided >= 0.5 * (decided + undecided), (decided, undecided)


def test_a_tie_across_the_edge_goes_to_the_full_sort():
    logits = torch.full((1, 1024), -20.0)
    logits[0, [10, 20, 30, 40]] = 5.0  # four tied tokens hold almost all the mass
    # p = 0.6 keeps 3 of the 4 (the full sort decides which by its order among equals)
    assert top_p_keep_among_top_k(logits, 0.6) is None
    assert torch.equal(apply_top_p(logits, 0.6), transformers_stage("top_p", 0.6, logits, DUMMY_IDS))
    assert top_p_keep_among_top_k(logits, 0.9999) is not None  # all four kept: the tie is inside, no edge


def test_a_sum_at_the_edge_goes_to_the_full_sort():
    logits = torch.full((1, 1024), float("-inf"))
    logits[0, :4] = torch.tensor([2.0, 1.0, 0.0, -1.0])
    probs = logits.softmax(-1)[0]
    edge = float(probs[0] + probs[1])  # p exactly at the mass of the top two: rounding decides
    assert top_p_keep_among_top_k(logits, edge) is None
    assert torch.equal(apply_top_p(logits, edge), transformers_stage("top_p", edge, logits, DUMMY_IDS))


def test_a_nucleus_wider_than_an_eighth_of_the_vocabulary_goes_to_the_full_sort():
    vocab = 8 * TOP_P_FIRST_K * 4
    logits = -torch.arange(vocab, dtype=torch.float32)[None] * 1e-4  # nearly uniform, no ties: p = 0.5 keeps ~half
    assert top_p_keep_among_top_k(logits, 0.5) is None
    assert top_p_keep_among_top_k(logits, 0.001) is not None  # 2 tokens: found among the first k

"""Poll answers (playground.polls) against independent references: transformers' TopPLogitsWarper, the
speculative acceptance formula in float64, and a direct softmax/rank of the logits."""

from __future__ import annotations

import pytest
import torch
from transformers import TopPLogitsWarper

from playground import polls


@pytest.fixture(scope="module")
def logits(tiny_tokenizer):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(len(tiny_tokenizer), generator=generator) * 3  # [vocab]


def one_token_texts(tokenizer, logits, count):
    """Texts that are exactly one token, in the model's order of probability (a spread of ranks)."""
    order = torch.argsort(logits, descending=True).tolist()
    texts = []
    for token_id in order:
        text = tokenizer.decode([token_id])
        if text.strip() and tokenizer.encode(text, add_special_tokens=False) == [token_id]:
            texts.append(text)
        if len(texts) == count:
            break
    return texts


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_keeps_exactly_what_transformers_keeps(tiny_tokenizer, logits, top_p):
    reference = TopPLogitsWarper(top_p)(torch.zeros(1, 1, dtype=torch.long), logits[None].clone())[0]
    for text in one_token_texts(tiny_tokenizer, logits, 12):
        token_id = tiny_tokenizer.encode(text, add_special_tokens=False)[0]
        truth = polls.top_p_truth(logits, tiny_tokenizer, text, top_p)
        assert (truth["answer"] == "yes") == bool(torch.isfinite(reference[token_id])), (text, top_p)
        assert truth["kept_tokens"] == int(torch.isfinite(reference).sum())


def test_draft_acceptance_is_min_one_p_over_q(tiny_tokenizer, logits):
    probs = torch.softmax(logits.double(), -1)
    for text in one_token_texts(tiny_tokenizer, logits, 5):
        token_id = tiny_tokenizer.encode(text, add_special_tokens=False)[0]
        for q in (1.0, 0.5, float(probs[token_id]) / 2):
            truth = polls.draft_truth(logits, tiny_tokenizer, text, q)
            expected = min(1.0, float(probs[token_id]) / q)
            assert truth["acceptance"] == pytest.approx(expected, rel=1e-12)
            assert truth["answer"] == ("yes" if expected >= 0.5 else "no")


def test_guesses_get_their_tokens_probability_and_rank(tiny_tokenizer, logits):
    probs = torch.softmax(logits.double(), -1)
    texts = one_token_texts(tiny_tokenizer, logits, 3)
    rows = polls.score_guesses(polls.probabilities(logits), tiny_tokenizer, [(texts[1], 3), (texts[0], 1)])
    assert [row["count"] for row in rows] == [3, 1] and rows[0]["share"] == 0.75
    for row in rows:
        assert row["prob"] == pytest.approx(float(probs[row["token_id"]]))
        assert row["rank"] == int((probs > probs[row["token_id"]]).sum()) + 1
    assert rows[1]["rank"] <= rows[0]["rank"]  # texts are in the model's order
    assert polls.room_rank(rows) == rows[0]["rank"]


def test_top_tokens_are_sorted_and_ranked(tiny_tokenizer, logits):
    top = polls.top_tokens(polls.probabilities(logits), tiny_tokenizer, 5)
    assert [t.rank for t in top] == [1, 2, 3, 4, 5]
    assert all(a.prob >= b.prob for a, b in zip(top, top[1:]))
    assert top[0].token_id == int(logits.argmax())


def test_bad_poll_inputs_are_refused(tiny_tokenizer, logits):
    with pytest.raises(polls.PollInputError, match="pick one token"):
        polls.top_p_truth(logits, tiny_tokenizer, "a whole sentence of many tokens", 0.9)
    with pytest.raises(polls.PollInputError, match="top-p"):
        polls.top_p_truth(logits, tiny_tokenizer, "a", 1.5)
    with pytest.raises(polls.PollInputError, match="q must be"):
        polls.draft_truth(logits, tiny_tokenizer, "a", 0.0)


def test_the_poll_chart_names_a_space_token_like_every_other_token_axis():
    """A lone space token drew as a bare '·' on the classroom chart; every other axis says '· (space)'."""
    from playground.figures.classroom import next_token_poll_figure

    rows = [{"guess": " ", "count": 2, "share": 0.5, "text": " ", "prob": 0.1, "rank": 3},
            {"guess": "Paris", "count": 2, "share": 0.5, "text": " Paris", "prob": 0.4, "rank": 1}]
    top = [{"text": " Paris", "prob": 0.4, "rank": 1}, {"text": "\n", "prob": 0.2, "rank": 2}]
    figure = next_token_poll_figure(rows, top, True, "What comes next?")
    assert list(figure.data[0].y) == ["· (space)", "·Paris", "↵"] == list(figure.data[1].y)

"""The drafts: prompt lookup, layer skipping (checked against a smaller model holding the kept
layers), the KV-cached session, the tokenizer check and the layer list parser."""

from __future__ import annotations

import pytest
import torch

from playground.drafts import (
    CachedModel,
    DraftTokenizerError,
    ModelDraft,
    PromptLookupDraft,
    SpeculativeError,
    check_same_tokenizer,
    lookup_continuation,
    parse_layers,
    skipping_layers,
)
from playground.sampling import SamplingSettings
from tiny import make_tiny_llama, make_tiny_tokenizer

GREEDY = SamplingSettings(temperature=0.0)


@pytest.fixture(scope="module")
def four_layers(tiny_tokenizer):
    return make_tiny_llama(len(tiny_tokenizer), seed=3, num_hidden_layers=4)


# ---------------------------------------------------------------------------------------------
# Prompt lookup
# ---------------------------------------------------------------------------------------------


def test_lookup_copies_what_followed_the_last_ngram():
    assert lookup_continuation([7, 8, 9, 4, 5, 7, 8], 2) == [9, 4]
    assert lookup_continuation([7, 8, 9, 4, 5, 7, 8], 10) == [9, 4, 5, 7, 8]  # runs to the end of the text
    assert lookup_continuation([1, 2, 3, 4], 3) == []  # nothing repeats


def test_lookup_prefers_the_longest_ngram_then_the_earliest_match():
    # "3" alone first occurs at index 0 (followed by 9); the 2-gram "2 3" occurs at index 3 (followed by 6).
    assert lookup_continuation([3, 9, 0, 2, 3, 6, 1, 2, 3], 1) == [6]
    assert lookup_continuation([5, 1, 5, 2, 5], 1, max_ngram=1) == [1]  # earliest of two 1-gram matches
    assert lookup_continuation([3, 9, 0, 2, 3, 6, 1, 2, 3], 1, max_ngram=3, min_ngram=3) == []


def test_prompt_lookup_draft_is_one_hot_and_stops_at_end_of_turn():
    draft = PromptLookupDraft(vocab_size=10)
    proposal = draft.propose([7, 8, 9, 4, 5, 7, 8], 4, GREEDY, None, frozenset({4}))
    assert proposal.token_ids == (9, 4) and proposal.forwards == 0
    torch.testing.assert_close(proposal.q, torch.eye(10)[[9, 4]])
    empty = draft.propose([1, 2, 3], 4, GREEDY, None, frozenset())
    assert empty.token_ids == () and tuple(empty.q.shape) == (0, 10)
    with pytest.raises(SpeculativeError, match="1 <= min <= max"):
        PromptLookupDraft(10, max_ngram=1, min_ngram=2)


# ---------------------------------------------------------------------------------------------
# Layer skipping
# ---------------------------------------------------------------------------------------------


def test_skipping_layers_equals_a_model_built_from_the_kept_layers(four_layers):
    """Independent reference: a 2-layer model holding copies of layers 0 and 2 (re-indexed 0, 1)."""
    kept = [0, 2]
    smaller = make_tiny_llama(four_layers.config.vocab_size, seed=99, num_hidden_layers=2)
    state = {}
    for name, tensor in four_layers.state_dict().items():
        if name.startswith("model.layers."):
            index = int(name.split(".")[2])
            if index not in kept:
                continue
            name = name.replace(f"model.layers.{index}.", f"model.layers.{kept.index(index)}.", 1)
        state[name] = tensor
    smaller.load_state_dict(state)
    ids = torch.tensor([[5, 40, 7, 99, 12, 3]])
    with torch.inference_mode():
        expected = smaller(ids).logits[0]
        full = four_layers(ids).logits[0]
    session = CachedModel(four_layers, skip_layers=[1, 3])
    logits = torch.cat([session.feed([5, 40, 7], keep=3), session.feed([99]), session.feed([12, 3], keep=2)])
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits, full, atol=1e-3)  # skipping really changed something
    assert len(four_layers.model.layers) == 4  # the model is whole again


def test_layers_come_back_after_an_error(four_layers):
    with pytest.raises(RuntimeError, match="boom"):
        with skipping_layers(four_layers, frozenset({1, 2})):
            assert len(four_layers.model.layers) == 2
            raise RuntimeError("boom")
    assert [layer.self_attn.layer_idx for layer in four_layers.model.layers] == [0, 1, 2, 3]


@pytest.mark.parametrize("text, expected", [("2", (2,)), ("1-3", (1, 2, 3)), (" 3 , 1-2 ", (1, 2, 3)),
                                            ("1-1, 3", (1, 3))])
def test_parse_layers(text, expected):
    assert parse_layers(text, 4) == expected


@pytest.mark.parametrize("text, message", [("", "at least one layer"), ("2-1", "runs backwards"),
                                           ("x", "Could not read 'x'"), ("4", "model has layers 0..3"),
                                           ("0-2", "Layer 0 cannot be skipped")])
def test_parse_layers_explains_bad_lists(text, message):
    with pytest.raises(SpeculativeError, match=message):
        parse_layers(text, 4)


# ---------------------------------------------------------------------------------------------
# The cached session and model drafts
# ---------------------------------------------------------------------------------------------


def test_cached_session_feeds_crops_and_finds_what_to_feed(tiny_model):
    session = CachedModel(tiny_model)
    session.feed([1, 2, 3, 4])
    assert session.ids == [1, 2, 3, 4] and session.cache.get_seq_length() == 4
    assert session.pending([1, 2, 9, 9]) == [9, 9]  # rolled back to the common prefix [1, 2]
    assert session.ids == [1, 2] and session.cache.get_seq_length() == 2
    assert session.pending([1, 2]) == [2]  # the last token is fed again: its logits were not kept
    with torch.inference_mode():
        expected = tiny_model(torch.tensor([[1, 2, 9]])).logits[0, -1]
    logits = session.feed([2, 9])
    assert logits.shape == (1, tiny_model.config.vocab_size)  # only the last row is computed by default
    torch.testing.assert_close(logits[0], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="keep must be in 1..1"):
        session.feed([3], keep=2)


def test_model_draft_proposes_its_greedy_tokens_with_one_forward_each(tiny_model):
    draft = ModelDraft(tiny_model)
    proposal = draft.propose([5, 6, 7], 3, GREEDY, None, frozenset())
    ids = [5, 6, 7]
    with torch.inference_mode():
        for token in proposal.token_ids:
            assert token == int(tiny_model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
    assert proposal.forwards == 3 and torch.all(proposal.q.sum(-1) == 1)
    assert draft.session.ids == ids[:-1]  # the last drafted token was not run through the draft


# ---------------------------------------------------------------------------------------------
# The tokenizer check
# ---------------------------------------------------------------------------------------------


def test_a_draft_with_another_tokenizer_is_refused(tiny_tokenizer):
    check_same_tokenizer(tiny_tokenizer, make_tiny_tokenizer())  # same training, same ids: fine
    with pytest.raises(DraftTokenizerError, match=r"differs from the target's \(280 vs 300 tokens, \d+ token ids differ\)"):
        check_same_tokenizer(tiny_tokenizer, make_tiny_tokenizer(vocab_size=280), "the small draft")

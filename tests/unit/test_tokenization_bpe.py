"""The BPE explorer: our replay learns the same merges in the same order as tokenizers' BpeTrainer, its
counts match a brute-force recount, and the step-by-step segmentation ends where the trainer's encoding does."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground import tokenization as tok

CORPUS = ("the cat sat on the mat. the dog sat on the log. aaa aaaa abab ba ab "
          "def add(a, b):\n    return a + b\n" * 3 + "naïve café 東京 🤗🤗")
# Few distinct characters, so pairs repeat, ties happen and merges reuse existing strings.
small_alphabet_text = st.text(st.sampled_from("ab c\né🤗"), min_size=1, max_size=80)


def brute_force_count(training: tok.BpeTraining, corpus: str, rank: int) -> int:
    """How often merge `rank`'s pair occurs (overlapping windows, as the trainer counts) in the corpus
    words segmented with the merges before it."""
    ranks = {pair: index for index, pair in enumerate(training.trainer_merges)}
    pair = training.trainer_merges[rank]
    total = 0
    for word in tok._byte_level_words(corpus):
        pieces, _ = tok.segment_word(word, ranks, rank)
        total += sum(1 for left, right in zip(pieces, pieces[1:]) if (left, right) == pair)
    return total


def check_training(corpus: str, text: str, merges: int) -> tok.BpeTraining:
    training = tok.train_bpe(corpus, text, merges)
    assert [(m.left, m.right) for m in training.merges] == list(training.trainer_merges)
    assert training.matches_trainer and training.first_mismatch is None
    assert [m.rank for m in training.merges] == list(range(len(training.merges)))
    # Step-by-step segmentation: starts at the bytes, ends at the trained tokenizer's own encoding.
    assert training.tokens_per_step[0] == len(text.encode("utf-8"))
    final = tok.segmentation_at(training, len(training.trainer_merges))
    assert [piece for piece, _ in final] == list(training.final_tokens)
    assert training.tokens_per_step[-1] == len(training.final_tokens)
    steps = training.tokens_per_step
    assert all(later <= earlier for earlier, later in zip(steps, steps[1:]))
    return training


def test_replay_equals_trainer_and_counts_are_right():
    training = check_training(CORPUS, "the cat sat on a log 🤗", 60)
    for rank in range(len(training.merges)):
        assert training.merges[rank].count == brute_force_count(training, CORPUS, rank), rank
    assert training.merges[0].count == max(training.merges[0].count, training.merges[1].count)


def test_the_first_merges_on_the_example_corpus():
    corpus = tok.example_corpus()
    assert len(corpus) > 100_000  # Python's language reference
    training = check_training(corpus, "The for statement iterates over a sequence.", 200)
    assert training.corpus_truncated and training.corpus_chars == tok.BPE_CORPUS_CHAR_LIMIT
    for rank in (0, 1, 50, 199):
        assert training.merges[rank].count == brute_force_count(training, corpus[:tok.BPE_CORPUS_CHAR_LIMIT], rank)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=small_alphabet_text, text=small_alphabet_text, merges=st.integers(1, 40))
def test_replay_property(corpus, text, merges):
    check_training(corpus, text, merges)


def test_each_step_changes_the_text_by_the_merges_it_applies():
    training = check_training(CORPUS, "the cat sat", 40)
    for step in range(1, len(training.merges) + 1):
        before, after = tok.segmentation_at(training, step - 1), tok.segmentation_at(training, step)
        assert len(before) == training.tokens_per_step[step - 1] and len(after) == training.tokens_per_step[step]
        new = [piece for piece, is_new in after if is_new]
        assert len(before) - len(after) == len(new)  # every merge applied made exactly one new token
        assert all(piece == training.merges[step - 1].merged for piece in new)
    assert training.first_visible_step() == next(step for step in range(1, len(training.tokens_per_step))
                                                  if training.tokens_per_step[step] < training.tokens_per_step[step - 1])


def test_vocabulary_size_and_payload():
    training = check_training(CORPUS, "the mat", 30)
    assert training.alphabet_size == 256
    assert training.vocab_size_at(0) == 256 and training.vocab_size_at(30) == 256 + len({m.merged for m in training.merges})
    payload = training.payload()
    assert len(payload["merges"]) == 30 and payload["matches_trainer"]
    assert payload["merges"][0]["left_text"] == tok.readable_bytes(tok.piece_to_bytes(training.merges[0].left))
    assert len(payload["tokens_per_step"]) == len(payload["vocab_size_per_step"]) == 31


@pytest.mark.parametrize("corpus, merges, message", [("abc", 0, "between 1 and"), ("abc", 5000, "between 1 and"),
                                                     ("", 10, "training text is empty")])
def test_bad_input(corpus, merges, message):
    with pytest.raises(tok.TokenizationError, match=message):
        tok.train_bpe(corpus, "abc", merges)


def test_step_out_of_range():
    training = tok.train_bpe(CORPUS, "the", 5)
    with pytest.raises(tok.TokenizationError, match="Step must be between"):
        tok.segmentation_at(training, 99)


def test_long_text_is_capped_for_the_explorer():
    training = tok.train_bpe(CORPUS, "x" * (tok.BPE_TEXT_CHAR_LIMIT + 10), 5)
    assert training.text_truncated and len(training.text) == tok.BPE_TEXT_CHAR_LIMIT


def test_a_new_text_reuses_the_training_and_segments_as_a_fresh_training_does():
    """The tab re-segments at every key typed: the corpus training is cached, only the text's segmentation runs."""
    first = check_training(CORPUS, "the cat", 40)
    typed = "the cat sat on the mat, naïve 🤗"
    reused = check_training(CORPUS, typed, 40)
    assert reused.trainer_merges == first.trainer_merges and reused.text == typed
    tok.bpe._train.cache_clear()
    fresh = tok.train_bpe(CORPUS, typed, 40)
    assert (reused.tokens_per_step, reused.final_tokens, reused.words) == (fresh.tokens_per_step, fresh.final_tokens,
                                                                        fresh.words)

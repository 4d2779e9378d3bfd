"""Scoring on the tiny model: batched, left-padded, prefix-cached letter probabilities equal a direct
forward per question; the disk cache; progress and cancel; uploaded CSVs; self-consistency."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from playground import calibration as cal
from playground.generation import encode_prompt


@pytest.fixture(scope="module")
def questions():
    everything = cal.load_questions()
    return everything[::23][:14]  # every category, varied prompt lengths


def direct_letter_log_probs(model, tokenizer, question) -> np.ndarray:
    """The reference: the chat-templated prompt alone, one plain forward, log-softmax at the last position."""
    ids = tokenizer.apply_chat_template(cal.question_messages(question), add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    letters = [tokenizer.convert_tokens_to_ids(letter) for letter in "ABCD"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1].double().log_softmax(-1)[letters].numpy()


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_batched_scores_equal_a_direct_forward_per_question(tiny_model, tiny_tokenizer, questions, batch_size):
    scores = cal.score_questions(tiny_model, tiny_tokenizer, questions, batch_size=batch_size)
    assert scores.ids == tuple(q.id for q in questions) and scores.batch_size == batch_size
    assert scores.prefix_tokens > 10  # the system prompt and chat header run once
    expected = np.stack([direct_letter_log_probs(tiny_model, tiny_tokenizer, q) for q in questions])
    np.testing.assert_allclose(scores.letter_log_probs, expected, atol=2e-5)


def test_normalised_and_raw_probabilities(tiny_model, tiny_tokenizer, questions):
    scores = cal.score_questions(tiny_model, tiny_tokenizer, questions[:4])
    raw, normalised = scores.raw_probabilities(), scores.normalised_probabilities()
    assert (raw.sum(axis=1) < 1).all()
    np.testing.assert_allclose(normalised, raw / raw.sum(axis=1, keepdims=True), rtol=1e-10)
    p = cal.predictions_from_scores(scores, questions[:4], "normalised")
    labels = [q.answer_index for q in questions[:4]]
    assert p.is_multiclass and (p.correct == (normalised.argmax(axis=1) == labels)).all()
    r = cal.predictions_from_scores(scores, questions[:4], "raw")
    assert not r.is_multiclass and np.allclose(r.confidence, raw.max(axis=1))
    with pytest.raises(cal.CalibrationInputError, match="confidence mode"):
        cal.predictions_from_scores(scores, questions[:4], "softmax")


def test_progress_is_reported_per_batch_and_cancel_stops(tiny_model, tiny_tokenizer, questions):
    seen = []
    cal.score_questions(tiny_model, tiny_tokenizer, questions, batch_size=5, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(5, 14), (10, 14), (14, 14)]
    cancel = threading.Event()

    def cancel_after_first(done: int, total: int) -> None:
        cancel.set()

    with pytest.raises(cal.ScoringCancelled, match="after 5 of 14"):
        cal.score_questions(tiny_model, tiny_tokenizer, questions, batch_size=5, progress=cancel_after_first,
                            cancel=cancel)


def test_letters_must_be_single_tokens(tiny_tokenizer):
    class SplittingTokenizer:
        def encode(self, text, add_special_tokens=False):
            return [1, 2]

    assert len(set(cal.letter_token_ids(tiny_tokenizer))) == 4
    with pytest.raises(cal.CalibrationInputError, match="splits the letter 'A'"):
        cal.letter_token_ids(SplittingTokenizer())


def test_cached_scores_compute_once_then_read_and_rescore_a_damaged_file(tmp_path, questions):
    calls = []

    def compute():
        calls.append(1)
        return cal.QuestionScores(tuple(q.id for q in questions), np.log(np.full((len(questions), 4), 0.2)), 1.5, 8, 20)

    first, cached = cal.cached_scores(tmp_path, "org/model", "int8", "cpu", questions, compute)
    assert not cached and len(calls) == 1
    second, cached = cal.cached_scores(tmp_path, "org/model", "int8", "cpu", questions, compute)
    assert cached and len(calls) == 1
    np.testing.assert_array_equal(second.letter_log_probs, first.letter_log_probs)
    assert (second.seconds, second.batch_size, second.prefix_tokens) == (1.5, 8, 20)
    files = list((tmp_path / "calibration").iterdir())
    assert len(files) == 1 and files[0].name.startswith("org_model--int8--cpu--")
    assert json.loads(files[0].read_text())["dataset_hash"] == cal.dataset_hash(questions)
    # Another precision or another question set is another entry; a damaged file is scored again.
    cal.cached_scores(tmp_path, "org/model", "none", "cpu", questions, compute)
    cal.cached_scores(tmp_path, "org/model", "int8", "cpu", questions[:3], lambda: cal.QuestionScores(
        tuple(q.id for q in questions[:3]), np.zeros((3, 4))))
    assert len(calls) == 2 and len(list((tmp_path / "calibration").iterdir())) == 3
    files[0].write_text('{"truncated": ')
    cal.cached_scores(tmp_path, "org/model", "int8", "cpu", questions, compute)
    assert len(calls) == 3


def test_nothing_is_cached_when_scoring_is_cancelled(tmp_path, questions):
    def cancelled():
        raise cal.ScoringCancelled(3, 14)

    with pytest.raises(cal.ScoringCancelled):
        cal.cached_scores(tmp_path, "m", "int8", "cpu", questions, cancelled)
    assert not (tmp_path / "calibration").exists() or not any((tmp_path / "calibration").iterdir())


# ---------------------------------------------------------------------------------------------
# Self-consistency
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, letter", [("C", "C"), ("C. Paris", "C"), ("The answer is B.", "B"),
                                          (" (D)", "D"), ("Paris", None), ("AB", None), ("", None)])
def test_answer_letters_are_parsed_from_generated_text(text, letter):
    assert cal.parse_answer_letter(text) == letter


def test_self_consistency_majority_and_agreement(questions):
    answers = [("A", "A", "B", None), ("C", "B", "B", "C"), (None, None, None, None)]
    result = cal.self_consistency_from_answers(questions[:3], answers)
    assert result.majority == ("A", "B", None)  # a tie goes to the earlier letter
    np.testing.assert_allclose(result.confidence, [0.5, 0.5, 0.0])
    assert list(result.correct) == [questions[0].answer == "A", questions[1].answer == "B", False]


def test_self_consistency_samples_through_the_generation_loop_and_replays_with_a_seed(tiny_model, tiny_tokenizer,
                                                                                     questions):
    seen = []
    first = cal.self_consistency(tiny_model, tiny_tokenizer, questions[:2], samples=3, seed=5, max_new_tokens=3,
                                 progress=lambda d, n: seen.append((d, n)))
    again = cal.self_consistency(tiny_model, tiny_tokenizer, questions[:2], samples=3, seed=5, max_new_tokens=3)
    assert first.answers == again.answers and len(first.answers[0]) == 3 and seen == [(1, 2), (2, 2)]
    assert ((first.confidence >= 0) & (first.confidence <= 1)).all()
    ids = encode_prompt(tiny_tokenizer, cal.question_messages(questions[0]))
    assert ids.shape[0] == 1 and ids.shape[1] > 20  # the same chat prompt the letter scoring uses


# ---------------------------------------------------------------------------------------------
# Uploaded CSVs
# ---------------------------------------------------------------------------------------------


def write(tmp_path, text: str):
    path = tmp_path / "predictions.csv"
    path.write_text(text)
    return path


def test_csv_with_confidence_and_correct(tmp_path):
    uploaded = cal.predictions_from_csv(write(tmp_path, "confidence,correct,category\n0.9,1,a\n0.6, false ,b\n"
                                                        "0.3,yes,a\n0.8,0,b\n"))
    p = uploaded.predictions
    np.testing.assert_allclose(p.confidence, [0.9, 0.6, 0.3, 0.8])
    assert list(p.correct) == [True, False, True, False] and p.categories == ("a", "b", "a", "b")
    assert uploaded.calibration.sum() == 2 and "random half" in uploaded.notes[0]


def test_csv_with_class_probabilities_and_labels(tmp_path):
    uploaded = cal.predictions_from_csv(write(tmp_path, "label,prob_cat,prob_dog,split\ndog,0.3,0.7,calibration\n"
                                                        "cat,0.4,0.6,test\n1,0.5005,0.5,test\n"))
    p = uploaded.predictions
    assert p.is_multiclass and list(p.labels) == [1, 0, 1] and list(p.correct) == [True, False, False]
    np.testing.assert_allclose(p.probs.sum(axis=1), 1)  # 0.5005 + 0.5 renormalised
    assert list(uploaded.calibration) == [True, False, False] and uploaded.notes == ()


@pytest.mark.parametrize("text, message", [
    ("", "The CSV file is empty"),
    ("confidence,correct\n", "no data rows"),
    ("score,label\n0.5,1\n", "has columns \\['score', 'label'\\]"),
    ("confidence,correct\n0.5,1\n1.3,0\n", "Row 2: confidence = 1.3 is outside \\[0, 1\\]"),
    ("confidence,correct\n-0.1,1\n", "Row 1: confidence = -0.1 is outside"),
    ("confidence,correct\n0.5,1\nNaN,0\n", "Row 2: column 'confidence' is 'NaN', not a number"),
    ("confidence,correct\n0.5,1\n,0\n", "Row 2: column 'confidence' is empty"),
    ("confidence,correct\n0.5,maybe\n", "Row 1: correct = 'maybe'"),
    ("label,prob_a,prob_b\na,0.5,0.2\n", "Row 1: the probabilities sum to 0.7"),
    ("label,prob_a,prob_b\nc,0.5,0.5\n", "label 'c' is not one of the classes"),
    ("confidence,correct,split\n0.5,1,train\n", "'split' may only contain"),
])
def test_bad_csvs_are_clear_errors(tmp_path, text, message):
    with pytest.raises(cal.CalibrationInputError, match=message):
        cal.predictions_from_csv(write(tmp_path, text))


def test_a_single_row_and_an_all_correct_file_have_defined_results(tmp_path):
    single = cal.predictions_from_csv(write(tmp_path, "confidence,correct\n0.7,1\n"))
    result = cal.calibrate(single.predictions, single.calibration, resamples=20)
    assert result.overall.metrics.ece == pytest.approx(0.3) and result.scaling is None
    rows = "\n".join(f"{c:.2f},1" for c in np.linspace(0.5, 1.0, 40))
    perfect = cal.predictions_from_csv(write(tmp_path, "confidence,correct\n" + rows + "\n"))
    result = cal.calibrate(perfect.predictions, perfect.calibration, resamples=20)
    assert result.overall.metrics.accuracy == 1.0 and result.scaling.fit.at_bound
    assert result.scaling.after.metrics.ece < result.scaling.before.metrics.ece
    assert any("search bound" in note for note in result.notes)


def test_long_files_are_cut_with_a_note(tmp_path):
    uploaded = cal.predictions_from_csv(write(tmp_path, "confidence,correct\n" + "0.5,1\n" * 30), max_rows=10)
    assert len(uploaded.predictions) == 10 and "only the first 10" in uploaded.notes[0]

"""The shipped question set: rebuilt byte for byte by its script, big and balanced enough, and every
answer checkable (arithmetic recomputed here, facts looked up in the script's own lists)."""

from __future__ import annotations

import importlib.util
import re
from collections import Counter

import pytest

from playground import calibration as cal


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_questions", cal.QUESTIONS_PATH.with_name("build_questions.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def questions():
    return cal.load_questions()


def test_the_committed_file_is_what_the_script_builds(builder):
    assert cal.QUESTIONS_PATH.read_text(encoding="utf-8") == builder.render()


def test_size_categories_and_options(questions):
    assert len(questions) >= 500
    assert len({q.id for q in questions}) == len(questions)
    categories = Counter(q.category for q in questions)
    assert len(categories) >= 4 and min(categories.values()) >= 100
    for q in questions:
        assert len(q.options) == 4 and len(set(q.options)) == 4, q


def test_answer_letters_are_balanced_overall_per_category_and_per_split(questions):
    assert set(Counter(q.answer for q in questions).values()) == {len(questions) // 4}
    per_group = Counter((q.category, q.split, q.answer) for q in questions)
    assert len(set(per_group.values())) == 1  # every (category, split, letter) the same size


def test_calibration_and_test_halves(questions):
    splits = Counter(q.split for q in questions)
    assert splits == {"calibration": len(questions) // 2, "test": len(questions) // 2}
    mask = cal.calibration_split(questions)
    assert mask.sum() == len(questions) // 2 and all(q.split == "calibration" for q, m in zip(questions, mask) if m)


def test_arithmetic_answers_are_right(questions):
    operations = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b, "/": lambda a, b: a / b}
    checked = 0
    for q in questions:
        if q.category != "arithmetic":
            continue
        a, op, b = re.fullmatch(r"What is (\d+) ([-+x/]) (\d+)\?", q.question).groups()
        value = operations[op](int(a), int(b))
        assert float(q.options[q.answer_index]) == value, q
        assert all(float(option) != value for i, option in enumerate(q.options) if i != q.answer_index), q
        checked += 1
    assert checked >= 100


def test_fact_answers_match_the_lists(builder, questions):
    tables = {"geography": builder.CAPITALS, "chemistry": builder.SYMBOLS, "vocabulary": builder.MEANINGS}
    for q in questions:
        if q.category not in tables:
            continue
        table = tables[q.category]
        key = q.options[q.answer_index]
        subject = next(name for name in list(table) + list(table.values()) if f" {name}?" in q.question
                       or f"'{name}'" in q.question or q.question.startswith(f"{name} is"))
        pair = (subject, key) if subject in table else (key, subject)
        assert table[pair[0]] == pair[1], q
    # One-to-one lists + distinct options: no distractor can also be right.
    for table in tables.values():
        assert len(set(table.values())) == len(table)


def test_prompt_lists_the_options_under_our_system_prompt(questions):
    system, user = cal.question_messages(questions[0])
    assert system == {"role": "system", "content": cal.SYSTEM_PROMPT}
    assert user["content"].splitlines() == [questions[0].question] + [
        f"{letter}. {option}" for letter, option in zip("ABCD", questions[0].options)]


def test_dataset_hash_changes_with_any_question(questions):
    edited = list(questions)
    edited[5] = cal.Question(**{**edited[5].__dict__, "answer": "A" if edited[5].answer != "A" else "B"})
    assert cal.dataset_hash(questions) == cal.dataset_hash(list(questions))
    assert cal.dataset_hash(edited) != cal.dataset_hash(questions)


def test_a_broken_question_file_is_a_clear_error(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('{"questions": [{"id": "x"}]}')
    with pytest.raises(cal.CalibrationInputError, match="Cannot read the question set"):
        cal.load_questions(path)

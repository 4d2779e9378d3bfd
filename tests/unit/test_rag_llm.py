"""The LLM parts of RAG on the tiny random Llama: the Yes/No judge (batched = one by one = a plain
forward) and the grounded answer (prompt, placement, citations, the one generation loop)."""

from __future__ import annotations

import pytest
import torch

from playground.generation import encode_prompt, generate_text
from playground.rag import answer, rerank
from playground.rag.chunking import Chunk
from tiny import make_tiny_llama, make_tiny_tokenizer


@pytest.fixture(scope="module")
def judge_pair():
    """The tiny tokenizer with 'Yes' and 'No' as whole tokens, and a tiny model sized for it."""
    tokenizer = make_tiny_tokenizer()
    tokenizer.add_tokens(["Yes", "No"])
    return make_tiny_llama(len(tokenizer), seed=3), tokenizer


PASSAGES = ["The capital of France is Paris.", "Tokens attend to earlier tokens.",
            "def add(a, b): return a + b", "Sampling picks the next token.", "Rome"]


def test_yes_and_no_must_be_single_tokens(tiny_tokenizer):
    if len(tiny_tokenizer.encode("Yes", add_special_tokens=False)) == 1:
        pytest.skip("the tiny tokenizer happens to have 'Yes' as one token")
    with pytest.raises(rerank.RerankError, match="splits 'Yes'"):
        rerank.answer_token_ids(tiny_tokenizer)


def test_judge_probabilities_equal_a_plain_forward(judge_pair):
    model, tokenizer = judge_pair
    yes_id, no_id = rerank.answer_token_ids(tokenizer)
    judgements = rerank.judge_relevance(model, tokenizer, "What is the capital of France?", PASSAGES, batch_size=4)
    for passage, judgement in zip(PASSAGES, judgements):
        ids = torch.tensor([rerank.judge_prompt_ids(tokenizer, "What is the capital of France?", passage)])
        with torch.no_grad():
            probabilities = torch.softmax(model(ids).logits[0, -1].double(), dim=-1)  # [vocab]
        assert judgement.p_yes == pytest.approx(float(probabilities[yes_id]), rel=1e-4)
        assert judgement.p_no == pytest.approx(float(probabilities[no_id]), rel=1e-4)
        assert judgement.score == pytest.approx(judgement.p_yes / (judgement.p_yes + judgement.p_no))


def test_batching_with_left_padding_changes_nothing(judge_pair):
    model, tokenizer = judge_pair
    one_by_one = rerank.judge_relevance(model, tokenizer, "capital?", PASSAGES, batch_size=1)
    batched = rerank.judge_relevance(model, tokenizer, "capital?", PASSAGES, batch_size=5)
    for single, batch in zip(one_by_one, batched):
        assert batch.p_yes == pytest.approx(single.p_yes, rel=1e-4)
        assert batch.p_no == pytest.approx(single.p_no, rel=1e-4)


def test_the_judge_prompt_is_chat_templated_and_long_passages_are_cut(judge_pair, monkeypatch):
    _, tokenizer = judge_pair
    text = tokenizer.decode(rerank.judge_prompt_ids(tokenizer, "Q?", "A passage."))
    assert text.startswith("<|im_start|>system\n" + rerank.JUDGE_SYSTEM)
    assert text.endswith("<|im_start|>assistant\n") and rerank.JUDGE_QUESTION.format(question="Q?") in text
    monkeypatch.setattr(rerank, "MAX_PASSAGE_TOKENS", 3)
    assert "…" in tokenizer.decode(rerank.judge_prompt_ids(tokenizer, "Q?", "The capital of France is Paris."))


def test_the_judgement_cache_computes_each_pair_once():
    cache, computed = rerank.JudgementCache(), []

    def compute(passages):
        computed.extend(passages)
        return [rerank.Judgement(0.5, 0.25) for _ in passages]

    first = cache.judge("m", "q", ["a", "b", "a"], compute)
    second = cache.judge("m", "q", ["b", "c"], compute)
    assert computed == ["a", "b", "c"] and len(first) == 3 and len(second) == 2
    assert first[0].score == pytest.approx(2 / 3)


# -- grounded answers ------------------------------------------------------------------------------


def _chunks(texts):
    return [Chunk(index, f"doc{index}", text, 0, len(text), 0) for index, text in enumerate(texts)]


@pytest.mark.parametrize("position, expected", [
    ("first", ["best", "b", "c", "d"]), ("middle", ["b", "best", "c", "d"]), ("last", ["b", "c", "d", "best"]),
])
def test_place_best(position, expected):
    assert answer.place_best(["best", "b", "c", "d"], position) == expected


def test_parse_citations():
    valid, invalid = answer.parse_citations("See [2] and [1, 3]; also [2][7] and [ 4 ].", passage_count=3)
    assert valid == (2, 1, 3) and invalid == (7, 4)
    assert answer.parse_citations("no brackets", 3) == ((), ())


def test_the_context_budget_keeps_the_best_chunks(tiny_tokenizer):
    chunks = _chunks(["Paris " * 10, "Rome " * 10, "tokens " * 10])
    sizes = [len(tiny_tokenizer.encode(c.text, add_special_tokens=False)) for c in chunks]
    kept, dropped = answer.fit_budget(chunks, tiny_tokenizer, budget=sizes[0] + sizes[1] + sizes[2] - 1)
    assert [c.index for c in kept] == [0, 1] and dropped == 1
    kept, dropped = answer.fit_budget(chunks, tiny_tokenizer, budget=1)
    assert [c.index for c in kept] == [0] and dropped == 2  # always at least the best one


def test_answer_uses_the_generation_loop_on_the_exact_prompt_it_shows(tiny_model, tiny_tokenizer):
    chunks = _chunks(["The capital of France is Paris.", "The capital of Italy is Rome.", "Attention is all."])
    result = answer.answer_question(tiny_model, tiny_tokenizer, "capital of France?", chunks, strict=True,
                                    position="last", max_new_tokens=8, eos_token_ids=[tiny_tokenizer.eos_token_id])
    assert [p.retrieval_rank for p in result.passages] == [2, 3, 1]  # best chunk placed last
    assert [p.number for p in result.passages] == [1, 2, 3]
    messages = answer.grounded_messages("capital of France?", [chunks[1], chunks[2], chunks[0]], strict=True)
    ids = encode_prompt(tiny_tokenizer, messages)
    assert result.prompt_text == tiny_tokenizer.decode(ids[0]) and result.prompt_tokens == ids.shape[1]
    assert "[3] (source: doc0)\nThe capital of France is Paris." in result.prompt_text
    assert answer.UNKNOWN_REPLY in result.prompt_text  # the strict instruction
    expected = generate_text(tiny_model, tiny_tokenizer, ids, max_new_tokens=8,
                             eos_token_ids=[tiny_tokenizer.eos_token_id], stop_strings=answer.STOP_STRINGS)
    assert result.answer == expected.text.strip() and result.new_tokens == len(expected.token_ids)


def test_open_mode_drops_the_dont_know_instruction(tiny_model, tiny_tokenizer):
    result = answer.answer_question(tiny_model, tiny_tokenizer, "q?", _chunks(["Paris."]), strict=False,
                                    max_new_tokens=2)
    assert answer.UNKNOWN_REPLY not in result.prompt_text and answer.OPEN_SYSTEM in result.prompt_text


@pytest.mark.parametrize("kwargs, message", [
    ({"chunks_best_first": []}, "no retrieved chunks"),
    ({"max_new_tokens": 0}, r"1\.\.256"),
    ({"position": "top"}, "position must be one of"),
])
def test_bad_answer_settings_are_explained(tiny_model, tiny_tokenizer, kwargs, message):
    arguments = {"question": "q", "chunks_best_first": _chunks(["x"]), **kwargs}
    with pytest.raises(answer.AnswerInputError, match=message):
        answer.answer_question(tiny_model, tiny_tokenizer, **arguments)

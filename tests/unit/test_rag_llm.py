"""The LLM parts of RAG on the tiny random Llama: the Yes/No judge (batched = one by one = a plain
forward) and the grounded answer (prompt, placement, citations, the one generation loop)."""

from __future__ import annotations

import math

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


# Batched = one at a time, within fp32 rounding. The two paths run the same arithmetic except that the
# batch's shape can pick another blocking (summation order) in the matmuls; fp32 rounds at u = 2^-24 ~ 6e-8
# per operation, so sums over a few hundred terms and a few layers move a logit by ~1e-6 (measured: 0 on
# the tiny model, 2e-6 on the embedded one in fp32). Padded keys add exactly 0 after the softmax (masked
# scores are -inf). Allowing 1e-5 on each logit gives 2e-5 on a log-probability (logit - logsumexp).
# A real bug (a missing attention mask, a row sent to the wrong passage) moves it by 1e-2 or more.
LOG_PROBABILITY_TOLERANCE = 2e-5


def assert_same_judgements(batched, single, tolerance=LOG_PROBABILITY_TOLERANCE):
    assert len(batched) == len(single)
    for index, (a, b) in enumerate(zip(batched, single)):
        for name in ("p_yes", "p_no"):
            x, y = getattr(a, name), getattr(b, name)
            assert x > 0 and y > 0, (index, name)
            assert abs(math.log(x) - math.log(y)) <= tolerance, f"passage {index}: {name} {x} vs {y}"


@pytest.fixture(scope="module")
def context_judge_pair(judge_pair):
    """A tiny model whose answer depends on the passage: the shared tiny model's scaled-up embeddings
    swamp its layers (its P(Yes) barely moves with the passage), so here they are back at init scale
    and the head is random (as in test_speculative.tiny_lm)."""
    _, tokenizer = judge_pair
    model = make_tiny_llama(len(tokenizer), seed=4)
    generator = torch.Generator().manual_seed(1004)
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn(len(tokenizer), 32, generator=generator) * 0.35)
        model.model.embed_tokens.weight.div_(20)
    return model, tokenizer


LONG_PASSAGE = " ".join(["The capital of Italy is Rome. Tokens attend to earlier tokens."] * 12)  # cut to MAX_PASSAGE_TOKENS
EVERY_LENGTH = PASSAGES + ["Yes", LONG_PASSAGE, "def add(a, b):\n    return a + b\n" * 3]


@pytest.mark.parametrize("batch_size", [2, 3, len(EVERY_LENGTH)])
def test_batched_judgements_equal_one_at_a_time_on_every_passage(batch_size, context_judge_pair):
    model, tokenizer = context_judge_pair
    single = rerank.judge_relevance(model, tokenizer, "What is the capital of France?", EVERY_LENGTH, batch_size=1)
    batched = rerank.judge_relevance(model, tokenizer, "What is the capital of France?", EVERY_LENGTH,
                                     batch_size=batch_size)
    assert_same_judgements(batched, single)
    scores = [j.p_yes for j in single]
    assert max(scores) / min(scores) > 1.01  # the passages really get different answers (a mix-up would show)


def test_left_padding_of_a_very_short_passage_next_to_a_long_one(context_judge_pair, monkeypatch):
    """One batch, one passage of one word and one of hundreds of tokens: the short row is mostly padding."""
    model, tokenizer = context_judge_pair
    question, passages = "What is the capital of France?", ["Rome", LONG_PASSAGE]
    lengths = [len(rerank.judge_prompt_ids(tokenizer, question, p)) for p in passages]
    assert lengths[1] - lengths[0] > 2 * lengths[0]  # more padding than tokens in the short row
    single = rerank.judge_relevance(model, tokenizer, question, passages, batch_size=1)
    assert_same_judgements(rerank.judge_relevance(model, tokenizer, question, passages, batch_size=2), single)
    assert_same_judgements(rerank.judge_relevance(model, tokenizer, question, passages[::-1], batch_size=2),
                           single[::-1])
    # The comparison can fail: the same batch with the padding left visible (no attention mask) is far off.
    padded = rerank._left_padded
    monkeypatch.setattr(rerank, "_left_padded", lambda rows, pad: (lambda ids, mask, positions: (
        ids, torch.ones_like(mask), positions))(*padded(rows, pad)))
    unmasked = rerank.judge_relevance(model, tokenizer, question, passages, batch_size=2)
    with pytest.raises(AssertionError, match="passage 0"):
        assert_same_judgements(unmasked, single, tolerance=100 * LOG_PROBABILITY_TOLERANCE)


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

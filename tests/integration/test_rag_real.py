"""RAG on the real embedded models (all-MiniLM-L6-v2 + SmolLM2-135M-Instruct), offline, on a slice
of the Python reference so it stays quick."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.rag import (
    ChunkingSettings,
    answer_question,
    apply_rerank,
    build_index,
    chunk_corpus,
    evaluate_index,
    judge_relevance,
    python_reference_corpus,
    retrieve,
)
from playground.rag.chunking import chunk_text
from playground.rag.rerank import judge_prompt_ids

pytestmark = pytest.mark.slow

TOPICS = ["assert", "break", "continue", "del", "global", "lambda", "nonlocal", "pass", "power", "raise", "return",
          "shifting", "truth"]


@pytest.fixture(scope="module")
def embedder(model_manager):
    return model_manager.embedding_model()


@pytest.fixture(scope="module")
def index(embedder, tmp_path_factory):
    return build_index(python_reference_corpus(TOPICS), ChunkingSettings("characters", 600, 80), embedder,
                       "all-minilm-l6-v2", tmp_path_factory.mktemp("rag-cache"))


def test_our_embeddings_equal_sentence_transformers_encode(index, embedder):
    reference = embedder.encode(index.chunk_set.texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(index.embeddings, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)


def test_dense_ranking_equals_semantic_search(index, embedder):
    from sentence_transformers.util import semantic_search

    for question in ("How do I skip to the next loop iteration?", "What does pass do?"):
        result = retrieve(index, embedder, question, "dense", k=10)
        query = embedder.encode([question], normalize_embeddings=True, convert_to_tensor=True)
        hits = semantic_search(query, torch.from_numpy(index.embeddings), top_k=10)[0]
        assert [row.chunk.index for row in result.rows] == [hit["corpus_id"] for hit in hits]
        np.testing.assert_allclose([row.dense_score for row in result.rows], [hit["score"] for hit in hits],
                                   atol=1e-5)


def test_token_chunks_of_the_real_tokenizer_cover_the_text(embedder):
    text = python_reference_corpus(["lambda"]).documents[0].text
    pieces = chunk_text(text, ChunkingSettings("tokens", 64, 16), embedder.tokenizer)
    assert pieces[0][1] == 0 and pieces[-1][2] == len(text)
    assert all(start <= previous_end for (_, _, previous_end), (_, start, _) in zip(pieces, pieces[1:]))
    counts = [c.token_count for c in chunk_corpus(python_reference_corpus(["lambda"]),
                                                   ChunkingSettings("tokens", 64, 16), embedder.tokenizer).chunks]
    assert max(counts) <= 64 + 2  # a unit can merge into its neighbour's word piece at the edges


def test_retrieval_finds_the_answering_topic(index, embedder):
    report = evaluate_index(index, embedder)
    by_method = {scores.method: scores for scores in report.methods}
    assert len(report.questions) >= 10
    assert by_method["hybrid"].recall[5] >= 0.7 and by_method["dense"].recall[10] >= 0.7


def test_the_llm_judge_and_rerank_on_the_real_model(index, embedder, real_model):
    question = "What does the pass statement do?"
    first = retrieve(index, embedder, question, "hybrid", k=3, rerank_candidates=5)
    passages = [row.chunk.text for row in first.candidates]
    batched = judge_relevance(real_model.model, real_model.tokenizer, question, passages, batch_size=5,
                              lock=real_model.lock)
    single = judge_relevance(real_model.model, real_model.tokenizer, question, passages[:2], batch_size=1,
                             lock=real_model.lock)
    for a, b in zip(batched, single):
        assert a.score == pytest.approx(b.score, abs=0.05)  # int8 dynamic quantization scales per batch
    assert all(0.0 <= j.score <= 1.0 and j.p_yes + j.p_no <= 1.0 for j in batched)
    reranked = apply_rerank(first, [j.score for j in batched])
    assert sorted(row.rerank_score for row in reranked.candidates) == sorted(j.score for j in batched)


def test_the_judge_batched_equals_one_at_a_time_in_fp32_with_a_short_and_a_long_passage(index, embedder,
                                                                                        model_manager):
    """Every candidate, plus a one-word passage and a long one in the same batch (the short row is mostly
    left padding), in fp32: batched = one at a time within fp32 rounding (the tolerance is derived in
    tests/unit/test_rag_llm.py; measured here: ~2e-6 on log P)."""
    import math

    fp32 = model_manager.load(precision="none", activate=False)
    assert fp32.model.dtype == torch.float32
    question = "What does the pass statement do?"
    first = retrieve(index, embedder, question, "hybrid", k=3, rerank_candidates=4)
    long_passage = " ".join(row.chunk.text for row in first.candidates)  # cut to MAX_PASSAGE_TOKENS by the judge
    passages = [row.chunk.text for row in first.candidates] + ["pass", long_passage]
    lengths = [len(judge_prompt_ids(fp32.tokenizer, question, p)) for p in passages]
    assert lengths[-1] > 3 * lengths[-2]
    batched = judge_relevance(fp32.model, fp32.tokenizer, question, passages, batch_size=len(passages),
                              lock=fp32.lock)
    single = judge_relevance(fp32.model, fp32.tokenizer, question, passages, batch_size=1, lock=fp32.lock)
    for i, (a, b) in enumerate(zip(batched, single)):
        for x, y in ((a.p_yes, b.p_yes), (a.p_no, b.p_no)):
            assert abs(math.log(x) - math.log(y)) <= 2e-5, (i, x, y)


def test_a_grounded_answer_from_the_real_model(index, embedder, real_model):
    result = retrieve(index, embedder, "What does the pass statement do?", "hybrid", k=2)
    answer = answer_question(real_model.model, real_model.tokenizer, result.question,
                             [row.chunk for row in result.rows], strict=True, position="first", max_new_tokens=40,
                             eos_token_ids=real_model.eos_token_ids, lock=real_model.lock)
    assert answer.prompt_text.startswith("<|im_start|>system\nAnswer the question using only")
    assert answer.prompt_text.rstrip().endswith("<|im_start|>assistant")
    assert "[1] (source: " in answer.prompt_text and answer.answer
    assert answer.finish_reason in ("eos", "length", "stop_string")

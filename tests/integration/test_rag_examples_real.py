"""Every prepared RAG example's cached rankings equal a live retrieval on the embedded MiniLM (issue 18: the
cached examples are re-verified against a live run). tests/unit/test_examples.py compares the first example's
whole JSON; this one checks each example's ranking: the same chunks in the same order, with each method's own
rank, and the scores within float noise across processors. The default corpus's index is the disk-cached one,
so after the first build this costs one question embedding per example (seconds)."""

from __future__ import annotations

import gradio as gr
import pytest

from playground.ui.examples import click_handler, compute_example, load_example_file

RANKS = ("rank", "chunk_index", "source", "start", "end", "dense_rank", "bm25_rank", "hybrid_rank", "first_stage_rank")
SCORES = ("dense_score", "bm25_score", "hybrid_score", "rerank_score")


def ranking(results: list[dict]) -> list[tuple]:
    return [tuple(row[key] for key in RANKS) for row in results]


def assert_scores_close(fresh: list, cached: list, where: str) -> None:
    """Missing scores (None: BM25 matched nothing, no rerank) in the same places; numbers within float noise."""
    assert [value is None for value in fresh] == [value is None for value in cached], where
    numbers = [(new, old) for new, old in zip(fresh, cached) if old is not None]
    assert [new for new, _ in numbers] == pytest.approx([old for _, old in numbers], rel=1e-4, abs=1e-5), where


def scores(results: list[dict]) -> list[float | None]:
    return [row[key] for row in results for key in SCORES]


@pytest.mark.slow
def test_every_rag_example_ranks_as_cached(settings, model_manager, real_model):
    from playground.ui import build_app

    demo = build_app(settings, model_manager)
    tab = next(tab for tab in demo.playground_links if tab.key == "rag")
    outputs = click_handler(demo, tab.run_button).outputs
    index = next(i for i, component in enumerate(outputs) if isinstance(component, gr.JSON))
    examples = load_example_file("rag").examples
    assert len(examples) >= 2
    for example in examples:
        cached = example.outputs[index]
        fresh = compute_example(demo, tab, example)[index]
        assert (fresh["question"], fresh["method"], fresh["k"]) == (cached["question"], cached["method"], cached["k"])
        assert fresh["corpus_chunks"] == cached["corpus_chunks"], example.name
        assert ranking(fresh["results"]) == ranking(cached["results"]), example.name
        assert ranking(fresh["reranked_candidates"]) == ranking(cached["reranked_candidates"]), example.name
        assert_scores_close(scores(fresh["results"]), scores(cached["results"]), example.name)
        assert sorted(fresh["cutoffs"]) == sorted(cached["cutoffs"]), example.name
        assert_scores_close([fresh["cutoffs"][key] for key in sorted(cached["cutoffs"])],
                            [cached["cutoffs"][key] for key in sorted(cached["cutoffs"])], example.name)

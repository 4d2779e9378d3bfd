"""RAG: MiniLM on the device vs on the CPU (cosine), chunk + index the shipped corpus, retrieve with every method,
the LLM judge batched vs one at a time, a grounded answer."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import median
from harness import RAG_QUESTION, Run, Section, is_exact, plain, step, sync, within
from playground.rag import (
    METHODS,
    ChunkingSettings,
    answer_question,
    apply_rerank,
    build_index,
    evaluate_index,
    judge_relevance,
    python_reference_corpus,
    retrieve,
)
from playground.rag.embedding import embed_texts
from playground.runtime import resolve_model
from playground.runtime.loading import load_embedding_model
from playground.runtime.registry import DEFAULT_EMBEDDING_MODEL

pytestmark = pytest.mark.device


def test_rag(run: Run, section: Section) -> None:
    loaded = run.model()
    embedder = run.manager.embedding_model(run.progress)
    section.check("embedding model on the device", str(embedder.device).startswith(run.device), str(embedder.device),
                  run.device)
    topics = run.sizes.rag_topics
    corpus = python_reference_corpus(list(topics) if topics else None)
    fresh = Path(tempfile.mkdtemp(prefix="rag-cache-", dir=run.scratch))  # no cached embeddings: embed on the device
    index = build_index(corpus, ChunkingSettings("characters", 800, 100), embedder, DEFAULT_EMBEDDING_MODEL, fresh,
                        run.progress)
    section.check("index built from fresh embeddings", not index.from_cache and len(index.chunks) > 0,
                  f"{len(index.chunks)} chunks of {len(corpus.documents)} documents in {index.build_seconds:.2f} s",
                  detail=f"dense backend {index.dense.backend}")
    section.metric("indexing (chunk + embed + BM25)", len(index.chunks) / index.build_seconds, "chunks/s")
    norms = np.linalg.norm(index.embeddings, axis=1)
    section.check("embeddings are unit vectors", float(np.abs(norms - 1).max()) < 1e-3, float(np.abs(norms - 1).max()))
    with step(section, "device vs CPU embeddings"):
        cpu_embedder = embedder
        if run.device != "cpu":
            embedding_spec = resolve_model(DEFAULT_EMBEDDING_MODEL, kind="embedding")
            cpu_embedder = load_embedding_model(embedding_spec, "cpu", run.settings.cache_dir, run.settings.offline)
        texts = list(index.chunk_set.texts[: run.sizes.rag_cpu_chunks])
        sync(run.device)
        started = time.perf_counter()
        on_device = embed_texts(embedder, texts)
        sync(run.device)
        device_seconds = time.perf_counter() - started
        started = time.perf_counter()
        on_cpu = embed_texts(cpu_embedder, texts)
        cpu_seconds = time.perf_counter() - started
        cosine = (on_device * on_cpu).sum(axis=1)
        section.check(f"{run.device} vs CPU embeddings, {len(texts)} chunks", float(cosine.min()) > 0.999,
                      float(cosine.min()), "min cosine > 0.999")
        gap = float(np.abs(index.embeddings[: len(texts)] - on_device).max())
        section.check("index embeddings == embed_texts again", gap < 1e-4, gap)
        section.metric(f"embedding throughput on {run.device}", len(texts) / device_seconds, "chunks/s",
                       f"CPU: {len(texts) / cpu_seconds:.1f} chunks/s, {len(texts)} chunks")
    with step(section, "retrieval"):
        latencies = []
        for method in METHODS:
            started = time.perf_counter()
            result = retrieve(index, embedder, RAG_QUESTION, method, k=5)
            latencies.append(time.perf_counter() - started)
            section.check(f"retrieve {method} top-5", len(result.rows) == 5
                          and len(json.dumps(plain(result.as_dict()))) > 0, [row.chunk.source for row in result.rows[:3]])
        section.metric("query latency (embed + score + rank)", median(latencies) * 1e3, "ms")
        report = evaluate_index(index, embedder)
        scores = {s.method: s for s in report.methods}
        section.metric("retrieval quality on the question set", {m: round(s.recall[5], 3) for m, s in scores.items()},
                       "recall@5", f"{len(report.questions)} questions")
        section.check("hybrid recall@5", scores["hybrid"].recall[5] >= 0.5, scores["hybrid"].recall[5], ">= 0.5",
                      soft=True)
    with step(section, "LLM judge and rerank"):
        candidates = run.sizes.judge_passages
        first = retrieve(index, embedder, RAG_QUESTION, "hybrid", k=min(3, candidates), rerank_candidates=candidates)
        passages = [row.chunk.text for row in first.candidates]
        started = time.perf_counter()
        batched = judge_relevance(loaded.model, loaded.tokenizer, RAG_QUESTION, passages, batch_size=len(passages),
                                  lock=loaded.lock)
        judge_seconds = time.perf_counter() - started
        single = judge_relevance(loaded.model, loaded.tokenizer, RAG_QUESTION, passages, batch_size=1,
                                 lock=loaded.lock)
        gap = max(abs(a.score - b.score) for a, b in zip(batched, single))
        within(section, "LLM judge: batched (left padded) == one at a time, P(yes)", gap,
               1e-3 if is_exact(loaded) else 0.05, is_exact(loaded), f"{len(passages)} passages in {judge_seconds:.2f} s")
        reranked = apply_rerank(first, [j.score for j in batched])
        section.check("rerank keeps the judged scores", sorted(r.rerank_score for r in reranked.candidates)
                      == sorted(j.score for j in batched))
    with step(section, "grounded answer"):
        result = retrieve(index, embedder, RAG_QUESTION, "hybrid", k=2)
        answer = answer_question(loaded.model, loaded.tokenizer, result.question, [row.chunk for row in result.rows],
                                 strict=True, position="first", max_new_tokens=run.sizes.answer_tokens,
                                 eos_token_ids=loaded.eos_token_ids, lock=loaded.lock)
        section.check("grounded answer", bool(answer.answer.strip())
                      and answer.finish_reason in ("eos", "length", "stop_string"), repr(answer.answer[:70]),
                      detail=f"{answer.new_tokens} tokens in {answer.seconds:.2f} s, citations {list(answer.citations)}, "
                             f"{answer.finish_reason}")
        section.data["answer"] = answer.as_dict()

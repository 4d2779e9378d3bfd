"""RAG benchmarks: ours vs the bare library call, same run, warm-up, median of repeats.

1. Query latency on the default corpus after indexing: `retrieve` (embed the question, dense + BM25
   + RRF scores, the result table as JSON) vs `SentenceTransformer.encode` + `semantic_search` on the
   same embeddings. Target: ratio <= 1.5.
2. Indexing throughput (chunks/s): `embed_texts` (length-sorted groups with progress) vs one
   `SentenceTransformer.encode` call on the same chunks. Target: ratio >= 0.9.
3. Scale curve: top-10 search time at 1k / 10k / 100k synthetic 384-d chunks (mixed from the real
   corpus's embeddings), FAISS HNSW vs exact numpy (ratio < 1: FAISS is faster), with HNSW's
   recall@10 against the exact answer.

`python -m benchmarks.rag [--quick]` prints the table; `--quality` prints the retrieval
evaluation (recall@k, MRR, nDCG) on the question set instead, as shown in docs/tabs/rag.md.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from benchmarks.common import interleaved, median, print_table, row

CORPUS_CHUNKING = {"unit": "characters", "size": 800, "overlap": 100}


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""


def _models() -> tuple[Any, Any]:
    from playground.config import load_settings
    from playground.runtime import ModelManager

    manager = ModelManager(load_settings(["--offline"]))
    return manager, manager.embedding_model()


def _default_index(manager: Any, embedder: Any) -> Any:
    from playground.rag import ChunkingSettings, build_index, python_reference_corpus
    from playground.runtime.registry import DEFAULT_EMBEDDING_MODEL

    return build_index(python_reference_corpus(), ChunkingSettings(**CORPUS_CHUNKING), embedder,
                       DEFAULT_EMBEDDING_MODEL, manager.settings.cache_dir)


def query_latency(embedder: Any, index: Any, repeats: int) -> list[dict[str, Any]]:
    import torch
    from sentence_transformers.util import semantic_search

    from playground.rag import load_questions, retrieve

    questions = [q.question for q in load_questions()[:10]]
    corpus = torch.from_numpy(index.embeddings)

    def bare() -> None:
        for question in questions:
            query = embedder.encode([question], normalize_embeddings=True, show_progress_bar=False)
            semantic_search(torch.from_numpy(query), corpus, top_k=5)

    rows = []
    for method in ("dense", "hybrid"):
        ours, base = interleaved(lambda: [retrieve(index, embedder, q, method, 5).as_dict() for q in questions],
                                 bare, repeats, warmup=1)
        rows.append(row(f"RAG query latency, {method}", median(ours) / len(questions) * 1e3,
                        median(base) / len(questions) * 1e3, "ms/query",
                        f"{len(index.chunks)} chunks of the Python reference (800/100 characters), k=5, 10 questions; "
                        f"ours: retrieve() with all scores + JSON; baseline: encode + semantic_search; {_load()}",
                        target="<= 1.5x"))
    return rows


def indexing_throughput(embedder: Any, index: Any, chunks: int, repeats: int) -> dict[str, Any]:
    from playground.rag.embedding import embed_texts

    texts = [chunk.text for chunk in index.chunks[:chunks]]
    ours, base = interleaved(lambda: embed_texts(embedder, texts), lambda: embedder.encode(
        texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False), repeats, warmup=1)
    return row("RAG indexing throughput", len(texts) / median(ours), len(texts) / median(base), "chunks/s",
               f"{len(texts)} chunks of the Python reference, batch 32; ours: embed_texts (length-sorted groups "
               f"with progress); baseline: one SentenceTransformer.encode; {_load()}", higher_is_better=True,
               target=">= 0.9x")


def synthetic_chunks(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit vectors on the real corpus's embedding manifold: random mixes of two real chunk
    embeddings plus a little noise. (i.i.d. Gaussian vectors have no neighbourhood structure at all,
    which makes every approximate index look bad and no real corpus looks like that.)"""
    first, second = rng.integers(0, len(real), count), rng.integers(0, len(real), count)
    weight = rng.uniform(0, 1, (count, 1)).astype(np.float32)
    mixed = weight * real[first] + (1 - weight) * real[second]
    mixed += 0.05 * rng.normal(size=mixed.shape).astype(np.float32)
    return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def scale_curve(index: Any, embedder: Any, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    from playground.rag import load_questions
    from playground.rag.embedding import embed_texts
    from playground.rag.search import DenseIndex

    rng = np.random.default_rng(0)
    probes = embed_texts(embedder, [q.question for q in load_questions()])  # [45, 384] real questions
    rows = []
    for size in sizes:
        embeddings = synthetic_chunks(index.embeddings, size, rng)
        exact = DenseIndex(embeddings, faiss_threshold=size + 1)
        started = time.perf_counter()
        approximate = DenseIndex(embeddings, faiss_threshold=0)
        build_seconds = time.perf_counter() - started
        hnsw, flat = interleaved(lambda: [approximate.search(p, 10) for p in probes],
                                 lambda: [exact.search(p, 10) for p in probes], repeats=5)
        recall = np.mean([len(set(exact.search(p, 10)[0].tolist()) & set(approximate.search(p, 10)[0].tolist())) / 10
                          for p in probes])
        rows.append(row(f"top-10 search @ {size:,} chunks, FAISS HNSW vs exact", median(hnsw) / len(probes) * 1e3,
                        median(flat) / len(probes) * 1e3, "ms/query",
                        f"{size:,} synthetic 384-d chunks mixed from the real corpus's embeddings, the "
                        f"{len(probes)} evaluation questions as queries; HNSW M=32, efSearch=128, built in "
                        f"{build_seconds:.1f} s, recall@10 vs exact {recall:.3f}; {_load()}"))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    manager, embedder = _models()
    index = _default_index(manager, embedder)
    rows = query_latency(embedder, index, repeats=3 if quick else 7)
    rows.append(indexing_throughput(embedder, index, chunks=64 if quick else 128, repeats=2 if quick else 5))
    rows += scale_curve(index, embedder, (1_000, 10_000) if quick else (1_000, 10_000, 100_000))
    return rows


def print_quality(rerank_candidates: int) -> None:
    """The evaluation table of docs/tabs/rag.md: dense, BM25, hybrid (and the LLM rerank of the hybrid top N)."""
    from playground.rag import evaluate_index, judge_relevance

    manager, embedder = _models()
    index = _default_index(manager, embedder)
    loaded = manager.load() if rerank_candidates else None

    def llm_scores(question: str, passages: list[str]) -> list[float]:
        return [j.score for j in judge_relevance(loaded.model, loaded.tokenizer, question, passages)]

    report = evaluate_index(index, embedder, rerank=llm_scores if rerank_candidates else None,
                            rerank_candidates=rerank_candidates)
    metrics = [f"recall@{k}" for k in report.ks] + ["MRR"] + [f"nDCG@{k}" for k in report.ks]
    print(f"{len(report.questions)} questions, {len(index.chunks)} chunks ({index.chunk_set.settings.describe()}), "
          f"{report.seconds:.0f} s")
    print("| method | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for scores in report.methods:
        values = [scores.recall[k] for k in report.ks] + [scores.mrr] + [scores.ndcg[k] for k in report.ks]
        print(f"| {scores.method} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 100k scale point")
    parser.add_argument("--quality", action="store_true", help="print the retrieval evaluation instead")
    parser.add_argument("--rerank", type=int, default=10, help="with --quality: LLM-rerank the hybrid top N (0 = off)")
    arguments = parser.parse_args()
    if arguments.quality:
        print_quality(arguments.rerank)
    else:
        print_table(run(arguments.quick))

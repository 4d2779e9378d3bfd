"""Retrieval evaluation on the question set we wrote for the Python language reference.

Relevance is per topic: a chunk is relevant to a question when it comes from one of the question's
relevant topics (the topics whose text contains the question's evidence sentence).

- recall@k: the fraction of questions with at least one relevant chunk in the top k (each question
  has one answer, so this is the recall of that answer; also called hit rate).
- MRR: the mean over questions of 1 / rank of the first relevant chunk (0 when none is ranked).
- nDCG@k: binary gains, DCG = sum over the top k of rel_i / log2(i + 1) (i from 1), divided by the
  DCG of the ideal ranking, in which all of the corpus's relevant chunks come first.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from playground.rag.embedding import ProgressFn, embed_texts, no_progress
from playground.rag.index import RetrievalIndex
from playground.rag.ranking import METHODS, check_settings, rank_corpus

QUESTIONS_PATH = Path(__file__).resolve().parents[2] / "assets" / "rag" / "questions.json"
EVAL_KS = (1, 3, 5, 10)
RERANKED = "hybrid + rerank"
RerankFn = Callable[[str, Sequence[str]], Sequence[float]]  # (question, passages) -> one score each


class EvaluationError(ValueError):
    """The evaluation cannot run on this corpus; the message says why."""


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    evidence: str  # a sentence of the reference that answers the question
    relevant: tuple[str, ...]  # pydoc topics containing the evidence


def load_questions(path: Path = QUESTIONS_PATH) -> tuple[EvalQuestion, ...]:
    records = json.loads(Path(path).read_text(encoding="utf-8"))["questions"]
    return tuple(EvalQuestion(r["question"], r["evidence"], tuple(r["relevant"])) for r in records)


def recall_at_k(ranked_sources: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> float:
    return 1.0 if any(source in relevant for source in ranked_sources[:k]) else 0.0


def reciprocal_rank(ranked_sources: Sequence[str], relevant: set[str] | frozenset[str]) -> float:
    for rank, source in enumerate(ranked_sources, start=1):
        if source in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked_sources: Sequence[str], relevant: set[str] | frozenset[str], k: int,
              relevant_in_corpus: int) -> float:
    """Binary-gain nDCG@k; `relevant_in_corpus` relevant chunks exist in the whole corpus."""
    dcg = sum(1.0 / math.log2(i + 2) for i, source in enumerate(ranked_sources[:k]) if source in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, relevant_in_corpus)))
    return dcg / ideal if ideal > 0 else 0.0


@dataclass(frozen=True)
class MethodScores:
    method: str
    recall: dict[int, float]  # k -> recall@k
    mrr: float
    ndcg: dict[int, float]  # k -> nDCG@k
    first_relevant_ranks: tuple[int | None, ...]  # per question; None: no relevant chunk ranked

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "mrr": self.mrr,
                **{f"recall@{k}": value for k, value in self.recall.items()},
                **{f"ndcg@{k}": value for k, value in self.ndcg.items()},
                "first_relevant_ranks": list(self.first_relevant_ranks)}


@dataclass(frozen=True)
class EvaluationReport:
    methods: tuple[MethodScores, ...]
    questions: tuple[EvalQuestion, ...]
    ks: tuple[int, ...]
    chunking: dict[str, Any]
    rerank_candidates: int
    seconds: float
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"questions": len(self.questions), "ks": list(self.ks), "chunking": self.chunking,
                "rerank_candidates": self.rerank_candidates, "seconds": round(self.seconds, 2),
                "notes": list(self.notes), "methods": [scores.as_dict() for scores in self.methods],
                "question_set": [{"question": q.question, "relevant": list(q.relevant)} for q in self.questions]}


def score_method(method: str, rankings: Sequence[Sequence[str]], questions: Sequence[EvalQuestion],
                 relevant_counts: Sequence[int], ks: Sequence[int] = EVAL_KS) -> MethodScores:
    """Metrics of one method from its ranked chunk sources, one list per question."""
    relevant_sets = [frozenset(question.relevant) for question in questions]
    reciprocal = [reciprocal_rank(ranked, relevant) for ranked, relevant in zip(rankings, relevant_sets)]
    return MethodScores(
        method=method,
        recall={k: float(np.mean([recall_at_k(r, rel, k) for r, rel in zip(rankings, relevant_sets)])) for k in ks},
        mrr=float(np.mean(reciprocal)),
        ndcg={k: float(np.mean([ndcg_at_k(r, rel, k, n) for r, rel, n in zip(rankings, relevant_sets, relevant_counts)]))
              for k in ks},
        first_relevant_ranks=tuple(round(1 / value) if value else None for value in reciprocal),
    )


def _reranked(order: Sequence[int], texts: Sequence[str], question: str, rerank: RerankFn, candidates: int) -> list[int]:
    """The top `candidates` of `order` sorted by rerank score (ties keep their order), the rest unchanged."""
    head = list(order[:candidates])
    scores = rerank(question, [texts[i] for i in head])
    return [head[i] for i in sorted(range(len(head)), key=lambda i: (-scores[i], i))] + list(order[candidates:])


def evaluate_index(index: RetrievalIndex, embedder: Any, questions: Sequence[EvalQuestion] | None = None,
                   ks: Sequence[int] = EVAL_KS, rerank: RerankFn | None = None, rerank_candidates: int = 10,
                   progress: ProgressFn = no_progress) -> EvaluationReport:
    """Dense, BM25 and hybrid (and hybrid + rerank when a reranker is given) on the question set.

    Questions none of whose relevant topics is in the index are skipped (with a note), so a slice
    of the corpus can be evaluated on the questions it can answer.
    """
    check_settings(METHODS[-1], 1, rerank_candidates)  # a retrieval's cap: each candidate costs a judge forward
    started = time.perf_counter()
    questions = load_questions() if questions is None else questions
    sources = [chunk.source for chunk in index.chunks]
    texts = [chunk.text for chunk in index.chunks]
    present = set(sources)
    usable = tuple(q for q in questions if present & set(q.relevant))
    if not usable:
        raise EvaluationError("None of the evaluation questions has its relevant topic in this corpus: the "
                              "question set is about the Python language reference; pick that corpus.")
    notes = (f"{len(questions) - len(usable)} questions skipped: their topics are not in this corpus.",) \
        if len(usable) < len(questions) else ()
    relevant_counts = [sum(source in q.relevant for source in sources) for q in usable]
    query_vectors = embed_texts(embedder, [q.question for q in usable])  # [n_questions, dim]
    method_names = [*METHODS, RERANKED] if rerank is not None else list(METHODS)
    ranked: dict[str, list[list[str]]] = {name: [] for name in method_names}
    for number, (question, vector) in enumerate(zip(usable, query_vectors)):
        progress(number / len(usable), f"Question {number + 1} of {len(usable)}")
        rankings = rank_corpus(index, vector, question.question)
        for method in METHODS:
            ranked[method].append([sources[i] for i in rankings.order(method)])
        if rerank is not None:
            order = _reranked(rankings.hybrid_order, texts, question.question, rerank, rerank_candidates)
            ranked[RERANKED].append([sources[i] for i in order])
    progress(1.0, "Evaluation done")
    scores = tuple(score_method(name, ranked[name], usable, relevant_counts, ks) for name in method_names)
    return EvaluationReport(scores, usable, tuple(ks), index.chunk_set.settings.as_dict(),
                            rerank_candidates if rerank is not None else 0, time.perf_counter() - started, notes)

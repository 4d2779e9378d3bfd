"""Retrieval-augmented generation, step by step, with every score kept:

corpus.py      documents: the Python language reference, or uploaded / pasted text (validated)
chunking.py    the one chunker: characters / tokens / sentences / paragraphs with overlap
embedding.py   unit-length embeddings and their disk cache
search.py      dense cosine (exact or FAISS), BM25 (bm25s), reciprocal rank fusion
index.py       a corpus's chunks + embeddings + BM25 + 2D map, and an in-memory store of them
projection.py  the 2D map (PCA, or UMAP when installed)
ranking.py     one question -> ranked chunks with every score; reordering by rerank scores
rerank.py      the LLM as a Yes/No relevance judge
answer.py      grounded prompt, greedy answer, citations, "lost in the middle" placement
evaluation.py  recall@k, MRR, nDCG on the question set in assets/rag/questions.json
"""

from playground.rag.answer import (
    MAX_NEW_TOKENS,
    POSITIONS,
    AnswerInputError,
    GroundedAnswer,
    answer_problems,
    answer_question,
    stream_answer,
    place_best,
)
from playground.rag.chunking import CHUNK_UNITS, Chunk, ChunkingError, ChunkingSettings, ChunkSet, chunk_corpus
from playground.rag.corpus import Corpus, CorpusError, Document, corpus_from_inputs, python_reference_corpus
from playground.rag.evaluation import EvaluationError, EvaluationReport, evaluate_index, load_questions
from playground.rag.index import IndexStore, RetrievalIndex, build_index
from playground.rag.projection import available_projections
from playground.rag.rerank import Judgement, JudgementCache, RerankError, judge_relevance
from playground.rag.ranking import (
    MAX_K,
    MAX_RERANK,
    METHODS,
    Retrieval,
    RetrievalInputError,
    ScoredChunk,
    apply_rerank,
    retrieve,
)
from playground.rag.search import DenseIndex, LexicalIndex, reciprocal_rank_fusion

__all__ = [
    "CHUNK_UNITS", "MAX_K", "MAX_NEW_TOKENS", "MAX_RERANK", "METHODS", "POSITIONS",
    "AnswerInputError", "Chunk", "ChunkSet", "ChunkingError", "ChunkingSettings", "Corpus", "CorpusError",
    "DenseIndex", "Document", "EvaluationError", "EvaluationReport", "GroundedAnswer", "IndexStore", "Judgement",
    "JudgementCache", "LexicalIndex", "RerankError", "Retrieval", "RetrievalIndex", "RetrievalInputError",
    "ScoredChunk", "answer_problems", "answer_question", "stream_answer", "apply_rerank", "available_projections", "build_index", "chunk_corpus",
    "corpus_from_inputs", "evaluate_index", "judge_relevance", "load_questions", "place_best",
    "python_reference_corpus", "reciprocal_rank_fusion", "retrieve",
]

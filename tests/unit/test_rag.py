"""Scores, ranks, cache, evaluation and the 2D map, each against an independent reference:
sentence-transformers' semantic_search, a float64 BM25, a hand-computed RRF, sklearn's nDCG and PCA."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from playground.figures import rag as figures
from playground.rag import embedding, evaluation, projection
from playground.rag.chunking import ChunkingSettings
from playground.rag.corpus import Corpus, Document, python_reference_corpus
from playground.rag.index import IndexStore, build_index
from playground.rag.ranking import RetrievalInputError, apply_rerank, rank_corpus, retrieve
from playground.rag.search import DenseIndex, LexicalIndex, reciprocal_rank_fusion, top_indices
from tiny import HashEmbedder


@pytest.fixture
def embedder(tiny_tokenizer):
    return HashEmbedder(tiny_tokenizer)


TOPICS = ["assert", "break", "continue", "pass", "del", "global", "nonlocal", "return", "raise", "lambda"]


@pytest.fixture
def index(embedder, tmp_path):
    return build_index(python_reference_corpus(TOPICS), ChunkingSettings("characters", 400, 50), embedder,
                       "hash-embedder", tmp_path)


def _unit_rows(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- dense -------------------------------------------------------------------------------------------


def test_dense_search_equals_semantic_search():
    from sentence_transformers.util import semantic_search

    rng = np.random.default_rng(0)
    embeddings, queries = _unit_rows(rng, 300, 24), _unit_rows(rng, 5, 24)
    dense = DenseIndex(embeddings)
    reference = semantic_search(torch.from_numpy(queries), torch.from_numpy(embeddings), top_k=10)
    for query, hits in zip(queries, reference):
        ids, scores = dense.search(query, 10)
        assert ids.tolist() == [hit["corpus_id"] for hit in hits]
        np.testing.assert_allclose(scores, [hit["score"] for hit in hits], atol=1e-6)
        np.testing.assert_allclose(dense.scores(query)[ids], scores, atol=1e-6)


def test_retrieve_dense_ranking_equals_semantic_search_on_the_same_embeddings(index, embedder):
    from sentence_transformers.util import semantic_search

    result = retrieve(index, embedder, "How do I leave a loop early?", "dense", k=8)
    query = embedding.embed_query(embedder, "How do I leave a loop early?")
    hits = semantic_search(torch.from_numpy(query[None]), torch.from_numpy(index.embeddings), top_k=8)[0]
    assert [row.chunk.index for row in result.rows] == [hit["corpus_id"] for hit in hits]
    np.testing.assert_allclose([row.dense_score for row in result.rows], [hit["score"] for hit in hits], atol=1e-6)
    assert [row.dense_rank for row in result.rows] == list(range(1, 9))


class RawVectorEmbedder:
    """Returns the given raw (un-normalised) vector for each text unless asked to normalise, as
    SentenceTransformer.encode does: a missing normalize_embeddings=True shows."""

    max_seq_length = 66

    def __init__(self, tokenizer, vectors: dict[str, list[float]]) -> None:
        self.tokenizer, self.vectors = tokenizer, vectors

    def get_embedding_dimension(self) -> int:
        return 3

    def encode(self, texts, batch_size=32, normalize_embeddings=False, convert_to_numpy=True, show_progress_bar=False):
        vectors = np.array([self.vectors[text.strip()] for text in texts], dtype=np.float32)
        if normalize_embeddings:
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


def test_dense_scores_are_cosines_of_unnormalised_vectors(tiny_tokenizer, tmp_path):
    """Catches a missing normalisation of the chunks or the question: two chunks with the same direction
    and lengths 20x apart must tie, and a shorter chunk at a smaller angle must beat both (a dot product
    would rank the longest first)."""
    from sklearn.metrics.pairwise import cosine_similarity

    vectors = {"long": [10.0, 10.0, 0.0], "short": [0.5, 0.5, 0.0], "near": [1.0, 0.5, 0.0],
               "question": [5.0, 0.0, 0.0]}
    embedder = RawVectorEmbedder(tiny_tokenizer, vectors)
    corpus = Corpus("raw", tuple(Document(name, name) for name in ("long", "short", "near")))
    index = build_index(corpus, ChunkingSettings(), embedder, "raw-vectors", tmp_path)
    result = retrieve(index, embedder, "question", "dense", k=3)
    texts = [row.chunk.text.strip() for row in result.rows]
    expected = cosine_similarity([vectors["question"]], [vectors[t] for t in texts])[0]  # sklearn, float64
    np.testing.assert_allclose([row.dense_score for row in result.rows], expected, atol=1e-6)
    assert texts[0] == "near" and set(texts[1:]) == {"long", "short"}
    assert result.rows[1].dense_score == pytest.approx(result.rows[2].dense_score, abs=1e-6)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-6)
    # The example discriminates: raw dot products would not tie and would put the long chunk first.
    raw = {t: float(np.dot(vectors["question"], vectors[t])) for t in texts}
    assert max(raw, key=raw.get) == "long" and raw["long"] > 10 * raw["short"]


def test_faiss_hnsw_above_the_threshold_finds_nearly_the_exact_neighbours():
    rng = np.random.default_rng(1)
    embeddings, queries = _unit_rows(rng, 3000, 32), _unit_rows(rng, 20, 32)
    approximate, exact = DenseIndex(embeddings, faiss_threshold=1000), DenseIndex(embeddings)
    assert (approximate.backend, exact.backend) == ("faiss-hnsw", "exact")
    recalls = []
    for query in queries:
        ids, scores = approximate.search(query, 10)
        np.testing.assert_allclose(scores, embeddings[ids] @ query, atol=1e-5)  # true cosines of what it found
        recalls.append(len(set(ids.tolist()) & set(exact.search(query, 10)[0].tolist())) / 10)
    assert np.mean(recalls) >= 0.9


def test_top_indices_breaks_ties_by_index_and_can_skip_zeros():
    scores = np.array([0.5, 0.9, 0.5, 0.0, 0.9, 0.0])
    assert top_indices(scores, 4).tolist() == [1, 4, 0, 2]
    assert top_indices(scores, 10, positive_only=True).tolist() == [1, 4, 0, 2]


# -- BM25 --------------------------------------------------------------------------------------------


def _reference_bm25(texts, query, k1=1.5, b=0.75):
    """Lucene BM25 in float64 from the textbook formula, with our own tokenizer."""
    from bm25s.stopwords import STOPWORDS_EN

    def tokens(text):
        return [t for t in re.findall(r"(?u)\b\w\w+\b", text.lower()) if t not in STOPWORDS_EN]

    docs = [tokens(text) for text in texts]
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    scores = np.zeros(n)
    for term in tokens(query):
        df = sum(term in doc for doc in docs)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, doc in enumerate(docs):
            tf = doc.count(term)
            scores[i] += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
    return scores


def test_bm25_scores_equal_the_textbook_formula_and_the_library():
    import bm25s

    texts = [chunk for d in python_reference_corpus(TOPICS).documents for chunk in d.text.split("\n\n")]
    lexical = LexicalIndex(texts)
    for query in ["finally clause loop", "raise exception from cause", "the of and", "lambda lambda expression"]:
        ours = lexical.scores(query)
        np.testing.assert_allclose(ours, _reference_bm25(texts, query), rtol=1e-5, atol=1e-6)
        library = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        library.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        terms = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        expected = library.get_scores(terms) if terms else np.zeros(len(texts))
        np.testing.assert_array_equal(ours, expected)


def test_a_question_of_stop_words_scores_zero_everywhere():
    lexical = LexicalIndex(["alpha beta", "gamma delta"])
    assert lexical.terms("the of and") == []
    assert lexical.scores("the of and").tolist() == [0.0, 0.0]


# -- RRF ---------------------------------------------------------------------------------------------


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([[3, 1, 2], [2, 4]], k=60)
    expected = {3: 1 / 61, 1: 1 / 62, 2: 1 / 63 + 1 / 61, 4: 1 / 62}
    assert [chunk for chunk, _ in fused] == [2, 3, 1, 4]  # 1 and 4 tie: lower id first
    for chunk, score in fused:
        assert score == pytest.approx(expected[chunk], abs=1e-15)


def test_hybrid_scores_in_a_retrieval_are_the_fusion_of_the_two_lists(index, embedder):
    result = retrieve(index, embedder, "What does raise from do with the cause?", "hybrid", k=5)
    query = embedding.embed_query(embedder, result.question)
    rankings = rank_corpus(index, query, result.question)
    by_hand = {}
    for ranking in (rankings.dense_order, rankings.bm25_order):
        for rank, chunk in enumerate(ranking, start=1):
            by_hand[int(chunk)] = by_hand.get(int(chunk), 0.0) + 1 / (60 + rank)
    for row in result.rows:
        assert row.hybrid_score == pytest.approx(by_hand[row.chunk.index])
        assert row.bm25_score == pytest.approx(float(rankings.bm25_scores[row.chunk.index]))
    assert [row.hybrid_rank for row in result.rows] == [1, 2, 3, 4, 5]
    scores = [row.hybrid_score for row in result.rows]
    assert scores == sorted(scores, reverse=True)


# -- retrieval and reranking -------------------------------------------------------------------------


def test_retrieval_rows_carry_every_score_and_cutoffs(index, embedder):
    result = retrieve(index, embedder, "global statement module variable", "bm25", k=3)
    assert len(result.rows) == 3 and len(result.dense_scores) == len(index.chunks)
    assert [row.bm25_rank for row in result.rows] == [1, 2, 3]
    cut = result.cutoffs()
    assert cut["bm25"] == pytest.approx(result.rows[-1].bm25_score)
    assert cut["dense"] == pytest.approx(np.sort(result.dense_scores)[-3])
    data = result.as_dict()
    assert data["results"][0]["source"] == result.rows[0].chunk.source
    assert set(data["results"][0]) >= {"dense_score", "bm25_score", "hybrid_rank", "rerank_score", "rank_change"}
    json.dumps(data)  # plain JSON


def test_bm25_says_when_fewer_chunks_match_than_k(index, embedder):
    result = retrieve(index, embedder, "zzzunknownword", "bm25", k=5)
    assert result.rows == () and "Only 0 chunks contain a query term" in result.notes[0]


def test_reranking_reorders_the_candidates_and_reports_rank_changes(index, embedder):
    first = retrieve(index, embedder, "lambda expression", "hybrid", k=3, rerank_candidates=6)
    assert len(first.candidates) == 6 and len(first.rows) == 3
    scores = [0.1, 0.2, 0.3, 0.9, 0.5, 0.3]
    reranked = apply_rerank(first, scores)
    assert [row.first_stage_rank for row in reranked.candidates] == [4, 5, 3, 6, 2, 1]  # ties keep first-stage order
    assert [row.rank_change for row in reranked.rows] == [3, 3, 0]
    assert [row.rerank_score for row in reranked.rows] == [0.9, 0.5, 0.3]
    with pytest.raises(ValueError, match="one rerank score per candidate"):
        apply_rerank(first, [0.5])


@pytest.mark.parametrize("question, method, k, message", [
    ("  ", "dense", 5, "Type a question"),
    ("q", "sparse", 5, "method must be one of"),
    ("q", "dense", 0, r"k must be a whole number in 1\.\.20"),
])
def test_bad_retrieval_inputs_are_explained(index, embedder, question, method, k, message):
    with pytest.raises(RetrievalInputError, match=message):
        retrieve(index, embedder, question, method, k)


def test_a_very_long_question_is_cut_with_a_note(index, embedder):
    result = retrieve(index, embedder, "loop " * 400, "dense", k=2)
    assert len(result.question) == 1000 and "cut to its first 1000" in result.notes[0]


# -- embeddings and their cache ----------------------------------------------------------------------


def test_embed_texts_returns_rows_in_input_order(embedder):
    texts = ["short", "a much longer text than the others", "mid length", ""]
    together = embedding.embed_texts(embedder, texts, batch_size=2)
    one_by_one = np.stack([embedder.encode([t], normalize_embeddings=True)[0] for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_the_disk_cache_is_reused_keyed_and_pickle_free(embedder, tmp_path):
    corpus = python_reference_corpus(["assert", "pass"])
    settings = ChunkingSettings("characters", 300, 30)
    first = build_index(corpus, settings, embedder, "hash", tmp_path)
    work = embedder.encoded
    second = build_index(corpus, settings, embedder, "hash", tmp_path)
    assert (first.from_cache, second.from_cache) == (False, True) and embedder.encoded == work
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    files = sorted(p.name for p in (tmp_path / "embeddings").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")  # no temp files left
    np.load(tmp_path / "embeddings" / files[1], allow_pickle=False)  # loads without pickle
    assert not build_index(corpus, ChunkingSettings("characters", 300, 40), embedder, "hash", tmp_path).from_cache
    assert not build_index(corpus, settings, embedder, "other-model", tmp_path).from_cache


def test_a_corrupt_cache_entry_is_recomputed(embedder, tmp_path):
    corpus = python_reference_corpus(["assert"])
    settings = ChunkingSettings("characters", 300, 30)
    build_index(corpus, settings, embedder, "hash", tmp_path)
    array_path = next((tmp_path / "embeddings").glob("*.npy"))
    array_path.write_bytes(array_path.read_bytes()[:100])  # truncated
    rebuilt = build_index(corpus, settings, embedder, "hash", tmp_path)
    assert not rebuilt.from_cache
    assert build_index(corpus, settings, embedder, "hash", tmp_path).from_cache


def test_the_index_store_builds_each_corpus_once(embedder, tmp_path):
    store, calls = IndexStore(max_items=1), []
    corpus, settings = python_reference_corpus(["pass"]), ChunkingSettings()

    def build():
        calls.append(1)
        return build_index(corpus, settings, embedder, "hash", tmp_path)

    first = store.get_or_build(corpus, settings, "hash", build)
    assert store.get_or_build(corpus, settings, "hash", build) is first and len(calls) == 1
    other = python_reference_corpus(["del"])
    store.get_or_build(other, settings, "hash", lambda: build_index(other, settings, embedder, "hash", tmp_path))
    store.get_or_build(corpus, settings, "hash", build)  # evicted (max 1), so built again
    assert len(calls) == 2


# -- evaluation --------------------------------------------------------------------------------------


def test_the_question_set_matches_its_evidence():
    from pydoc_data.topics import topics

    questions = evaluation.load_questions()
    assert len(questions) >= 40
    flat = {key: " ".join(text.split()) for key, text in topics.items()}
    for question in questions:
        assert list(question.relevant) == sorted(key for key, text in flat.items() if question.evidence in text), \
            question.question


def test_ndcg_equals_sklearn():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    sources = [f"topic{i % 7}" for i in range(60)]
    relevant = {"topic2", "topic5"}
    for _ in range(10):
        order = rng.permutation(60)
        ranked = [sources[i] for i in order]
        truth = np.array([[1.0 if s in relevant else 0.0 for s in sources]])
        score = np.zeros((1, 60))
        score[0, order] = np.arange(60, 0, -1)  # the ranking as scores
        for k in (1, 3, 5, 10):
            expected = ndcg_score(truth, score, k=k)
            assert evaluation.ndcg_at_k(ranked, relevant, k, int(truth.sum())) == pytest.approx(expected)


def test_recall_and_reciprocal_rank_by_hand():
    ranked = ["a", "b", "c", "b"]
    assert [evaluation.recall_at_k(ranked, {"c"}, k) for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert evaluation.reciprocal_rank(ranked, {"b"}) == 0.5
    assert evaluation.reciprocal_rank(ranked, {"z"}) == 0.0


def test_evaluation_on_a_slice_skips_other_questions_and_an_oracle_reranker_helps(index, embedder):
    questions = evaluation.load_questions()
    report = evaluation.evaluate_index(index, embedder, questions)
    usable = [q for q in questions if set(q.relevant) & set(TOPICS)]
    assert len(report.questions) == len(usable) and "skipped" in report.notes[0]
    assert [m.method for m in report.methods] == ["dense", "bm25", "hybrid"]
    for scores in report.methods:
        assert all(0 <= v <= 1 for v in [*scores.recall.values(), *scores.ndcg.values(), scores.mrr])
        assert list(scores.recall.values()) == sorted(scores.recall.values())  # recall@k grows with k

    def oracle(question, passages):  # 1 for passages of a relevant topic
        relevant = next(q.relevant for q in usable if q.question == question)
        text_of = {d.source: d.text for d in index.corpus.documents}
        return [float(any(p in text_of[t] for t in relevant)) for p in passages]

    with_oracle = evaluation.evaluate_index(index, embedder, questions, rerank=oracle, rerank_candidates=10)
    hybrid, reranked = with_oracle.methods[2], with_oracle.methods[3]
    assert reranked.method == "hybrid + rerank"
    assert reranked.recall[1] == hybrid.recall[10]  # the oracle lifts any relevant chunk of the top 10 to rank 1
    json.dumps(with_oracle.as_dict())


def test_evaluation_refuses_a_corpus_without_any_relevant_topic(embedder, tmp_path):
    other = build_index(Corpus("x", (Document("notes", "nothing about python here"),)), ChunkingSettings(), embedder,
                        "hash", tmp_path)
    with pytest.raises(evaluation.EvaluationError, match="Python language reference"):
        evaluation.evaluate_index(other, embedder)


# -- the 2D map --------------------------------------------------------------------------------------


def test_pca_map_equals_sklearn_up_to_sign_and_is_deterministic():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(4)
    data = _unit_rows(rng, 80, 12)
    ours = projection.fit_pca(data)
    reference = PCA(n_components=2).fit(data)
    np.testing.assert_allclose(np.abs(ours.chunk_xy), np.abs(reference.transform(data)), atol=1e-5)
    np.testing.assert_allclose(ours.explained, reference.explained_variance_ratio_, atol=1e-6)
    np.testing.assert_array_equal(ours.chunk_xy, projection.fit_pca(data).chunk_xy)
    np.testing.assert_allclose(ours.transform(data[7]), ours.chunk_xy[7], atol=1e-9)


def test_pca_of_a_single_chunk_is_finite():
    single = projection.fit_pca(np.ones((1, 5), dtype=np.float32) / math.sqrt(5))
    assert np.isfinite(single.chunk_xy).all() and single.explained == (0.0, 0.0)


def test_umap_is_offered_only_when_installed(monkeypatch):
    monkeypatch.setattr(projection.importlib.util, "find_spec", lambda name: None)
    assert projection.available_projections() == ("pca",)
    with pytest.raises(ValueError, match="install umap-learn"):
        projection.fit_projector(np.eye(4), "umap")


# -- figures -----------------------------------------------------------------------------------------


def _axis_titles(figure):
    layout = figure.to_dict()["layout"]
    return [layout[key]["title"]["text"] for key in layout if key.startswith(("xaxis", "yaxis"))
            and layout[key].get("title")]


def test_figures_have_titled_axes_and_exact_numbers_in_hover(index, embedder):
    result = apply_rerank(retrieve(index, embedder, "finally clause", "hybrid", 4), [0.3, 0.9, 0.1, 0.5])
    bars = figures.score_bars_figure(result)
    assert {"dense cosine", "BM25", "hybrid (RRF)", "rerank P(Yes)"} <= set(_axis_titles(bars))
    dense_hover = " ".join(bars.data[0].hovertext)
    assert f"{result.rows[0].dense_score:.4f}" in dense_hover
    distribution = figures.score_distribution_figure(result)
    assert len(_axis_titles(distribution)) >= 4
    assert any("cutoff" in a.text for a in distribution.layout.annotations)
    map_figure = figures.embedding_map_figure(index.projector(), index.chunks, result)
    assert [trace.name for trace in map_figure.data] == ["chunks", "retrieved top 4", "question"]
    assert map_figure.data[0].marker.colorbar.title.text.startswith("cosine")
    assert _axis_titles(map_figure)[0].startswith("PC 1")
    lengths = figures.chunk_length_figure(index.chunk_set, index.embedder_window)
    assert "chunk length (embedding-model tokens)" in _axis_titles(lengths)
    report = evaluation.evaluate_index(index, embedder)
    assert len(figures.evaluation_figure(report).data) == 3


def test_the_map_samples_large_corpora_but_keeps_the_retrieved_chunks(index, embedder, monkeypatch):
    monkeypatch.setattr(figures, "MAX_MAP_POINTS", 5)
    result = retrieve(index, embedder, "return value", "dense", 3)
    figure = figures.embedding_map_figure(index.projector(), index.chunks, result)
    assert len(figure.data[0].x) <= 5 + 3
    assert f"of {len(index.chunks)} chunks shown" in figure.layout.title.text


@pytest.mark.parametrize("lengths", [[300], [2_000], [2_500, 700], [8_000], [120_000], [40, 40, 40]])
def test_suggested_chunks_give_a_useful_number_of_chunks(lengths):
    from playground.rag.chunking import SUGGESTED_SIZES, USEFUL_CHUNKS, chunk_count, chunk_text, suggested_chunking

    chosen = suggested_chunking(lengths)
    count = sum(chunk_count(n, chosen.size, chosen.overlap) for n in lengths)
    if chosen.size != SUGGESTED_SIZES[-1]:
        assert count >= USEFUL_CHUNKS
    # the largest such size: one step larger would give fewer than USEFUL_CHUNKS chunks
    larger = [size for size in SUGGESTED_SIZES if size > chosen.size]
    if larger:
        bigger = larger[-1]
        assert sum(chunk_count(n, bigger, bigger // 8) for n in lengths) < USEFUL_CHUNKS
    text = "x" * lengths[0]  # and the chunker really makes that many chunks
    assert len(chunk_text(text, chosen)) == chunk_count(lengths[0], chosen.size, chosen.overlap)

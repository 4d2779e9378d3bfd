"""The RAG endpoints driven through gradio_client, like a script would."""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from playground.ui.rag_tab import CORPUS_CHOICES

pytestmark = pytest.mark.slow

REFERENCE, OWN = CORPUS_CHOICES
PASTED = ("The Eiffel Tower is in Paris. It was finished in 1889.\n\n"
          "Mount Fuji is the highest mountain in Japan. It is 3776 metres high.\n\n"
          "The Danube flows through Vienna, Budapest and Belgrade before reaching the Black Sea.")
CHUNKS = ("sentences", 1, 0)


def retrieve(client, question, source=OWN, files=None, pasted=PASTED, method="hybrid", k=2, rerank=0):
    return client.predict(question, source, files, pasted, *CHUNKS, method, k, rerank, "pca", api_name="/retrieve")


def test_rag_index_reports_the_corpus_and_its_chunks(client):
    stats, table, _plot, data = client.predict(OWN, None, PASTED, *CHUNKS, api_name="/rag_index")
    assert data["corpus"]["documents"] == 1 and data["chunks"]["chunks"] == 5
    assert [c["start"] for c in data["chunk_list"]][:2] == [0, PASTED.index("It was")]
    assert "5 chunks" in stats and len(table["data"]) == 5


def test_retrieve_returns_every_score_for_the_ranked_chunks(client):
    summary, table, _bars, _dist, _map, data = retrieve(client, "How tall is Mount Fuji?")
    assert data["method"] == "hybrid" and data["k"] == 2 and data["corpus_chunks"] == 5
    top = data["results"][0]
    assert "3776" in top["text"] or "Fuji" in top["text"]
    for row in data["results"]:
        assert -1.0 <= row["dense_score"] <= 1.0 and row["bm25_score"] >= 0.0 and row["hybrid_rank"] >= 1
    assert [row["rank"] for row in data["results"]] == [1, 2]
    assert "fuji" in data["query_terms"] and len(table["data"]) == 2


def test_retrieve_with_the_llm_reranker(client):
    *_, data = retrieve(client, "Which river flows through Vienna?", k=2, rerank=3)
    assert data["reranked"] and len(data["results"]) == 2 and len(data["reranked_candidates"]) == 1
    for row in data["results"] + data["reranked_candidates"]:
        assert 0.0 <= row["rerank_score"] <= 1.0
        assert row["rank_change"] == row["first_stage_rank"] - row["rank"]


def test_rag_answer_returns_the_prompt_the_answer_and_citations(client):
    prompt, _markdown, data = client.predict("When was the Eiffel Tower finished?", OWN, None, PASTED, *CHUNKS,
                                             "hybrid", 2, 0, True, "last", 24, api_name="/rag_answer")
    assert prompt == data["prompt_text"] and "<|im_start|>assistant" in prompt
    assert "When was the Eiffel Tower finished?" in prompt and "[2] (source: pasted text)" in prompt
    assert data["position"] == "last" and [p["retrieval_rank"] for p in data["passages"]] == [2, 1]
    assert isinstance(data["citations"], list) and data["new_tokens"] <= 24


def test_rag_positions_compares_first_middle_last(client):
    table, data = client.predict("Where is the Eiffel Tower?", OWN, None, PASTED, *CHUNKS, "dense", 3, 0, True, 8,
                                 api_name="/rag_positions")
    assert [r["position"] for r in data["positions"]] == ["first", "middle", "last"]
    assert [row[1] for row in table["data"]] == [1, 2, 3]  # where the best chunk ended up


def test_empty_question_is_a_friendly_empty_state(client):
    summary, *_, data = retrieve(client, "   ")
    assert data == {"empty": True, "message": summary}


def test_bad_inputs_are_clear_errors_and_the_previous_corpus_stays_usable(client, tmp_path):
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    with pytest.raises(Exception, match="photo.txt: this looks like a binary file"):
        retrieve(client, "Fuji?", files=[handle_file(str(binary))], pasted="")
    latin = tmp_path / "notes.md"
    latin.write_bytes("déjà vu".encode("latin-1"))
    with pytest.raises(Exception, match="notes.md: not valid UTF-8"):
        client.predict(OWN, [handle_file(str(latin))], "", *CHUNKS, api_name="/rag_index")
    with pytest.raises(Exception, match="The corpus is empty"):
        retrieve(client, "Fuji?", pasted="  ")
    with pytest.raises(Exception, match="overlap must be"):
        client.predict("Fuji?", OWN, None, PASTED, "sentences", 2, 2, "hybrid", 2, 0, "pca", api_name="/retrieve")
    *_, data = retrieve(client, "How tall is Mount Fuji?")  # the earlier corpus answers as before
    assert data["corpus_chunks"] == 5


def test_uploaded_text_files_are_a_corpus(client, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Trains\n\nThe Shinkansen is a high-speed railway in Japan.", encoding="utf-8")
    *_, data = retrieve(client, "high-speed railway", files=[handle_file(str(notes))], pasted="", k=1)
    assert data["results"][0]["source"] == "notes.md" and "Shinkansen" in data["results"][0]["text"]


def test_rag_evaluate_on_the_python_reference(client):
    table, _figure, data = client.predict("characters", 800, 100, 0, api_name="/rag_evaluate")
    assert data["questions"] >= 40 and [m["method"] for m in data["methods"]] == ["dense", "bm25", "hybrid"]
    for method in data["methods"]:
        assert 0.0 <= method["recall@1"] <= method["recall@10"] <= 1.0 and 0.0 <= method["mrr"] <= 1.0
    assert [row[0] for row in table["data"]] == ["dense", "bm25", "hybrid"]

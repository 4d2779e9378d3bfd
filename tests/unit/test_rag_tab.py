"""The RAG tab's handlers (RagHandlers, called directly) with a hashed bag-of-words embedder and the tiny
Llama: API names, JSON shapes, the empty state, errors as messages, uploads that are refused without losing
the corpus."""

from __future__ import annotations

import gradio as gr
import pytest

from playground.ui import rag_tab
from playground.ui.rag_tab import CORPUS_CHOICES, EMPTY_QUESTION, RagHandlers, create_rag_tab
from tiny import HashEmbedder, make_tiny_llama, make_tiny_tokenizer

REFERENCE, OWN = CORPUS_CHOICES
PASTED = "Paris is the capital of France. Rome is the capital of Italy.\n\nTokens attend to earlier tokens."
CORPUS = (OWN, None, PASTED, "sentences", 1, 0)


@pytest.fixture(scope="module")
def tab(stub_context, as_loaded):
    tokenizer = make_tiny_tokenizer()
    tokenizer.add_tokens(["Yes", "No"])  # the judge needs them as whole tokens
    loaded = as_loaded(make_tiny_llama(len(tokenizer)), tokenizer)
    ctx = stub_context(loaded, embedder=HashEmbedder(tokenizer))
    with gr.Blocks() as demo:
        components = create_rag_tab(ctx)
    return {"handlers": RagHandlers(ctx), "components": components, "demo": demo}


def test_public_api_names(tab):
    config = tab["demo"].get_config_file()
    public = {d["api_name"] for d in config["dependencies"] if d.get("api_visibility", "public") == "public"}
    assert {"rag_index", "retrieve", "rag_answer", "rag_positions", "rag_evaluate"} <= public


def test_rag_index_reports_stats_chunks_and_a_figure(tab):
    stats, rows, figure, data = tab["handlers"].build(*CORPUS)
    assert data["chunks"]["chunks"] == 3 and len(rows) == 3
    assert [row[1] for row in rows] == ["pasted text"] * 3
    assert "3 chunks" in stats and figure.layout.xaxis.title.text


def test_retrieve_returns_a_table_three_figures_and_every_score(tab):
    summary, rows, bars, distribution, embedding_map, data = tab["handlers"].search(
        "capital of Italy", *CORPUS, "hybrid", 2, 3, "pca")
    assert len(rows) == 2 and len(rows[0]) == len(rag_tab.TABLE_HEADERS)
    assert data["reranked"] and len(data["reranked_candidates"]) == 1
    assert [r["rank"] for r in data["results"]] == [1, 2]
    assert rows[0][2] == round(data["results"][0]["dense_score"], 4)
    assert "LLM rerank" in summary and "`capital`" in summary
    assert bars.data and distribution.data and embedding_map.data[-1].name == "question"


def test_empty_question_is_a_friendly_empty_state(tab):
    summary, rows, *_, data = tab["handlers"].search("  ", *CORPUS, "dense", 3, 0, "pca")
    assert summary == EMPTY_QUESTION and rows == [] and data == {"empty": True, "message": EMPTY_QUESTION}


@pytest.mark.parametrize("corpus, settings, message", [
    ((OWN, None, "   "), ("characters", 800, 100), "The corpus is empty"),
    ((OWN, None, PASTED), ("characters", 100, 100), "overlap must be"),
    ((OWN, None, PASTED), ("words", 10, 1), "chunk unit must be one of"),
    ((OWN, None, PASTED), ("characters", None, 1), "Set both the chunk size and the overlap"),
])
def test_bad_corpus_settings_are_messages(tab, corpus, settings, message):
    with pytest.raises(gr.Error, match=message):
        tab["handlers"].search("capital", *corpus, *settings, "dense", 3, 0, "pca")


def test_answer_shows_the_prompt_and_maps_citations(tab):
    *_, (prompt, markdown, data) = tab["handlers"].answer("capital of France?", *CORPUS, "dense", 2, 0, True,
                                                          "middle", 6)
    assert prompt == data["prompt_text"] and "[1] (source: pasted text)" in prompt
    assert data["position"] == "middle" and len(data["passages"]) == 2
    assert "**[1]** pasted text" in markdown


def test_positions_compare_first_middle_last(tab):
    rows, data = tab["handlers"].compare_positions("capital of France?", *CORPUS, "dense", 3, 0, False, 4)
    assert [row[0] for row in rows] == ["first", "middle", "last"] and [row[1] for row in rows] == [1, 2, 3]
    assert len(data["positions"]) == 3


def test_bad_uploads_are_dropped_with_a_warning_and_good_ones_kept(tab, tmp_path):
    good, bad = tmp_path / "good.md", tmp_path / "bad.txt"
    good.write_text("# fine", encoding="utf-8")
    bad.write_bytes(b"\x00\x01binary")
    check = tab["handlers"].check_uploads
    with pytest.warns(UserWarning, match="bad.txt: this looks like a binary file"):
        assert check([str(good), str(bad)]) == [str(good)]


def test_pasting_text_switches_the_corpus_and_picks_chunks_that_suit_it(tab):
    """Pasted text used to leave retrieval on the Python reference, in 800-character chunks that made one chunk
    of a pasted page (and a degenerate 2D map)."""
    page = ("Retrieval finds passages. " * 12 + "\n\n") * 8  # ~2,500 characters
    source, unit, size, overlap, note = tab["handlers"].use_own_corpus(None, page)
    assert source == OWN and unit == "characters" and (size, overlap) == (200, 25)
    stats, rows, figure, data = tab["handlers"].build(source, None, page, unit, size, overlap)
    assert len(rows) == data["chunks"]["chunks"] >= rag_tab.rag.chunking.USEFUL_CHUNKS
    assert f"**{len(rows)} chunks**" in note and "800-character chunks would give 4" in note
    assert "cannot carry your text" in note  # a deep link has no room for the corpus
    # back to the reference: its default chunks again; own text picked with nothing pasted: says what to do
    assert tab["handlers"].choose_corpus(REFERENCE, None, page)[:4] == (REFERENCE, "characters", 800, 100)
    assert "Paste some text" in tab["handlers"].choose_corpus(OWN, None, "  ")[-1]


def test_pasting_and_dropping_files_are_wired_to_the_corpus_switch(tab):
    demo, components = tab["demo"], tab["components"]
    switching = {(target, event) for fn in demo.fns.values() if components["source"] in fn.outputs
                 and components["size"] in fn.outputs for target, event in fn.targets}
    # a paste fires the textbox's `change` but not its `input`
    assert {(components["pasted"]._id, "change"), (components["source"]._id, "input"),
            (components["files"]._id, "clear")} <= switching


def test_the_answer_streams_token_by_token_and_ends_on_generate_texts_answer(tab):
    """The answer sat behind a fixed "50%" bar for 12-24 s; now it grows token by token."""
    from playground.generation import generate_text
    from playground.rag import answer as rag_answer

    views = list(tab["handlers"].answer("capital of France?", *CORPUS, "dense", 2, 0, True, "first", 8))
    data = [view[2] for view in views]
    assert [d["new_tokens"] for d in data] == list(range(1, len(data) + 1))
    assert all(d["finish_reason"] == rag_answer.GENERATING for d in data[:-1]) and "generating…" in views[0][1]
    assert data[-1]["finish_reason"] in ("eos", "stop_string", "length")
    # the finished answer is the one generate_text gives for the same prompt
    loaded = tab["handlers"].ctx.model()
    ids = loaded.tokenizer(data[-1]["prompt_text"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    expected = generate_text(loaded.model, loaded.tokenizer, ids, max_new_tokens=8,
                             eos_token_ids=loaded.eos_token_ids, stop_strings=rag_answer.STOP_STRINGS)
    assert data[-1]["answer"] == expected.text.strip() and data[-1]["new_tokens"] == len(expected.token_ids)


def test_answer_problems_name_what_the_tab_explains():
    from dataclasses import replace

    from playground.rag import answer as rag_answer

    base = rag_answer.GroundedAnswer("q", True, "first", "", 0, (), "Paris [1].", (1,), (), False, True, "eos", 3,
                                     0.1)
    assert rag_answer.answer_problems(base) == ()
    assert rag_answer.answer_problems(replace(base, answer="Paris.", citations=())) == ("cites-nothing",)
    assert rag_answer.answer_problems(replace(base, answer=rag_answer.UNKNOWN_REPLY, citations=(),
                                              says_unknown=True)) == ()
    loop = "the finally clause runs the finally clause runs " * 3
    assert "repeats" in rag_answer.answer_problems(replace(base, answer=loop + "[1]"))
    assert rag_answer.answer_problems(replace(base, invalid_citations=(7,))) == ("invalid-citations",)
    markdown = rag_tab.answer_markdown(replace(base, answer=loop, citations=()))
    assert "Why no [n]" in markdown and "Why it repeats itself" in markdown


# -- messages that stop being true are replaced (issue 23: stale messages) ------------------------------------


def test_the_opening_messages_are_true_for_the_question_already_in_the_box(tab):
    components = tab["components"]
    assert components["question"].value.strip()  # the tab opens with a question typed
    for name in ("summary", "answer_text"):
        assert "Type a question" not in components[name].value, name


def test_typing_a_question_replaces_the_type_a_question_messages_and_clearing_it_brings_them_back(tab):
    handlers = tab["handlers"]
    summary, answer = handlers.question_typed("What is a tuple?", EMPTY_QUESTION, rag_tab.EMPTY_ANSWER)
    assert "Type a question" not in summary and "Retrieve" in summary
    assert "Type a question" not in answer and "Answer" in answer
    assert handlers.question_typed("  ", summary, answer) == (EMPTY_QUESTION, rag_tab.EMPTY_ANSWER)
    # a real result is never overwritten by typing
    result = tab["handlers"].search("capital of Italy", *CORPUS, "hybrid", 2, 0, "pca")[0]
    kept = handlers.question_typed("another question", result, "**Answer** (3 tokens …)")
    assert kept == (gr.skip(), gr.skip())


def test_after_a_question_built_the_index_the_stats_box_shows_it(tab):
    """'Press Build index' stayed after Retrieve / Answer had built the index on demand."""
    corpus = (OWN, None, PASTED + "\n\nA fresh paragraph, so this corpus has not been built yet.", "sentences", 1, 0)
    handlers = tab["handlers"]
    handlers.search("capital of Italy", *corpus, "hybrid", 2, 0, "pca")
    stats = handlers.index_stats("capital of Italy", *corpus)
    assert "Press **Build index**" not in stats and "4 chunks" in stats
    assert handlers.index_stats(" ", *corpus) == gr.skip()  # an empty question built nothing: nothing to show

    # wired: after each event that builds on demand succeeds, the stats box is redrawn from the index
    config = tab["demo"].get_config_file()
    stats_id = tab["components"]["stats"]._id
    by_id = {d["id"]: d for d in config["dependencies"]}
    redraws = {by_id[d["trigger_after"]]["api_name"] for d in config["dependencies"]
               if d["outputs"] == [stats_id] and d["trigger_after"] is not None and d["trigger_only_on_success"]}
    assert {"retrieve", "rag_answer", "rag_positions"} <= redraws

"""Locks in the RAG code are held per key, never across another visitor's long work (issue 24)."""

from __future__ import annotations

import threading
import time

from playground.rag.chunking import ChunkingSettings
from playground.rag.corpus import python_reference_corpus
from playground.rag.index import IndexStore
from playground.rag.rerank import Judgement, JudgementCache

SETTINGS = ChunkingSettings()


def _in_thread(function):
    """Start `function` in a daemon thread; return (thread, results list it appends to)."""
    results: list = []
    thread = threading.Thread(target=lambda: results.append(function()), daemon=True)
    thread.start()
    return thread, results


def test_a_cached_index_is_returned_while_another_key_builds():
    store = IndexStore()
    corpus_a, corpus_b = python_reference_corpus(["pass"]), python_reference_corpus(["del"])
    index_a = object()
    store.get_or_build(corpus_a, SETTINGS, "hash", lambda: index_a)
    started, release = threading.Event(), threading.Event()

    def slow_build():
        started.set()
        release.wait(10)
        return object()

    builder, _ = _in_thread(lambda: store.get_or_build(corpus_b, SETTINGS, "hash", slow_build))
    assert started.wait(5)
    try:
        hit, results = _in_thread(lambda: store.get_or_build(corpus_a, SETTINGS, "hash", lambda: object()))
        hit.join(2)
        assert results == [index_a], "a cache hit on A waited for B's build"
    finally:
        release.set()
        builder.join(5)


def test_two_requests_for_the_same_key_build_once():
    store = IndexStore()
    corpus = python_reference_corpus(["del"])
    calls, started, release = [], threading.Event(), threading.Event()

    def slow_build():
        calls.append(1)
        started.set()
        release.wait(10)
        return object()

    first, first_results = _in_thread(lambda: store.get_or_build(corpus, SETTINGS, "hash", slow_build))
    assert started.wait(5)
    second, second_results = _in_thread(lambda: store.get_or_build(corpus, SETTINGS, "hash", slow_build))
    time.sleep(0.2)
    release.set()
    first.join(5), second.join(5)
    assert len(calls) == 1
    assert first_results and first_results == second_results


def test_a_failed_build_lets_the_next_request_build():
    store = IndexStore()
    corpus = python_reference_corpus(["del"])

    def failing():
        raise ValueError("bad corpus")

    try:
        store.get_or_build(corpus, SETTINGS, "hash", failing)
    except ValueError:
        pass
    built = object()
    assert store.get_or_build(corpus, SETTINGS, "hash", lambda: built) is built


def test_cached_judgements_are_returned_while_another_question_is_judged():
    cache = JudgementCache()
    cache.judge("m", "q1", ["p"], lambda missing: [Judgement(0.9, 0.1)] * len(missing))
    started, release = threading.Event(), threading.Event()

    def slow_judge(missing):
        started.set()
        release.wait(10)
        return [Judgement(0.2, 0.8)] * len(missing)

    judging, _ = _in_thread(lambda: cache.judge("m", "q2", ["p"], slow_judge))
    assert started.wait(5)
    try:
        hit, results = _in_thread(lambda: cache.judge("m", "q1", ["p"], lambda missing: 1 / 0))
        hit.join(2)
        assert results == [[Judgement(0.9, 0.1)]], "a cached judgement waited for another question's forwards"
    finally:
        release.set()
        judging.join(5)
    assert cache.judge("m", "q2", ["p"], lambda missing: 1 / 0) == [Judgement(0.2, 0.8)]


def test_every_rag_event_that_can_build_an_index_or_read_pdfs_is_a_long_job(tmp_path):
    """/retrieve (and Enter in the question box) builds the index on demand and may rerank with the LLM; the
    upload check reads PDFs: none of them may run in the cheap events' pool (4 at once per event)."""
    from playground.config import Settings
    from playground.runtime.manager import ModelManager
    from playground.ui import build_app
    from playground.ui.queueing import LONG_JOB_CONCURRENCY, LONG_JOB_GROUP, configure_queue

    settings = Settings(cache_dir=tmp_path, preload=False, public=True)
    demo = configure_queue(build_app(settings, ModelManager(settings)), settings)
    building = {"search", "build", "answer", "compare_positions", "evaluate", "check_uploads"}
    events = [fn for fn in demo.fns.values() if getattr(fn.fn, "__qualname__", "").split(".")[0] == "RagHandlers"
              and fn.fn.__name__ in building]
    assert {fn.fn.__name__ for fn in events} == building
    assert sum(fn.fn.__name__ == "search" for fn in events) == 2  # the button and Enter in the question box
    assert {(fn.fn.__name__, fn.concurrency_id, fn.concurrency_limit) for fn in events} == \
        {(fn.fn.__name__, LONG_JOB_GROUP, LONG_JOB_CONCURRENCY) for fn in events}

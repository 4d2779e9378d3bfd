"""A small, bounded load run in CI: concurrent gradio_client sessions across tabs (tokenize, next_token,
attention, draw_samples, retrieve dense/BM25/hybrid on the built-in corpus, greedy speculate) get the
single-client answers, none fails, none hangs (benchmarks/load.py runs the larger configuration)."""

from __future__ import annotations

import pytest

from benchmarks.load import CALLS, reference_answers, run_load

pytestmark = pytest.mark.slow

CLIENTS = 8
CALLS_PER_CLIENT = 3  # client i makes calls i, i+1, i+2 of the mix: with 8 clients every call runs 3 times


def test_concurrent_sessions_get_the_single_client_answers(app_url):
    expected = reference_answers(app_url)
    assert all(expected.values())  # every call's answer has JSON numbers to compare
    report = run_load(app_url, CLIENTS, CALLS_PER_CLIENT, expected)
    print(report.table())
    assert report.failures == [] and report.mismatches == []
    assert report.total_calls == CLIENTS * CALLS_PER_CLIENT
    assert {label for label, seconds in report.latencies.items() if seconds} == {call.label for call in CALLS}

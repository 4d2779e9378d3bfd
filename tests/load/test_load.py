"""A small, bounded load run in CI: concurrent gradio_client sessions across tabs get the single-client
answers, none fails, none hangs (benchmarks/load.py runs the larger configuration)."""

from __future__ import annotations

import pytest

from benchmarks.load import reference_answers, run_load

pytestmark = pytest.mark.slow

CLIENTS = 8
CALLS_PER_CLIENT = 3


def test_concurrent_sessions_get_the_single_client_answers(app_url):
    expected = reference_answers(app_url)
    assert all(expected.values())  # every endpoint's answer has JSON numbers to compare
    report = run_load(app_url, CLIENTS, CALLS_PER_CLIENT, expected)
    print(report.table())
    assert report.failures == [] and report.mismatches == []
    assert report.total_calls == CLIENTS * CALLS_PER_CLIENT

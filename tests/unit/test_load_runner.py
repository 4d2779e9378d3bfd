"""benchmarks/load.py's runner without a server: a client that cannot connect is a reported failure and
the run still finishes (it used to wait forever at the start barrier); answers compare within a tolerance."""

from __future__ import annotations

import threading

import gradio_client
import pytest

from benchmarks.load import CALLS, LoadReport, run_load, same_answer


def test_clients_that_cannot_connect_are_failures_and_the_run_finishes(monkeypatch):
    def refuse(*args, **kwargs):
        raise TimeoutError("config request timed out (injected)")

    monkeypatch.setattr(gradio_client, "Client", refuse)
    reports: list[LoadReport] = []
    runner = threading.Thread(target=lambda: reports.append(run_load("http://127.0.0.1:9/", 3, 2, {})), daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "run_load waited forever for clients that never connected"
    [report] = reports
    assert report.total_calls == 0 and len(report.failures) == 3
    assert all("could not connect: TimeoutError" in failure for failure in report.failures)


@pytest.mark.parametrize("answer, expected, tolerance, same", [
    ({"scores": [0.5, 0.25]}, {"scores": [0.5, 0.25]}, 0.0, True),
    ({"scores": [0.5000004]}, {"scores": [0.5]}, 1e-6, True),
    ({"scores": [0.50001]}, {"scores": [0.5]}, 1e-6, False),
    ({"scores": [0.5000004]}, {"scores": [0.5]}, 0.0, False),
    ({"ids": [1, 2]}, {"ids": [1, 2, 3]}, 1e-6, False),
    ({"a": 1}, {"b": 1}, 1e-6, False),
])
def test_answers_compare_within_the_calls_tolerance(answer, expected, tolerance, same):
    assert same_answer(answer, expected, tolerance) is same


def test_every_call_of_the_mix_has_its_own_label():
    assert len({call.label for call in CALLS}) == len(CALLS)

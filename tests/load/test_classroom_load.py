"""A small classroom in CI: a presenter and six attendees (each its own gradio_client session) on the shared
server with a presenter key; every attendee joins, follows three views, answers the poll, half of them also
make their own model requests; nothing fails, the poll counts every answer, no follower misses a view
(benchmarks/classroom.py runs 50 attendees and reports the timings, which are not asserted here)."""

from __future__ import annotations

import pytest

from benchmarks.classroom import MEASURED, VIEWS, run_class
from conftest import PRESENTER_KEY

pytestmark = pytest.mark.slow

ATTENDEES = 6


def test_a_class_of_six_follows_every_view_and_is_counted_exactly(classroom_app):
    url, _ = classroom_app
    report = run_class(url, PRESENTER_KEY, ATTENDEES)
    print(report.table())
    assert report.failures == [] and report.failed == {} and report.failed_requests == 0
    assert report.connected == report.joined == ATTENDEES
    assert report.answers_sent == ATTENDEES and report.poll_answers == ATTENDEES
    assert len(report.shown) == len(VIEWS)
    # every attendee read every view version, the final one included
    assert report.missed() == []
    assert all(seen.keys() == report.shown.keys() for seen in report.seen.values()) and len(report.seen) == ATTENDEES
    assert all(report.latencies.get(event) for event in MEASURED)  # every kind of call was made and answered

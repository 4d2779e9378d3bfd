"""benchmarks/classroom.py's calls without a server: a call that gradio_client cancels on its own (its shared
event stream closed under the call while the server still ran it) is sent once more and counted, where the call
may run twice; any other failure, or a second loss, is a reported failure."""

from __future__ import annotations

import concurrent.futures
import threading

from benchmarks.classroom import ClassReport, timed_call


class ScriptedClient:
    """A gradio_client stand-in: each submit's result raises or returns the next item of `script`."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.sent: list[tuple[tuple, str]] = []

    def submit(self, *args: object, api_name: str) -> concurrent.futures.Future:
        self.sent.append((args, api_name))
        outcome, future = self.script.pop(0), concurrent.futures.Future()
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
        return future


def call(client: ScriptedClient, resend_lost: bool) -> tuple[ClassReport, tuple[bool, object]]:
    report = ClassReport(1)
    answer = timed_call(report, threading.Lock(), client, "answer_poll", "attendee 0", "Paris",
                        resend_lost=resend_lost)
    return report, answer


def test_a_call_the_client_lost_is_sent_again_and_counted():
    client = ScriptedClient(concurrent.futures.CancelledError(), "Your answer is in")
    report, answer = call(client, resend_lost=True)
    assert answer == (True, "Your answer is in")
    assert client.sent == [(("Paris",), "/answer_poll")] * 2
    assert report.resent == {"answer_poll": 1} and report.failed == {} and len(report.latencies["answer_poll"]) == 1
    assert "1 calls gradio_client lost" in report.table()


def test_a_call_lost_twice_or_not_to_be_resent_is_a_failure():
    report, answer = call(ScriptedClient(concurrent.futures.CancelledError(), concurrent.futures.CancelledError()),
                          resend_lost=True)
    assert answer == (False, None) and report.failed == {"answer_poll": 1}
    assert report.failures == ["attendee 0 answer_poll: CancelledError: "]
    report, answer = call(ScriptedClient(concurrent.futures.CancelledError()), resend_lost=False)
    assert answer == (False, None) and report.failed == {"answer_poll": 1} and report.resent == {}


def test_an_error_from_the_server_is_never_resent():
    client = ScriptedClient(ValueError("No poll is open"), "unused")
    report, answer = call(client, resend_lost=True)
    assert answer == (False, None) and len(client.sent) == 1
    assert report.failures == ["attendee 0 answer_poll: ValueError: No poll is open"] and report.resent == {}


def test_a_groups_resent_calls_add_up_in_the_class_report():
    whole, part = ClassReport(4), ClassReport(2)
    whole.resent, part.resent = {"class_view": 1}, {"class_view": 2, "join": 1}
    whole.merge(part)
    assert whole.resent == {"class_view": 3, "join": 1}

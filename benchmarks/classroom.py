"""Classroom load: a presenter and N attendees (each its own gradio_client Client) in one class, on loopback.

`python -m benchmarks.classroom --attendees 50` starts `python app.py --offline` with a presenter key in a
process of its own, and plays a class: the presenter logs in and starts a class; every
attendee joins with its code and, like the page's timer, asks `/class_view` every FOLLOW_SECONDS for a view
newer than the one it has, skipping a tick while an ask is under way (a long poll: the server answers when the
presenter pushes one, or after FOLLOW_WAIT_SECONDS); the
presenter shows three views (sampling, attention, tokenization) VIEW_GAP_S apart; then puts a next-token
poll to the room, every attendee answers once, the presenter checks that `/poll_results` counts every
answer and reveals. Meanwhile half of the attendees make their own seeded `/next_token` and `/attention`
requests. It prints p50 / p95 latency and failures per event, the follower delay (from the presenter's
show_view returning to an attendee first reading that view version; target p95 <= 2 s), the poll count
and the totals. `run()` is the same at 50 attendees, as rows for benchmarks/run.py's table (baseline: one
attendee alone making the same calls). tests/load/test_classroom_load.py runs 6 attendees.

The server runs in its own process (a first version ran the clients inside the server's process: 50 client
threads then shared its interpreter lock, and a no-model call such as /class_view took 2.3 s at p50). The
attendees run in PROCESSES (5) client processes of their own, 10 threads each for a class of 50
(`--processes 1`: every attendee a thread of this process, as the benchmark did until 2026-12-02: 50 clients
then share one interpreter lock); a room's 50 browsers are 50 machines. The follower delay
compares times taken in different processes: time.perf_counter is CLOCK_MONOTONIC, one clock for the machine.
The clients still share the machine's two cores with the server, so the numbers are an upper bound on what a
room of separate machines would see. tests/load/test_classroom_load.py plays 6 attendees as threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import print_table, row
from benchmarks.load import percentile
from playground.ui.classroom_panel import FOLLOW_SECONDS, FOLLOW_WAIT_SECONDS

ROOT = Path(__file__).resolve().parents[1]

PROCESSES = 5  # client processes the attendees are spread over (10 each for a class of 50)
VIEW_GAP_S = 4.0  # seconds between the presenter's views (and after the last one)
VIEWS = (  # the three views the presenter shows, in turn
    "?tab=sampling&prompt=The+capital+of+France+is&temperature=0.7",
    "?tab=attention&prompt=Attention+is+all+you+need&layer=3",
    "?tab=tokenization&text=The+quick+brown+fox+jumps+over+the+lazy+dog.",
)
POLL_PROMPT = "The capital of France is"
GUESSES = ("Paris", "London", "Lyon", "Berlin", "the")
DEFAULT_KEY = "classroom-bench-key"  # the benchmark's own server only; never printed
MEASURED = ("join", "class_view", "show_view", "answer_poll", "next_token", "attention")
CALL_TIMEOUT_S = 120  # one call
PAGE_LOAD_TIMEOUT_S = 60  # an attendee's Client fetching the app's config (a browser loading the page)
CONNECT_TIMEOUT_S = 300  # every attendee's Client created (or failed) by then
RUN_TIMEOUT_S = 600  # the whole class
# follower delay p50 / p95 of the long poll alone (upper bounds): a push during a wait wakes it at once; one
# between two waits waits for the timer's next tick (a tick while a wait is under way is dropped)
TIMER_GAP_S = FOLLOW_SECONDS - FOLLOW_WAIT_SECONDS if FOLLOW_SECONDS > FOLLOW_WAIT_SECONDS else FOLLOW_SECONDS
TIMER_ALONE = (0.0, TIMER_GAP_S)


def next_token_args(index: int) -> tuple[Any, ...]:
    """An attendee's own seeded next-token request (prompt, chat, temperature, top-k, top-p, min-p,
    repetition penalty, seed, top-n), as in benchmarks/load.py, with a prompt of its own."""
    return (f"Attendee {index} says the capital of France is", False, 0.8, 0, 0.95, 0.0, 1.0, index, 10)


def attention_args(index: int) -> tuple[Any, ...]:
    return (f"Attendee {index}: attention is all you need, they said.", 0, "mean", "heads", False)


@dataclass
class ClassReport:
    attendees: int
    connected: int = 0
    joined: int = 0
    wall_seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)  # event -> seconds per answered call
    failed: dict[str, int] = field(default_factory=dict)  # event -> calls that raised or timed out
    failures: list[str] = field(default_factory=list)  # what went wrong, one line each
    shown: dict[int, float] = field(default_factory=dict)  # view version -> when show_view returned
    seen: dict[int, dict[int, float]] = field(default_factory=dict)  # attendee -> version -> first read
    poll_answers: int | None = None  # what /poll_results counted
    answers_sent: int = 0  # answer_poll calls that succeeded
    resent: dict[str, int] = field(default_factory=dict)  # event -> calls gradio_client lost and sent again

    def record(self, event: str, seconds: float | None, failure: str = "") -> None:
        if seconds is None:
            self.failed[event] = self.failed.get(event, 0) + 1
            self.failures.append(failure)
        else:
            self.latencies.setdefault(event, []).append(seconds)

    @property
    def requests(self) -> int:
        """Every API call made (connections not included)."""
        return sum(len(v) for e, v in self.latencies.items() if e != "connect") + self.failed_requests

    @property
    def failed_requests(self) -> int:
        return sum(count for event, count in self.failed.items() if event != "connect")

    def delays(self) -> list[float]:
        """Per attendee and view version: seconds from show_view returning to the attendee's first read of
        that version (0 when the read answered before show_view's own answer arrived)."""
        return [max(0.0, seen[version] - shown) for seen in self.seen.values()
                for version, shown in self.shown.items() if version in seen]

    def missed(self) -> list[str]:
        """Attendee/version pairs never read: the attendee's timer skipped the view (or it never joined)."""
        return [f"attendee {index} never saw view {version}" for index, seen in sorted(self.seen.items())
                for version in sorted(self.shown) if version not in seen]

    def merge(self, part: ClassReport) -> None:
        """Add a group of attendees' part (latencies, failures, views seen, answers sent)."""
        for event, seconds in part.latencies.items():
            self.latencies.setdefault(event, []).extend(seconds)
        for event, count in part.failed.items():
            self.failed[event] = self.failed.get(event, 0) + count
        self.failures += part.failures
        for event, count in part.resent.items():
            self.resent[event] = self.resent.get(event, 0) + count
        self.seen.update(part.seen)
        self.answers_sent += part.answers_sent

    def percentile(self, event: str, q: float) -> float:
        return percentile(self.latencies.get(event, []), q)

    def table(self) -> str:
        delays = self.delays()
        lines = [f"{self.attendees} attendees: {self.connected} connected, {self.joined} joined; "
                 f"{self.requests} requests in {self.wall_seconds:.1f} s, {self.failed_requests} failed; "
                 f"poll counted {self.poll_answers} of {self.answers_sent} answers sent; "
                 f"{sum(self.resent.values())} calls gradio_client lost and the attendee sent again",
                 f"follower delay over {len(delays)} (attendee, view) pairs: p50 {percentile(delays, 0.5):.2f} s, "
                 f"p95 {percentile(delays, 0.95):.2f} s (target p95 <= 2 s); {len(self.missed())} missed",
                 f"{'event':14} {'calls':>6} {'failed':>6} {'p50 s':>8} {'p95 s':>8}"]
        for event in sorted(set(self.latencies) | set(self.failed)):
            lines.append(f"{event:14} {len(self.latencies.get(event, [])):6d} {self.failed.get(event, 0):6d} "
                         f"{self.percentile(event, 0.5):8.2f} {self.percentile(event, 0.95):8.2f}")
        lines += [f"  {line}" for line in self.failures[:10] + self.missed()[:10]]
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more failures")
        return "\n".join(lines)


@dataclass
class Signals:
    """What the presenter shares with the attendees: threading's primitives when they are threads of this
    process, multiprocessing's when they run in processes of their own."""

    start: Any  # Barrier(attendees + 1): every attendee connected (or failed to) before the class starts
    stop: Any  # Event: the class is over, followers stop asking
    poll_open: Any  # Event
    progress: Any  # Queue of (what, attendee, ok): "connect", "join", "answer", "done", one of each per attendee
    deadline: float  # time.perf_counter() by which the class ends; CLOCK_MONOTONIC, one clock for every process


def timed_call(report: ClassReport, guard: threading.Lock, client: Any, event: str, who: str, *args: Any,
               api_name: str | None = None, resend_lost: bool = False) -> tuple[bool, Any]:
    """One API call, timed into `report`; a failure is counted and described, never raised.

    `resend_lost` (for calls that may run twice: an attendee's join, view reads, answer and own requests):
    a call that gradio_client itself cancelled is sent once more and counted in `report.resent`. One Client
    reads all its calls' answers from one event stream, which the server closes when the session's last
    pending call completes; a call sent in that moment is cancelled on the client although the server runs it
    (gradio_client 2.7.2: 1 of 327 calls of two threads sharing a Client on a bare gradio app, 2026-12-03).
    A browser does not share that stream between these calls, so the resend is the harness's, not the room's."""
    def submit() -> Any:
        return client.submit(*args, api_name=api_name or f"/{event}").result(timeout=CALL_TIMEOUT_S)

    began = time.perf_counter()
    try:
        try:
            answer = submit()
        except concurrent.futures.CancelledError:  # never asked for here: the stream closed under the call
            if not resend_lost:
                raise
            with guard:
                report.resent[event] = report.resent.get(event, 0) + 1
            answer = submit()
    except Exception as error:  # every failure is reported, none stops the class
        with guard:
            report.record(event, None, f"{who} {event}: {type(error).__name__}: {str(error)[:200]}")
        return False, None
    with guard:
        report.record(event, time.perf_counter() - began)
    return True, answer


def attendee_group(url: str, code: str, indices: list[int], attendees: int, view_gap_s: float,
                   signals: Signals) -> ClassReport:
    """Attendees `indices` of a class of `attendees`, each a thread with a Client of its own: connect, join,
    follow the presenter's views like the page's timer, half of them explore on their own, answer the poll.
    Returns their part of the report once the presenter stops the class."""
    from gradio_client import Client

    report = ClassReport(attendees)
    guard = threading.Lock()
    clients: list[Any] = []
    followers: list[threading.Thread] = []  # one per joined attendee: its page's timer

    def left() -> float:
        return max(0.0, signals.deadline - time.perf_counter())

    def call(client: Any, event: str, who: str, *args: Any, api_name: str | None = None) -> tuple[bool, Any]:
        return timed_call(report, guard, client, event, who, *args, api_name=api_name, resend_lost=True)

    def follow(index: int, client: Any) -> None:
        """The page's timer: every FOLLOW_SECONDS (ticks staggered across attendees) ask for a view newer than
        the last one read, as the page does; a tick that comes while the ask still waits is dropped."""
        seen, latest = report.seen[index], 0
        tick = time.perf_counter() + FOLLOW_SECONDS * index / max(1, attendees)
        while not signals.stop.wait(max(0.0, tick - time.perf_counter())) and left():
            ok, view = call(client, "class_view", f"attendee {index}", latest)
            now = time.perf_counter()
            if ok and view and view["version"] not in seen:
                with guard:
                    seen[view["version"]] = now
                latest = view["version"]
            while tick <= now:
                tick += FOLLOW_SECONDS

    def own_requests(index: int, client: Any, spread_s: float) -> None:
        """An attendee exploring on its own, starting somewhere during the presenter's views."""
        if signals.stop.wait(spread_s * index / max(1, attendees)):
            return
        call(client, "next_token", f"attendee {index}", *next_token_args(index))
        call(client, "attention", f"attendee {index}", *attention_args(index))

    def attendee(index: int) -> None:
        began = time.perf_counter()
        try:
            # a browser waits for a slow page far longer than httpx's default 5 s
            client = Client(url, verbose=False, httpx_kwargs={"timeout": PAGE_LOAD_TIMEOUT_S})
        except Exception as error:  # e.g. the config request timed out on a loaded CPU
            client = None
            with guard:
                report.record("connect", None, f"attendee {index} could not connect: {type(error).__name__}: "
                                               f"{str(error)[:200]}")
        else:
            with guard:
                report.record("connect", time.perf_counter() - began)
                clients.append(client)
        signals.progress.put(("connect", index, client is not None))
        try:  # reached even by an attendee that could not connect, else the class would never start
            signals.start.wait(timeout=CONNECT_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pass
        if client is None:
            return
        joined, _ = call(client, "join", f"attendee {index}", code, api_name="/join_class")
        if joined:
            with guard:
                report.seen[index] = {}
            follower = threading.Thread(target=follow, args=(index, client), daemon=True)
            with guard:
                followers.append(follower)
            follower.start()
        signals.progress.put(("join", index, joined))
        if not joined:
            return
        helpers = []
        if index % 2 == 0:  # half of the room explores on its own
            helpers.append(threading.Thread(target=own_requests, args=(index, client, view_gap_s * len(VIEWS)),
                                            daemon=True))
            helpers[-1].start()
        answered = False
        if signals.poll_open.wait(left()) and not signals.stop.is_set():
            answered, _ = call(client, "answer_poll", f"attendee {index}", GUESSES[index % len(GUESSES)])
            with guard:
                report.answers_sent += answered
        signals.progress.put(("answer", index, answered))
        for helper in helpers:
            helper.join(left())
        signals.progress.put(("done", index, True))

    threads = [threading.Thread(target=attendee, args=(index,), daemon=True) for index in indices]
    for thread in threads:
        thread.start()
    signals.stop.wait(left())  # the presenter says when the class is over
    for thread in [*threads, *followers]:
        thread.join(left())
    if any(thread.is_alive() for thread in [*threads, *followers]):
        report.failures.append(f"attendees {indices[0]}.. did not finish by the deadline (deadlock or overload)")
    for client in clients:
        client.close()
    return report


def _group_in_process(results: Any, *args: Any) -> None:
    """A process of attendees: its part of the report goes back through `results`."""
    results.put(attendee_group(*args))


class Progress:
    """The presenter's count of what the attendees report ("connect", "join", "answer", "done")."""

    def __init__(self, messages: Any) -> None:
        self.messages = messages
        self.count: dict[str, int] = {}  # what -> attendees that reported it
        self.ok: dict[str, int] = {}  # what -> attendees for which it succeeded

    def wait_for(self, what: str, count: int, deadline: float) -> None:
        """Read reports until `count` attendees reported `what` (or the deadline passes)."""
        while self.count.get(what, 0) < count:
            try:
                kind, _, ok = self.messages.get(timeout=max(0.01, deadline - time.perf_counter()))
            except queue.Empty:
                return
            self.count[kind] = self.count.get(kind, 0) + 1
            self.ok[kind] = self.ok.get(kind, 0) + bool(ok)


def run_class(url: str, presenter_key: str, attendees: int, view_gap_s: float = VIEW_GAP_S,
              processes: int = 1) -> ClassReport:
    """One class on the app at `url` (launched with `presenter_key`): a presenter and `attendees` clients,
    every call timed; nothing raises, every failure is counted and described in the report. The attendees run
    as threads of this process (`processes` 1) or in `processes` processes of their own, threads in each
    (a room's browsers do not share one interpreter lock)."""
    from gradio_client import Client

    report, guard = ClassReport(attendees), threading.Lock()
    presenter = Client(url, verbose=False, httpx_kwargs={"timeout": PAGE_LOAD_TIMEOUT_S})

    def call(event: str, *args: Any) -> tuple[bool, Any]:
        return timed_call(report, guard, presenter, event, "presenter", *args)

    ok = call("presenter_login", presenter_key)[0]
    ok = ok and call("start_class", f"Classroom benchmark ({attendees} attendees)")[0]
    ok, state = call("class_state") if ok else (False, None)
    if not ok:
        presenter.close()
        return report
    deadline = time.perf_counter() + RUN_TIMEOUT_S
    groups = [list(range(attendees))[first::processes] for first in range(processes)]  # even and odd in each
    args = (url, state["code"], attendees, view_gap_s)
    if processes == 1:
        signals = Signals(threading.Barrier(attendees + 1), threading.Event(), threading.Event(), queue.Queue(),
                          deadline)
        parts: Any = queue.Queue()
        workers: list[Any] = [threading.Thread(target=_group_in_process, args=(parts, *args[:2], group, *args[2:],
                                                                               signals), daemon=True)
                              for group in groups]
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a process that already runs client threads
        signals = Signals(context.Barrier(attendees + 1), context.Event(), context.Event(), context.Queue(),
                          deadline)
        parts = context.Queue()
        workers = [context.Process(target=_group_in_process, args=(parts, *args[:2], group, *args[2:], signals),
                                   daemon=True) for group in groups]
    for worker in workers:
        worker.start()
    progress = Progress(signals.progress)

    def left() -> float:
        return max(0.0, deadline - time.perf_counter())

    try:
        signals.start.wait(timeout=CONNECT_TIMEOUT_S)
    except threading.BrokenBarrierError:
        report.failures.append(f"not every attendee connected or failed within {CONNECT_TIMEOUT_S} s")
    began = time.perf_counter()
    progress.wait_for("connect", attendees, deadline)
    report.connected = progress.ok.get("connect", 0)
    progress.wait_for("join", report.connected, deadline)
    report.joined = progress.ok.get("join", 0)
    for query in VIEWS:
        ok, view = call("show_view", query)
        if ok:
            report.shown[view["version"]] = time.perf_counter()
        signals.stop.wait(min(view_gap_s, left()))
    call("open_poll", "next_token", POLL_PROMPT, "", 0.9)
    signals.poll_open.set()
    progress.wait_for("answer", report.joined, deadline)
    ok, results = call("poll_results")
    if ok:  # no "answers" when the poll never opened (open_poll failed: counted above)
        report.poll_answers = results.get("answers")
    call("reveal_poll")
    # the attendees' own requests; the followers have had every view for at least a view gap by now
    progress.wait_for("done", report.joined, deadline - 5 * FOLLOW_SECONDS)
    signals.stop.set()
    for _ in workers:
        try:
            report.merge(parts.get(timeout=max(0.01, left())))
        except queue.Empty:
            report.failures.append("a group of attendees sent no report by the deadline")
    for worker in workers:
        worker.join(max(0.01, left()))
    report.wall_seconds = time.perf_counter() - began
    call("end_class")
    presenter.close()
    return report


def single_attendee_seconds(url: str, presenter_key: str) -> dict[str, float]:
    """Seconds per call for one attendee alone in a warm-up class (the baseline; it also warms the caches):
    the presenter shows one view and puts a poll, the attendee joins, reads the view, answers, explores."""
    from gradio_client import Client

    presenter, seconds = Client(url, verbose=False), {}

    def timed(event: str, client: Any, *args: Any, api_name: str | None = None) -> Any:
        began = time.perf_counter()
        answer = client.predict(*args, api_name=api_name or f"/{event}")
        seconds[event] = time.perf_counter() - began
        return answer

    presenter.predict(presenter_key, api_name="/presenter_login")
    presenter.predict("Warm-up", api_name="/start_class")
    code = presenter.predict(api_name="/class_state")["code"]
    began = time.perf_counter()
    alone = Client(url, verbose=False)
    seconds["connect"] = time.perf_counter() - began
    timed("join", alone, code, api_name="/join_class")
    timed("show_view", presenter, VIEWS[0])
    timed("class_view", alone)  # no version given: answers at once
    presenter.predict("next_token", POLL_PROMPT, "", 0.9, api_name="/open_poll")
    timed("answer_poll", alone, GUESSES[0])
    for index in (1, 3):  # the second is the baseline (the first pays for one-time warm-up); prompts differ,
        timed("next_token", alone, *next_token_args(index))  # so neither answer comes from a cache
        timed("attention", alone, *attention_args(index))
    presenter.predict(api_name="/end_class")
    for client in (presenter, alone):
        client.close()
    return seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_app(presenter_key: str, timeout_s: float = 600.0) -> tuple[subprocess.Popen, str, str]:
    """`python app.py --offline` in a process of its own (a room's browsers are not in the server's process:
    clients in the same process would share its interpreter lock), on a free loopback port, with a presenter
    key; returns once the model is loaded. Returns (process, url, model description)."""
    from gradio_client import Client

    port = free_port()
    environment = {**os.environ, "PLAYGROUND_PRESENTER_KEY": presenter_key, "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "app.py", "--offline", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status = Client(url, verbose=False).predict(api_name="/model_status")[1]
            if status["model"]:
                return process, url, f"{status['model']['label']}, {status['model']['precision']}"
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(2)
    process.kill()
    raise RuntimeError(f"the app did not come up with its model within {timeout_s:.0f} s")


def measure(attendees: int, processes: int = PROCESSES) -> tuple[ClassReport, dict[str, float], str]:
    """Launch the app, time one attendee alone, play the class, stop the app. Returns the report, the
    baseline and the model's description."""
    process, url, model = launch_app(DEFAULT_KEY)
    try:
        alone = single_attendee_seconds(url, DEFAULT_KEY)
        return run_class(url, DEFAULT_KEY, attendees, processes=processes), alone, model
    finally:
        process.terminate()
        process.wait(30)


def rows(report: ClassReport, alone: dict[str, float], model: str, processes: int = PROCESSES) -> list[dict[str, Any]]:
    """benchmarks/run.py rows, one per measured quantity."""
    n, delays = report.attendees, report.delays()
    clients = ("clients in threads of this one" if processes == 1 else
               f"clients in {processes} processes of their own ({-(-n // processes)} attendees each, as threads)")
    conditions = (f"{n} attendees + 1 presenter, each its own gradio_client session on loopback "
                  f"({report.connected} connected, {report.joined} joined); {os.cpu_count()}-core CPU, the app "
                  f"in its own process (python app.py --offline), {clients}; {model} "
                  f"(the default precision); {datetime.date.today().isoformat()}; "
                  f"3 views {VIEW_GAP_S:g} s apart, class_view like the page's timer (every {FOLLOW_SECONDS:g} s, "
                  f"none while one is under way; a long poll of up to {FOLLOW_WAIT_SECONDS:g} s), half the "
                  f"attendees make one seeded next_token + attention each, one next_token poll; "
                  f"baseline: one attendee alone (follower delay: the long poll alone, an upper bound)")
    out = [row("classroom: attendees joined", float(report.joined), float(n), "attendees", conditions,
               higher_is_better=True, target=f"{n}")]
    for event in MEASURED:
        out += [row(f"classroom: {event} p50 latency", report.percentile(event, 0.5), alone[event], "s", conditions),
                row(f"classroom: {event} p95 latency", report.percentile(event, 0.95), alone[event], "s",
                    conditions),
                row(f"classroom: {event} failed", float(report.failed.get(event, 0)), 0.0, "calls", conditions,
                    target="0")]
    out += [row("classroom: follower delay p50", percentile(delays, 0.5), TIMER_ALONE[0], "s", conditions),
            row("classroom: follower delay p95", percentile(delays, 0.95), TIMER_ALONE[1], "s", conditions,
                target="<= 2 s"),
            row("classroom: view versions a follower missed", float(len(report.missed())), 0.0, "views",
                conditions, target="0"),
            row("classroom: poll answers counted", float(report.poll_answers or 0), float(n), "answers",
                conditions, higher_is_better=True, target=f"= {n}"),
            row("classroom: requests answered", float(report.requests - report.failed_requests),
                float(report.requests), "requests", conditions, higher_is_better=True, target="all"),
            row("classroom: failed requests", float(report.failed_requests), 0.0, "requests", conditions,
                target="0")]
    return out


def run(attendees: int = 50, processes: int = PROCESSES) -> list[dict[str, Any]]:
    """benchmarks/run.py entry: a class of 50."""
    report, alone, model = measure(attendees, processes)
    print(report.table())
    return rows(report, alone, model, processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=50)
    parser.add_argument("--processes", type=int, default=PROCESSES,
                        help="client processes the attendees are spread over (1: threads of this process)")
    arguments = parser.parse_args()
    print_table(run(arguments.attendees, arguments.processes))


if __name__ == "__main__":
    main()

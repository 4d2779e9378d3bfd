"""Load: many gradio_client sessions hitting the launched app at once (loopback only).

`python -m benchmarks.load --clients 30 --calls 4` launches the app (embedded model, offline) with the
queue app.py serves with, runs a mix of tokenize / next_token / attention / draw_samples / retrieve (built-in
corpus: dense, BM25, hybrid) / speculate (n-gram draft, greedy) calls from `clients` threads (each its own
Client), compares every answer with the single-client answer, and prints p50 / p95 latency per call and the
throughput. `run()` is the same at 30 clients x 4 calls, as rows for benchmarks/run.py's table.
tests/load/test_load.py runs a small configuration.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import row

# The built-in corpus (Python's language reference) with the RAG tab's default chunking; k and no rerank.
REFERENCE_CORPUS = ("Python language reference (79 topics, ships with Python)", None, "", "characters", 800, 100)
RETRIEVE_QUESTION = "How does a for loop iterate over a sequence?"
SPECULATE_PROMPT = ("Here is a notice. NOTICE: The kettle must not be filled above the MAX line. "
                    "Repeat the notice word for word. NOTICE: The kettle must not be")


@dataclass(frozen=True)
class LoadCall:
    """One deterministic call (seeded or greedy), so a concurrent answer must equal the single-client one;
    numbers may differ by `tolerance` (absolute and relative) where batching can change the last float bits."""

    label: str
    api_name: str
    args: tuple[Any, ...]
    tolerance: float = 0.0


CALLS: tuple[LoadCall, ...] = (
    LoadCall("tokenize", "/tokenize", ("The quick brown fox jumps over the lazy dog.", ["model", "bytes"], "", True)),
    LoadCall("next_token", "/next_token", ("The capital of France is", False, 0.8, 0, 0.95, 0.0, 1.0, 7, 10)),
    LoadCall("attention", "/attention", ("Attention is all you need, they said.", 0, "mean", "heads", False)),
    LoadCall("draw_samples", "/draw_samples", ("Once upon a time", False, 1.0, 20, 1.0, 0.0, 1.0, 3, 500)),
    *(LoadCall(f"retrieve {method}", "/retrieve", (RETRIEVE_QUESTION, *REFERENCE_CORPUS, method, 5, 0, "pca"), 1e-6)
      for method in ("dense", "bm25", "hybrid")),
    # prompt, draft, k, temperature 0 (greedy), top-k, top-p, max new tokens, seed, layers to skip, draft model
    LoadCall("speculate", "/speculate", (SPECULATE_PROMPT, "ngram", 4, 0.0, 0, 1.0, 12, 0, "", "")),
)
# Fields measured with a clock (speculate's "speed": measured costs and the speedups derived from them).
TIMING_WORDS = ("second", "time", "elapsed", "_ms", "duration", "speed")
FIGURE_KEYS = {"type", "plot"}  # how gradio_client returns a gr.Plot
RUN_TIMEOUT_S = 600  # the whole run
CALL_TIMEOUT_S = 180  # one call (30 clients: speculate's p95 is ~30 s)


def numbers_only(value: Any) -> Any:
    """A JSON value without timing fields (they differ run to run by design)."""
    if isinstance(value, dict):
        return {key: numbers_only(item) for key, item in value.items()
                if not any(word in str(key).lower() for word in TIMING_WORDS)}
    if isinstance(value, (list, tuple)):
        return [numbers_only(item) for item in value]
    return value


def comparable(result: Any) -> list[Any]:
    """The JSON and table outputs of a call, without timing fields. Figures are left out: they draw the
    JSON's numbers, except a time-split figure, which draws timings (and its hover text has them as text)."""
    outputs = result if isinstance(result, tuple) else (result,)
    return [numbers_only(output) for output in outputs if isinstance(output, dict) and output.keys() != FIGURE_KEYS]


def same_answer(answer: Any, expected: Any, tolerance: float) -> bool:
    """Equal, except that floats may differ by `tolerance` (absolute or relative)."""
    if isinstance(answer, float) and isinstance(expected, float):
        return answer == expected or math.isclose(answer, expected, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(answer, dict) and isinstance(expected, dict):
        return answer.keys() == expected.keys() and all(same_answer(answer[key], expected[key], tolerance)
                                                        for key in answer)
    if isinstance(answer, list) and isinstance(expected, list):
        return len(answer) == len(expected) and all(same_answer(a, e, tolerance) for a, e in zip(answer, expected))
    return answer == expected


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile (q=0.95: p95); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class LoadReport:
    clients: int
    calls_per_client: int
    wall_seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def total_calls(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    @property
    def throughput(self) -> float:
        return self.total_calls / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, name: str | None, q: float) -> float:
        return percentile(self.latencies[name] if name else [v for vs in self.latencies.values() for v in vs], q)

    def table(self) -> str:
        lines = [f"{self.clients} clients x {self.calls_per_client} calls: {self.total_calls} calls in "
                 f"{self.wall_seconds:.1f} s = {self.throughput:.2f} calls/s; {len(self.failures)} failed, "
                 f"{len(self.mismatches)} differed from the single-client answer",
                 f"{'call':16} {'calls':>6} {'p50 s':>8} {'p95 s':>8}"]
        for name in [*sorted(self.latencies), None]:
            count = len(self.latencies[name]) if name else self.total_calls
            lines.append(f"{name or 'all':16} {count:6d} {self.percentile(name, 0.5):8.2f} "
                         f"{self.percentile(name, 0.95):8.2f}")
        return "\n".join(lines)


def ask(client: Any, call: LoadCall) -> Any:
    """One call's outputs; a call with no answer within CALL_TIMEOUT_S raises TimeoutError (a stalled event
    stream becomes a reported failure instead of a client waiting forever)."""
    return client.submit(*call.args, api_name=call.api_name).result(timeout=CALL_TIMEOUT_S)


def reference_answers(url: str) -> dict[str, list[Any]]:
    """Each call's answer to a single client (label -> the JSON outputs without timing fields)."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    return {call.label: comparable(ask(client, call)) for call in CALLS}


def run_load(url: str, clients: int, calls_per_client: int, expected: dict[str, list[Any]]) -> LoadReport:
    """`clients` threads, each its own Client, each making `calls_per_client` calls from CALLS in turn."""
    from gradio_client import Client

    report = LoadReport(clients, calls_per_client, latencies={call.label: [] for call in CALLS})
    guard = threading.Lock()
    start = threading.Barrier(clients + 1)

    def connect(index: int) -> Any:
        try:
            return Client(url, verbose=False)
        except Exception as error:  # e.g. the config request timed out on a loaded CPU
            with guard:
                report.failures.append(f"client {index} could not connect: {type(error).__name__}: {error}")
            return None

    def session(index: int) -> None:
        client = connect(index)
        start.wait()  # reached even by a client that could not connect, else the run would never start
        if client is None:
            return
        for number in range(calls_per_client):
            call = CALLS[(index + number) % len(CALLS)]
            began = time.perf_counter()
            try:
                answer = comparable(ask(client, call))
            except Exception as error:  # every failure is reported, none stops the run
                with guard:
                    report.failures.append(f"client {index} {call.label}: {type(error).__name__}: {error}")
                continue
            with guard:
                report.latencies[call.label].append(time.perf_counter() - began)
                if not same_answer(answer, expected[call.label], call.tolerance):
                    report.mismatches.append(f"client {index} {call.label}")

    threads = [threading.Thread(target=session, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:  # one deadline for all of them, not 600 s each
        thread.join(max(0.0, began + RUN_TIMEOUT_S - time.perf_counter()))
    report.wall_seconds = time.perf_counter() - began
    if any(thread.is_alive() for thread in threads):
        report.failures.append(f"some clients did not finish within {RUN_TIMEOUT_S} s (deadlock or overload)")
    return report


def launch_app() -> tuple[Any, str]:
    """The app as app.py serves it (queue, limits), on a free loopback port, with the model loaded."""
    from playground.config import load_settings
    from playground.runtime import ModelManager
    from playground.ui import build_app, close_app, launch_options
    from playground.ui.queueing import configure_queue

    settings = load_settings(["--offline", "--no-preload"])
    manager = ModelManager(settings)
    manager.load()
    demo = configure_queue(build_app(settings, manager), settings)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                            **launch_options(settings))
    return demo, url


def single_client_seconds(url: str) -> dict[str, float]:
    """Seconds per call for one client alone, calling CALLS in turn (after reference_answers warmed up
    the caches): the baseline for latency and throughput under load."""
    from gradio_client import Client

    client, seconds = Client(url, verbose=False), {}
    for call in CALLS:
        began = time.perf_counter()
        ask(client, call)
        seconds[call.label] = time.perf_counter() - began
    return seconds


def measure(clients: int, calls_per_client: int) -> tuple[LoadReport, dict[str, float]]:
    """Launch the app, take the single-client answers and timings, run the load, close the app."""
    demo, url = launch_app()
    try:
        expected = reference_answers(url)
        alone = single_client_seconds(url)
        return run_load(url, clients, calls_per_client, expected), alone
    finally:
        close_app(demo)


def rows(report: LoadReport, alone: dict[str, float]) -> list[dict[str, Any]]:
    """benchmarks/run.py rows; the baseline is one client alone making the same calls one after another."""
    single = list(alone.values())
    conditions = (f"{report.clients} gradio_client sessions x {report.calls_per_client} calls on loopback, "
                  f"mixed seeded calls ({', '.join(call.label for call in CALLS)}), SmolLM2-135M fp32 on CPU; "
                  f"baseline: one client alone; {report.total_calls} calls, {len(report.failures)} failed, "
                  f"{len(report.mismatches)} differed from the single-client answer")
    return [
        row("load: p50 latency, all calls", report.percentile(None, 0.5), percentile(single, 0.5), "s", conditions),
        row("load: p95 latency, all calls", report.percentile(None, 0.95), percentile(single, 0.95), "s",
            conditions),
        row("load: throughput", report.throughput, len(single) / sum(single), "calls/s", conditions,
            higher_is_better=True),
        row("load: failed or differing calls", float(len(report.failures) + len(report.mismatches)), 0.0, "calls",
            conditions, target="0"),
    ]


def run(clients: int = 30, calls_per_client: int = 4) -> list[dict[str, Any]]:
    """benchmarks/run.py entry: the larger configuration (30 clients x 4 calls)."""
    report, alone = measure(clients, calls_per_client)
    print(report.table())
    return rows(report, alone)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--calls", type=int, default=4, help="calls per client")
    args = parser.parse_args()
    print(measure(args.clients, args.calls)[0].table())


if __name__ == "__main__":
    main()

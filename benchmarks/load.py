"""Load: many gradio_client sessions hitting the launched app at once (loopback only).

`python -m benchmarks.load --clients 30 --calls 4` launches the app (embedded model, offline) with the
queue app.py serves with, runs a mix of tokenize / next_token / attention / draw_samples calls from
`clients` threads (each its own Client), compares every answer with the single-client answer, and prints
p50 / p95 latency per endpoint and the throughput. tests/load/test_load.py runs a small configuration.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# (api_name, args): deterministic calls (seeded), so a concurrent answer must equal the single-client one.
CALLS: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("/tokenize", ("The quick brown fox jumps over the lazy dog.", ["model", "bytes"], "", True)),
    ("/next_token", ("The capital of France is", False, 0.8, 0, 0.95, 0.0, 1.0, 7, 10)),
    ("/attention", ("Attention is all you need, they said.", 0, "mean", "heads", False)),
    ("/draw_samples", ("Once upon a time", False, 1.0, 20, 1.0, 0.0, 1.0, 3, 500)),
)
TIMING_WORDS = ("second", "time", "elapsed", "_ms", "duration")


def numbers_only(value: Any) -> Any:
    """The JSON parts of a result without timing fields (they differ run to run by design)."""
    if isinstance(value, dict):
        return {key: numbers_only(item) for key, item in value.items()
                if not any(word in str(key).lower() for word in TIMING_WORDS)}
    if isinstance(value, (list, tuple)):
        return [numbers_only(item) for item in value]
    return value


def comparable(result: Any) -> list[Any]:
    outputs = result if isinstance(result, tuple) else (result,)
    return [numbers_only(output) for output in outputs if isinstance(output, dict)]


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
        values = sorted(self.latencies[name] if name else [v for vs in self.latencies.values() for v in vs])
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]

    def table(self) -> str:
        lines = [f"{self.clients} clients x {self.calls_per_client} calls: {self.total_calls} calls in "
                 f"{self.wall_seconds:.1f} s = {self.throughput:.2f} calls/s; {len(self.failures)} failed, "
                 f"{len(self.mismatches)} differed from the single-client answer",
                 f"{'endpoint':16} {'calls':>6} {'p50 s':>8} {'p95 s':>8}"]
        for name in [*sorted(self.latencies), None]:
            count = len(self.latencies[name]) if name else self.total_calls
            lines.append(f"{name or 'all':16} {count:6d} {self.percentile(name, 0.5):8.2f} "
                         f"{self.percentile(name, 0.95):8.2f}")
        return "\n".join(lines)


def reference_answers(url: str) -> dict[str, list[Any]]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    return {name: comparable(client.predict(*args, api_name=name)) for name, args in CALLS}


def run_load(url: str, clients: int, calls_per_client: int, expected: dict[str, list[Any]]) -> LoadReport:
    """`clients` threads, each its own Client, each making `calls_per_client` calls from CALLS in turn."""
    from gradio_client import Client

    report = LoadReport(clients, calls_per_client, latencies={name: [] for name, _ in CALLS})
    guard = threading.Lock()
    start = threading.Barrier(clients + 1)

    def session(index: int) -> None:
        client = Client(url, verbose=False)
        start.wait()
        for call in range(calls_per_client):
            name, args = CALLS[(index + call) % len(CALLS)]
            began = time.perf_counter()
            try:
                answer = comparable(client.predict(*args, api_name=name))
            except Exception as error:  # every failure is reported, none stops the run
                with guard:
                    report.failures.append(f"client {index} {name}: {type(error).__name__}: {error}")
                continue
            with guard:
                report.latencies[name].append(time.perf_counter() - began)
                if answer != expected[name]:
                    report.mismatches.append(f"client {index} {name}")

    threads = [threading.Thread(target=session, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(600)
    report.wall_seconds = time.perf_counter() - began
    if any(thread.is_alive() for thread in threads):
        report.failures.append("some clients did not finish within 600 s (deadlock or overload)")
    return report


def launch_app() -> tuple[Any, str]:
    """The app as app.py serves it (queue, limits), on a free loopback port, with the model loaded."""
    from playground.config import load_settings
    from playground.runtime import ModelManager
    from playground.ui import build_app, launch_options
    from playground.ui.serving import configure_queue

    settings = load_settings(["--offline", "--no-preload"])
    manager = ModelManager(settings)
    manager.load()
    demo = configure_queue(build_app(settings, manager), settings)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                            **launch_options(settings))
    return demo, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--calls", type=int, default=4, help="calls per client")
    args = parser.parse_args()
    demo, url = launch_app()
    try:
        print(run_load(url, args.clients, args.calls, reference_answers(url)).table())
    finally:
        demo.close()


if __name__ == "__main__":
    main()

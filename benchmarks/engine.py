"""Decoding engine and start-up: our generation loop vs transformers' generate and vs llama.cpp, time to first
token, cold start of the app with cached weights, and the one-time GGUF conversion.

`python -m benchmarks.engine [--tokens N] [--repeats N]` prints the table. The llama.cpp rows need the optional
`pip install -r requirements-bench.txt` (llama-cpp-python built from source); without it they say
"not measured" and why. llama.cpp runs in a child process (`--llama-cpp-worker`), so a crash in it (its AMX
path faults on CPUs whose hypervisor does not grant AMX) is reported instead of ending the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import interleaved, load_default_model, median, print_table, row

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a short paragraph about why the sky is blue."


def _quality(reference: Any, candidate: Any) -> str:
    """KL and top-1 agreement of next-token distributions on the shipped evaluation text, each position's logits
    computed as a decode step computes them: the last hidden state through the output head one row at a time
    (the default's head takes its int8 path only for a few rows at once; runtime/head.py)."""
    from playground import quantization

    ids = quantization.eval_text_ids(reference.tokenizer)
    with torch.inference_mode():
        logits = [_decode_step_logits(m.model, ids) for m in (reference, candidate)]
    report = quantization.quality_vs_reference(logits[0], logits[1], ids[0])
    return f"KL {report.kl_mean:.4f}, top-1 {report.top1_agreement:.1%} over {report.tokens} tokens"


def _decode_step_logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """ids [1, n] -> logits [n, vocab] float32, the head applied to each position's last hidden state alone."""
    from playground.runtime.head import decoding

    hidden = model.model(input_ids=ids).last_hidden_state[0]  # [n, hidden], after the final norm
    head = model.get_output_embeddings()
    with decoding():
        return torch.cat([head(row[None]) for row in hidden]).float()


def _with_fp32_head(loaded: Any) -> Any:
    """A copy of `loaded` whose output head is the plain fp32 product (the default's DecodeHead replaced), to
    measure what the decode head buys on its own. The copy's decoder is stacked again (runtime/decode.py keeps
    that per model object), so both sides take the same lean decoding step."""
    import copy
    from types import SimpleNamespace

    from playground.runtime.decode import fuse_decoder

    model = fuse_decoder(copy.deepcopy(loaded.model))
    head = model.get_output_embeddings()
    plain = torch.nn.Linear(head.in_features, head.out_features, bias=False)
    plain.weight = head.weight
    model.set_output_embeddings(plain)
    return SimpleNamespace(model=model, tokenizer=loaded.tokenizer)


def _decode_rows(tokens: int, repeats: int) -> list[dict[str, Any]]:
    """Decode and first-token speed of the default precision (auto: int4 on CPU) against `generate` on exact
    fp32 weights, with the default's output quality vs fp32 computed in the same run; then the loop alone
    (same weights on both sides) and the faster but lossy dynamic int8."""
    from playground.generation import encode_prompt, generate_text
    from playground.runtime.head import decoding
    from playground.sampling import SamplingSettings

    fp32 = load_default_model("none")
    default = load_default_model("auto")
    int8 = load_default_model("int8")
    ids = encode_prompt(fp32.tokenizer, PROMPT)
    greedy = SamplingSettings(temperature=0.0)

    def ours(model: Any, new_tokens: int = tokens) -> Any:
        return lambda: generate_text(model.model, model.tokenizer, ids, greedy, new_tokens)

    def reference(model: Any, new_tokens: int = tokens) -> Any:
        """transformers' generate; its steps are decoding steps too, so a model with the decode head (the default)
        uses it on both sides (runtime/head.py)."""
        def run() -> Any:
            with decoding():
                return model.model.generate(ids, do_sample=False, max_new_tokens=new_tokens,
                                            min_new_tokens=new_tokens)
        return run

    conditions = (f"SmolLM2-135M-Instruct, CPU, {torch.get_num_threads()} threads, prompt {ids.shape[1]} tokens, "
                  f"{tokens} new tokens, greedy, median of {repeats}, interleaved")

    def decode_row(label: str, candidate: Any, baseline: Any, notes: str, target: str) -> dict[str, Any]:
        ours_s, base_s = interleaved(ours(candidate), reference(baseline), repeats)
        return row(label, tokens / median(ours_s), tokens / median(base_s), "tok/s", conditions + notes, True, target)

    def first_token_row(label: str, candidate: Any, baseline: Any) -> dict[str, Any]:
        ours_s, base_s = interleaved(ours(candidate, 1), reference(baseline, 1), repeats)
        return row(label, median(ours_s), median(base_s), "s", conditions, False, "<= 1.0x")

    def head_row() -> dict[str, Any]:
        """What the decode head buys on its own: our loop on the default vs the same model with an fp32 head."""
        fp32_head = _with_fp32_head(default)
        ours_s, base_s = interleaved(ours(default), ours(fp32_head), repeats)
        return row("decode tok/s: default (int8 head, top 64 in fp32) vs the default with an fp32 head",
                   tokens / median(ours_s), tokens / median(base_s), "tok/s",
                   conditions + f"; quality with the fp32 head: {_quality(fp32, fp32_head)}", True, "> 1.0x")

    default_name = f"{default.precision.quantization} ({default.precision.label})"
    default_notes = f"; default = {default_name}; quality vs fp32: {_quality(fp32, default)}"
    return _llama_cpp_rows(default, repeats) + [_cache_row(default, repeats)] + [
        decode_row("decode tok/s: our loop, default precision vs generate fp32", default, fp32, default_notes,
                   ">= 1.5x"),
        head_row(),
        decode_row("decode tok/s: our loop vs generate, both default precision", default, default,
                   f"; default = {default_name}", ">= 1.0x"),
        decode_row("decode tok/s: our loop vs generate, both fp32", fp32, fp32, "", ">= 1.0x"),
        decode_row("decode tok/s: our loop int8 vs generate fp32", int8, fp32,
                   f"; int8 quality vs fp32: {_quality(fp32, int8)}", "(quality!)"),
        first_token_row("time to first token: default precision vs generate fp32", default, fp32),
        first_token_row("time to first token: our loop vs generate (fp32)", fp32, fp32),
    ]


LLAMA_CPP_TOKENS = 96  # new tokens per llama.cpp comparison run (the target says 96-128)
LONG_PROMPT_TOKENS = 256  # the first-token comparison's prompt length
RAG_PROMPT_TOKENS, CACHE_TOKENS = 630, 64  # the KV cache row: a RAG answer's prompt length, tokens decoded after it


def llama_cpp_worker(gguf: str, prompt_ids: list[int], new_tokens: int, threads: int) -> dict[str, float]:
    """In a child process: llama.cpp (llama-cpp-python) on `gguf`, the same prompt ids and thread count as ours.
    Greedy with EOS masked, so it decodes exactly `new_tokens`. Returns seconds for the prompt (prefill and the
    first token's logits) and for the decode steps after it."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(gguf, n_threads=threads, n_threads_batch=threads, n_ctx=len(prompt_ids) + new_tokens + 8,
                n_batch=512, verbose=False)
    eos = llm.token_eos()
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt_ids)
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        logits = llm.scores[llm.n_tokens - 1].copy()  # [vocab]
        logits[eos] = -np.inf
        llm.eval([int(np.argmax(logits))])
    return {"prefill_s": prefill, "decode_s": time.perf_counter() - started}


def _llama_cpp_run(prompt_ids: list[int], new_tokens: int) -> dict[str, float]:
    """One llama.cpp run in a child process; raises RuntimeError with the reason when it cannot run."""
    from playground.runtime import embedded
    from playground.runtime.registry import resolve_model

    spec = resolve_model("smollm2-135m-instruct")
    with tempfile.TemporaryDirectory() as scratch:
        folder, filename = embedded.gguf_location(spec, Path(scratch))
        request = json.dumps({"gguf": str(folder / filename), "prompt_ids": prompt_ids, "new_tokens": new_tokens,
                              "threads": torch.get_num_threads()})
        done = subprocess.run([sys.executable, "-m", "benchmarks.engine", "--llama-cpp-worker", request], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"llama.cpp exited with {done.returncode}: {done.stderr.strip()[-200:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _our_decode_seconds(loaded: Any, prompt: torch.Tensor, new_tokens: int) -> float:
    """Seconds for `new_tokens` decode steps of our loop after the prompt's own step (greedy, no EOS ids, so it
    never stops early): from the first yielded token to the (new_tokens + 1)-th, as llama.cpp is timed."""
    from playground.generation import generate_tokens
    from playground.sampling import SamplingSettings

    started = 0.0
    for step in generate_tokens(loaded.model, loaded.tokenizer, prompt, SamplingSettings(temperature=0.0),
                                new_tokens + 1):
        if step.index == 0:
            started = time.perf_counter()
    return time.perf_counter() - started


def _llama_cpp_rows(default: Any, repeats: int) -> list[dict[str, Any]]:
    """Our loop in the default precision vs llama.cpp on the embedded GGUF (the weights ours are converted from):
    decode speed after the chat-templated prompt, and the first token of a 256-token prompt. Interleaved runs."""
    from playground.generation import encode_prompt, generate_text

    names = ("decode tok/s: our loop, default precision vs llama.cpp",
             f"time to first token, {LONG_PROMPT_TOKENS}-token prompt: ours vs llama.cpp")
    try:
        import llama_cpp
    except ImportError:
        return [row(name, float("nan"), float("nan"), unit, "not measured: llama-cpp-python is not installed "
                    "(pip install -r requirements-bench.txt)") for name, unit in zip(names, ("tok/s", "s"))]
    prompt = encode_prompt(default.tokenizer, PROMPT)
    long_prompt = encode_prompt(default.tokenizer, " ".join([PROMPT] * 40))[:, -LONG_PROMPT_TOKENS:]
    ours_decode, theirs_decode, ours_first, theirs_first = [], [], [], []
    try:
        for attempt in range(repeats + 1):  # the first round warms both up and is not counted
            decode_seconds = _our_decode_seconds(default, prompt, LLAMA_CPP_TOKENS)
            first_step = generate_text(default.model, default.tokenizer, long_prompt, max_new_tokens=1)
            theirs = _llama_cpp_run(prompt[0].tolist(), LLAMA_CPP_TOKENS)
            theirs_long = _llama_cpp_run(long_prompt[0].tolist(), 0)
            if attempt:
                ours_decode.append(decode_seconds)
                theirs_decode.append(theirs["decode_s"])
                ours_first.append(first_step.seconds)
                theirs_first.append(theirs_long["prefill_s"])
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        return [row(name, float("nan"), float("nan"), unit, f"not measured: {error}")
                for name, unit in zip(names, ("tok/s", "s"))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    conditions = (f"SmolLM2-135M-Instruct, CPU, {torch.get_num_threads()} threads both, default = "
                  f"{default.precision.label} vs llama.cpp (llama-cpp-python {llama_cpp.__version__}) on the "
                  f"embedded Q4_1 GGUF; greedy, EOS suppressed, {LLAMA_CPP_TOKENS} new tokens after a "
                  f"{prompt.shape[1]}-token chat prompt; median of {repeats} interleaved; load average {load:.1f}")
    return [row(names[0], LLAMA_CPP_TOKENS / median(ours_decode), LLAMA_CPP_TOKENS / median(theirs_decode),
                "tok/s", conditions, True, ">= 0.6x"),
            row(names[1], median(ours_first), median(theirs_first), "s", conditions, False, "<= 1.5x")]


def _greedy_steps(model: Any, prompt: torch.Tensor, new_tokens: int, cache: Any) -> float:
    """Seconds for `new_tokens` greedy decoding steps (decode_forward, the loop's own step) after the prompt's."""
    from playground.runtime.decode import decode_forward

    with torch.inference_mode():
        logits, cache = decode_forward(model, prompt, cache)
        started = time.perf_counter()
        for _ in range(new_tokens):
            logits, cache = decode_forward(model, logits[0, -1].argmax().view(1, 1), cache)
    return time.perf_counter() - started


def _cache_row(default: Any, repeats: int) -> dict[str, Any]:
    """What the in-place KV cache buys on its own, where it matters (a RAG-length prompt): the same lean steps with
    runtime/decode.py's cache vs transformers' DynamicCache, which copies every layer's cache at every step."""
    from transformers import DynamicCache

    from playground.generation import encode_prompt
    from playground.runtime.decode import new_cache

    prompt = encode_prompt(default.tokenizer, " ".join([PROMPT] * 60))[:, -RAG_PROMPT_TOKENS:]
    model = default.model
    ours_s, base_s = [], []
    for attempt in range(repeats + 1):  # alternating; the first round warms both up and is not counted
        # the steps' own seconds, not the prompt's forward (interleaved() would time the whole call)
        ours = _greedy_steps(model, prompt, CACHE_TOKENS, new_cache(model))
        baseline = _greedy_steps(model, prompt, CACHE_TOKENS, DynamicCache(config=model.config))
        if attempt:
            ours_s.append(ours)
            base_s.append(baseline)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return row(f"decode tok/s after a {RAG_PROMPT_TOKENS}-token prompt: in-place KV cache vs DynamicCache",
               CACHE_TOKENS / median(ours_s), CACHE_TOKENS / median(base_s), "tok/s",
               f"SmolLM2-135M-Instruct, CPU, {torch.get_num_threads()} threads, default precision, greedy, "
               f"{CACHE_TOKENS} new tokens, the same lean steps on both sides, median of {repeats} interleaved; "
               f"load average {load:.1f}", True, "> 1.0x")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seconds_until_served(command: list[str], port: int, ready_marker: bytes, timeout: float = 300) -> float:
    """Start a server process and time until GET / (or the status API) answers with the marker."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if ready_marker in response.read():
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{command} did not serve within {timeout} s")
    finally:
        process.terminate()
        process.wait(30)


def _cold_start_rows() -> list[dict[str, Any]]:
    port = _free_port()
    ours = _seconds_until_served([sys.executable, "app.py", "--offline", "--port", str(port)], port,
                                 b"Visual LLM Playground")
    hello = ("import gradio as gr\nwith gr.Blocks(title='hello') as demo:\n    gr.Markdown('hello')\n"
             f"demo.launch(server_port={port})\n")
    baseline = _seconds_until_served([sys.executable, "-c", hello], port, b"hello")
    return [row("cold start to a served page (weights cached)", ours, baseline, "s",
                "app.py --offline vs a one-Markdown gradio app, same machine, one run each", False, "")]


def _conversion_rows() -> list[dict[str, Any]]:
    from playground.runtime.loading import convert_gguf, load_causal_lm
    from playground.runtime.precision import resolve_precision
    from playground.runtime.registry import resolve_model

    spec = resolve_model("smollm2-135m-instruct")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        convert_gguf(spec, Path(scratch) / "models" / spec.key)
        conversion = time.perf_counter() - started
        started = time.perf_counter()
        load_causal_lm(spec, resolve_precision("none", "cpu"), "cpu", Path(scratch), offline=True)
        cached = time.perf_counter() - started
    return [row("first-run GGUF conversion vs cached load", conversion, cached, "s",
                "SmolLM2-135M Q4_1 GGUF -> fp32 safetensors, then load_causal_lm from the cache", False, "")]


def run(tokens: int = 48, repeats: int = 3) -> list[dict[str, Any]]:
    return _decode_rows(tokens, repeats) + _cold_start_rows() + _conversion_rows()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--llama-cpp-worker", help=argparse.SUPPRESS)  # JSON request; used by _llama_cpp_run
    parser.add_argument("--decode-only", action="store_true", help="only the decode and first-token rows")
    arguments = parser.parse_args()
    if arguments.llama_cpp_worker:
        print(json.dumps(llama_cpp_worker(**json.loads(arguments.llama_cpp_worker))))
    elif arguments.decode_only:
        print_table(_decode_rows(arguments.tokens, arguments.repeats))
    else:
        print_table(run(arguments.tokens, arguments.repeats))

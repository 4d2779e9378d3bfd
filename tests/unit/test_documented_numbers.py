"""Numbers the docs state about the app's behaviour (a cache size, a cap, a constant of a formula, a timer) equal
the code's (issue 18; the mapping is docs/claims.md). Each entry finds its sentence in the page (whitespace
collapsed, so line breaks do not matter) and compares the numbers it captures with the constant the code uses,
so changing either side alone fails here. The limits table is checked in test_claims_kept.py."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORDS = {"one": 1, "two": 2, "six": 6, "second": 1}


def default(function: Callable[..., Any], name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def handlers_attribute(module: str, cls: str, attribute: str) -> Callable[[Any], Any]:
    """What a tab's handlers object holds, built over a stand-in context (no model needed)."""
    def read(stub_context) -> Any:
        import importlib

        handlers = getattr(importlib.import_module(module), cls)(stub_context(None))
        return getattr(handlers, attribute)
    return read


def c(module: str, name: str) -> Callable[[Any], Any]:
    def read(_) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)
    return read


def d(module: str, function: str, name: str) -> Callable[[Any], Any]:
    def read(_) -> Any:
        import importlib

        target: Any = importlib.import_module(module)
        for part in function.split("."):
            target = getattr(target, part)
        return default(target, name)
    return read


# (page, sentence pattern with one group per number, the code's values in that order)
DOCUMENTED: list[tuple[str, str, list[Callable[[Any], Any]]]] = [
    ("docs/presenting.md", r"texts cut at ([\d,]+) characters", [c("playground.ui.deeplinks", "MAX_TEXT_CHARS")]),
    ("docs/presenting.md", r"shown as a warning \(for (\d+) s", [c("playground.ui.deeplinks", "LINK_WARNING_SECONDS")]),
    ("docs/workshop.md", r"reports its tab and its inputs every ([\d.]+) s",
     [c("playground.ui.classroom_panel", "REPORT_SECONDS")]),
    ("docs/workshop.md", r"or after ([\d.]+) s with nothing new", [c("playground.ui.classroom_panel", "FOLLOW_WAIT_SECONDS")]),
    ("docs/workshop.md", r"the page asks again within ([\d.]+) s", [c("playground.ui.classroom_panel", "FOLLOW_SECONDS")]),
    ("docs/workshop.md", r"The card shows a (\w+)-letter code", [c("playground.classroom", "CODE_LENGTH")]),
    ("docs/workshop.md", r"wrong tries wait (\d+) s, (\d+) s, (\d+) s",
     [lambda _: 1 * _backoff(), lambda _: 2 * _backoff(), lambda _: 4 * _backoff()]),
    ("docs/workshop.md", r"more than (\d+) wrong tries a minute",
     [c("playground.sessions", "GLOBAL_FAILURES_PER_MINUTE")]),
    ("docs/workshop.md", r"at most (\d+) characters, one per attendee \(a new answer replaces the old one, at most "
                         r"(\d+) times\)",
     [c("playground.classroom", "ANSWER_MAX_CHARS"), c("playground.classroom", "MAX_ANSWER_CHANGES")]),
    ("docs/workshop.md", r"freed after (\d+) minutes without a request [^;]*; at most (\d+) sessions",
     [lambda _: _sessions().IDLE_TIMEOUT_SECONDS / 60, lambda _: _sessions().MAX_SESSIONS]),
    ("docs/limits-and-safety.md", r"run up to (\d+) at once per event",
     [c("playground.ui.queueing", "CHEAP_CONCURRENCY")]),
    ("docs/limits-and-safety.md", r"share one queue, (\d+) at a time", [c("playground.ui.queueing", "LONG_JOB_CONCURRENCY")]),
    ("docs/tabs/sampling.md", r"LRU of (\d+) entries",
     [lambda ctx: handlers_attribute("playground.ui.sampling_tab", "SamplingHandlers", "cache")(ctx).capacity]),
    ("docs/tabs/sampling.md", r"final distribution at T = 0 \(greedy\), ([\d.]+), ([\d.]+), ([\d.]+), ([\d.]+), "
                              r"([\d.]+), ([\d.]+) with",
     [lambda _, i=i: _sweep()[i] for i in range(1, 7)]),
    ("docs/tabs/attention.md", r"the last (\w+) prompts are kept",
     [lambda ctx: handlers_attribute("playground.ui.attention_tab", "AttentionHandlers", "runs")(ctx).size]),
    ("docs/tabs/attention.md", r"thumbnails are block maxima over ≤ (\d+)×(\d+) cells",
     [c("playground.attention", "THUMBNAIL_CELLS"), c("playground.attention", "THUMBNAIL_CELLS")]),
    ("docs/tabs/attention.md", r"story panels show the first (\d+) tokens", [c("playground.figures.attention", "STORY_TOKENS")]),
    ("docs/tabs/tokenization.md", r"the chips show the tokens of the first ([\d,]+) characters",
     [c("playground.figures.tokenization", "CHIP_CHAR_LIMIT")]),
    ("docs/tabs/tokenization.md", r"JSON lists the first ([\d,]+) tokens per tokenizer",
     [c("playground.figures.tokenization", "JSON_TOKEN_LIMIT")]),
    ("docs/api.md", r"per-token lists capped at ([\d,]+) per tokenizer", [c("playground.figures.tokenization", "JSON_TOKEN_LIMIT")]),
    ("docs/tabs/tokenization.md", r"one lane per tokenizer, first (\d+) characters",
     [c("playground.figures.tokenization", "ALIGNMENT_CHAR_LIMIT")]),
    ("docs/tabs/rag.md", r"k1 = ([\d.]+), b = ([\d.]+)",
     [d("playground.rag.search", "LexicalIndex.__init__", "k1"), d("playground.rag.search", "LexicalIndex.__init__", "b")]),
    ("docs/tabs/rag.md", r"\\sum 1/\((\d+) \+ \\mathrm\{rank\}\)\$ of the two lists' top (\d+)",
     [c("playground.rag.search", "RRF_K"), c("playground.rag.ranking", "CANDIDATE_POOL")]),
    ("docs/tabs/rag.md", r"a FAISS HNSW index from ([\d,]+) chunks up", [c("playground.rag.search", "FAISS_THRESHOLD")]),
    ("docs/tabs/rag.md", r"in batches of (\d+) with left padding", [d("playground.rag.rerank", "judge_relevance", "batch_size")]),
    ("docs/tabs/rag.md", r"Passages are capped at ([\d,]+) prompt tokens", [c("playground.rag.answer", "CONTEXT_TOKEN_BUDGET")]),
    ("docs/tabs/speculative.md", r"the residual's top (\d+) tokens", [c("playground.speculative", "RESIDUAL_TOP")]),
    ("docs/tabs/speculative.md", r"what followed the last (\d+)-, 2- or 1-gram",
     [d("playground.drafts", "lookup_continuation", "max_ngram")]),
    ("docs/tabs/lora.md", r"(\d+)% of an upload is held out for eval", [lambda _: round(_lora_data().EVAL_FRACTION * 100)]),
    ("docs/tabs/lora.md", r"polls that file every (\w+)", [c("playground.ui.lora_tab", "POLL_SECONDS")]),
    ("docs/tabs/lora.md", r"on up to (\d+) eval examples", [c("playground.lora.training", "MAX_EVAL_EXAMPLES")]),
    ("docs/tabs/lora.md", r"gradient norm before clipping \(clip at ([\d.]+)\)", [lambda _: _lora_settings().max_grad_norm]),
    ("docs/api.md", r"prompts \(one per line, up to (\d+)\)", [c("playground.ui.lora_tab", "MAX_COMPARE_PROMPTS")]),
    ("docs/tabs/calibration.md", r"left-padded (\d+) to a batch", [d("playground.calibration", "score_questions", "batch_size")]),
    ("docs/tabs/calibration.md", r"95% bootstrap interval \(([\d,]+) resamples\)",
     [c("playground.calibration", "BOOTSTRAP_RESAMPLES")]),
    ("docs/tabs/calibration.md", r"95th percentile of ([\d,]+) simulations", [c("playground.calibration", "NOISE_FLOOR_SIMULATIONS")]),
    ("docs/tabs/calibration.md", r"bounded search over ([\d.]+)–([\d.]+)",
     [lambda _: _calibration().TEMPERATURE_BOUNDS[0], lambda _: _calibration().TEMPERATURE_BOUNDS[1]]),
    ("docs/models.md", r"4-bit codes in groups of (\d+) weights", [c("playground.runtime.int4", "GROUP_SIZE")]),
    ("docs/scaling.md", r"per request \(default (\d+)\)", [lambda _: _settings().engine_timeout_s]),
    ("docs/scaling.md", r"one quick probe at most every (\d+) s", [c("playground.engine.client", "STATUS_TTL_S")]),
    ("docs/scaling.md", r"probe \(one try, (\d+) s, at most every (\d+) s\)",
     [c("playground.engine.client", "STATUS_TIMEOUT_S"), c("playground.engine.client", "STATUS_TTL_S")]),
    ("docs/scaling.md", r"the next token's top (\d+) log-probabilities", [c("playground.engine.sampling", "ENGINE_TOP_N")]),
]


def _backoff() -> float:
    from playground.sessions import BACKOFF_FIRST_SECONDS

    return BACKOFF_FIRST_SECONDS


def _sessions() -> Any:
    from playground import sessions

    return sessions


def _sweep() -> tuple[float, ...]:
    from playground.sampling.views import SWEEP_TEMPERATURES

    return SWEEP_TEMPERATURES


def _lora_data() -> Any:
    from playground.lora import data

    return data


def _lora_settings() -> Any:
    from playground.lora import LoraSettings

    return LoraSettings()


def _settings() -> Any:
    from playground.config import Settings

    return Settings()


def _calibration() -> Any:
    from playground import calibration

    return calibration


def as_number(text: str) -> float:
    return float(WORDS[text]) if text in WORDS else float(text.replace(",", ""))


def documented_numbers(page: str, pattern: str) -> list[float]:
    text = re.sub(r"\s+", " ", (ROOT / page).read_text(encoding="utf-8"))
    match = re.search(pattern, text)
    assert match, f"{page}: no sentence matches {pattern!r} (reworded? update this test and docs/claims.md)"
    return [as_number(group) for group in match.groups()]


@pytest.mark.parametrize("page, pattern, values", DOCUMENTED, ids=[f"{p}:{pat[:30]}" for p, pat, _ in DOCUMENTED])
def test_the_docs_state_the_codes_numbers(page, pattern, values, stub_context):
    assert documented_numbers(page, pattern) == [pytest.approx(float(value(stub_context))) for value in values]


def test_a_changed_number_or_a_reworded_sentence_is_caught(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "page.md").write_text("Prompts are cut at 21,000\ncharacters.")
    assert documented_numbers("page.md", r"cut at ([\d,]+) characters") == [21000.0]  # != the code's 20,000
    with pytest.raises(AssertionError, match="no sentence matches"):
        documented_numbers("page.md", r"texts cut at ([\d,]+) characters")

"""Every per-request limit of the app, in one place (compute-side: no gradio).

Compute modules take their caps from `LIMITS` (the hard limits: what one 2-core CPU serves in seconds to
a minute). A public deployment (`PLAYGROUND_PUBLIC=1`) tightens the costliest ones further with
`PUBLIC_LIMITS`; the UI checks those per request (`AppContext.limits`, `whole_number_in`).
docs/limits-and-safety.md lists them all and what happens at each.

    >>> LIMITS.speculative_k, PUBLIC_LIMITS.training_steps < LIMITS.training_steps
    (16, True)
    >>> whole_number_in("k", 4.0, 1, LIMITS.speculative_k)
    4
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

MIB = 2**20


class LimitExceededError(ValueError):
    """A request asked for more than this server allows; the message names the limit and the value."""


@dataclass(frozen=True)
class Limits:
    """Caps per request. Text caps are in characters, token caps in tokens of the active model."""

    # -- any endpoint ------------------------------------------------------------------------------
    text_chars: int = 1_000_000  # any one text argument (the RAG paste box is the largest legitimate one); also
    # the text nested in one list/dict argument (chat messages, table rows), counted together
    nesting_depth: int = 100  # lists/dicts inside each other, in an argument or an export (the app's JSON: < 10)
    # -- generation (max_new_tokens per endpoint) --------------------------------------------------
    sampling_new_tokens: int = 128  # sampling tab: a traced generation keeps every step's distribution
    speculative_new_tokens: int = 512
    rag_new_tokens: int = 256
    lora_compare_new_tokens: int = 128  # answered twice (base and adapted) per prompt
    quantization_decode_tokens: int = 64  # model tab: tokens decoded per precision for the tok/s column
    memory_context_tokens: int = 10_000_000  # model tab's memory calculator (a formula: the range, not the cost)
    memory_batch: int = 4096
    # -- prompt lengths (longer prompts keep their last tokens, with a note) ------------------------
    sampling_prompt_tokens: int = 512
    speculative_prompt_tokens: int = 1024
    attention_tokens: int = 256  # attention is n² numbers per head: 30 layers x 9 heads x 256² = 17.7 M floats
    inside_lens_tokens: int = 128  # logit lens: (layers + 1) x tokens rows of the [hidden x vocab] output head
    inside_importance_tokens: int = 64  # head importance: one copy of the prompt per head (270 for SmolLM2)
    inside_attribution_tokens: int = 64  # attribution: IG runs steps x tokens with gradients; LOO tokens copies
    # -- other counts ------------------------------------------------------------------------------
    samples: int = 100_000  # draws from one next-token distribution
    speculative_k: int = 16  # draft tokens per speculative step
    inside_parts: int = 300  # parts switched off at once (heads + attention layers + MLP layers; SmolLM2: 330)
    inside_new_tokens: int = 32  # greedy continuation before/after an ablation (generated twice)
    inside_ig_steps: int = 128  # integrated-gradients steps (each a forward + backward over the prompt)
    retrieval_k: int = 20
    rerank_candidates: int = 20
    question_chars: int = 1000  # RAG questions are cut here
    bpe_merges: int = 2000
    bpe_corpus_chars: int = 200_000
    bpe_text_chars: int = 20_000
    tokenize_full_chars: int = 100_000  # tokenize_full returns every token of every tokenizer: ~40 bytes of JSON a char
    model_name_chars: int = 1024  # a model / tokenizer name or folder (hub ids are < 100): checked before any path
    name_chars: int = 100  # a name a user gives (a price row's): longer ones are cut where they are shown
    # -- uploads (read as data, never executed or unpickled) ----------------------------------------
    upload_bytes: int = 20 * MIB  # any one uploaded file, enforced by gradio before a handler runs
    rag_file_bytes: int = 5 * MIB
    rag_total_bytes: int = 20 * MIB
    rag_files: int = 50
    rag_pasted_chars: int = 1_000_000
    rag_pdf_pages: int = 500
    # PDF text extraction is bounded by work, not pages (pages can share one huge content stream): CPU seconds
    # and extracted characters for all the PDFs of one request, and the extracting process's memory
    rag_pdf_seconds: int = 60
    rag_pdf_chars: int = 5_000_000
    rag_pdf_memory_bytes: int = 2048 * MIB
    rag_chunks: int = 10_000  # on a CPU; embedding is ~10-30 chunks/s
    rag_chunks_gpu: int = 100_000
    lora_upload_lines: int = 5000
    csv_rows: int = 50_000  # calibration: rows of an uploaded predictions CSV
    csv_columns: int = 200  # calibration: columns of that CSV (read from the header before pandas parses it)
    csv_classes: int = 100  # calibration: prob_<class> columns (rows x classes matrices: 50,000 x 100 x 8 B = 40 MB)
    self_consistency_samples: int = 16  # calibration: sampled answers per question (each a short generation)
    self_consistency_questions: int = 64  # calibration: questions sampled that way (x samples = generations)
    serving_batch: int = 64  # serving tab: the largest batch measured (one decode step, 64 rows)
    serving_decode_steps: int = 32  # serving tab: timed decode steps per batch size
    serving_prompt_tokens: int = 256  # serving tab: the prompt repeated in every row (cache = batch x prompt)
    serving_kv_tokens: int = 16_384  # serving tab: batch x context of one KV-cache measurement (one prefill)
    serving_requests: int = 64  # serving tab: simulated requests (schedule, block table)
    serving_request_tokens: int = 8192  # serving tab: tokens per simulated request
    # -- training ----------------------------------------------------------------------------------
    training_steps: int = 2000  # optimizer steps of one LoRA run (also when set by epochs)
    training_runs: int = 1  # LoRA runs training at once (each visitor may start one; the rest wait in line)
    private_models: int = 4  # visitors' private copies (base + their own adapter) held at once
    # -- the queue ---------------------------------------------------------------------------------
    queue_size: int = 200  # requests waiting at once; one more gets "the queue is full"

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


LIMITS = Limits()

# A public Space: strangers can use it, so the costliest requests are capped lower (a workshop on the
# default limits is fine; a stranger should not hold the CPU for many minutes).
PUBLIC_LIMITS = replace(
    LIMITS,
    speculative_new_tokens=128,
    rag_new_tokens=128,
    lora_compare_new_tokens=64,
    quantization_decode_tokens=16,
    samples=20_000,
    tokenize_full_chars=20_000,
    upload_bytes=5 * MIB,
    rag_file_bytes=2 * MIB,
    rag_total_bytes=5 * MIB,
    rag_files=10,
    rag_pasted_chars=200_000,
    rag_pdf_pages=100,
    rag_pdf_seconds=15,
    rag_pdf_chars=1_000_000,
    rag_chunks=2_000,  # ~1-3 minutes of embedding on a 2-core CPU
    rag_chunks_gpu=20_000,
    self_consistency_samples=8,
    serving_batch=32,
    serving_decode_steps=16,
    serving_kv_tokens=4096,
    inside_importance_tokens=32,
    inside_attribution_tokens=32,
    inside_ig_steps=64,
    training_steps=200,
    private_models=2,
    queue_size=100,
)  # only these fields differ; each is checked per request against `Settings.limits`


def limits_for(public: bool) -> Limits:
    return PUBLIC_LIMITS if public else LIMITS


def whole_number_in(name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int if it is a whole number in low..high; else LimitExceededError naming the range.

    Accepts floats that are whole (sliders and gr.Number send 24.0), refuses bools, NaN and infinities.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise LimitExceededError(f"{name} must be a whole number in {low}..{high:,}, got {shown(value)}")
    if not low <= value <= high:
        raise LimitExceededError(f"{name} must be a whole number in {low}..{high:,}, got {int(value):,}")
    return int(value)


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters: what a message may echo of an input (never all of it).

    >>> shown("x" * 100, 10)
    "'xxxxxx..."
    """
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def lone_surrogate_at(text: str) -> int | None:
    """Index of the first lone surrogate (U+D800..U+DFFF: JSON can carry one, no UTF-8 text can), or None.

    >>> lone_surrogate_at("ab\\ud800"), lone_surrogate_at("naïve")
    (2, None)
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def check_nesting(name: str, value: Any, limit: int = LIMITS.nesting_depth) -> None:
    """Refuse lists/dicts nested more than `limit` deep (walked without recursion: the point is that recursive
    code, ours or a library's, would fail on them with "maximum recursion depth exceeded").

    >>> check_nesting("x", [[1]], 2)
    """
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth >= limit:
                raise LimitExceededError(f"{name} is nested more than {limit} levels deep; this server accepts at "
                                         f"most {limit}.")
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))


def check_text_length(name: str, text: str, limit: int = LIMITS.text_chars) -> None:
    if len(text) > limit:
        raise LimitExceededError(f"{name} has {len(text):,} characters; this server accepts at most {limit:,}.")

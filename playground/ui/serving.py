"""How the app serves a room: the queue, per-event concurrency and upload caps (one place for all three).

One model serves every visitor and its forwards are serialized by `LoadedModel.lock` (per forward, so
short requests interleave with long ones). The queue adds:
- cheap events (tokenize, figure re-renders, calibration on an uploaded CSV...) run up to
  `CHEAP_CONCURRENCY` at once: they are pure CPU work on small data;
- long model jobs (many forwards each) share one queue, `LONG_JOB_CONCURRENCY` at a time, so fifty
  visitors pressing "run" get served first come, first served instead of all crawling together;
- cheap events with a large answer (tokenize_full) run one at a time;
- events that change what the whole app uses (loading a model, merging an adapter) run one at a time;
- at most `Limits.queue_size` requests wait; one more is told the queue is full.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from playground.config import Settings

CHEAP_CONCURRENCY = 4
LONG_JOB_CONCURRENCY = 2
LONG_JOB_GROUP = "long-model-jobs"
# api_name -> why it is a long job (seconds to minutes of forwards on a CPU)
LONG_MODEL_JOBS = {
    "generate_trace": "up to 128 traced tokens",
    "speculate": "a target + draft race of up to 512 tokens",
    "quantization_report": "loads and decodes in several precisions",
    "rag_index": "embeds up to 10,000 chunks",
    "rag_answer": "a grounded answer of up to 256 tokens",
    "rag_positions": "three grounded answers",
    "rag_evaluate": "retrieval over a question set (and a judge)",
    "calibrate": "scores every multiple-choice question",
    "self_consistency": "samples each question several times",
    "compare_lora": "answers each prompt with and without the adapter",
    "use_lora": "merges the visitor's adapter into a private copy of the model",
}
# api_name -> why a cheap event (no model forward) still runs one at a time: its answer is large, so a few at
# once stall every other request and hold their JSON in memory together
LARGE_ANSWER_EVENTS = {
    "tokenize_full": "every token of every tokenizer: megabytes of JSON for the longest allowed text",
}
# api_name -> why only one may run at a time (it changes the model every visitor uses)
APP_WIDE_EVENTS = {
    "load_model": "switches the active model",
    "merge_lora": "makes the adapted model the active one",
    "unload_lora": "switches back to the base model",
}


def set_event_concurrency(demo: gr.Blocks) -> None:
    """Apply the two tables above to the app's events (by api_name). Call before `queue()`/`launch()`."""
    for fn in demo.fns.values():
        name = fn.api_name
        if name in LONG_MODEL_JOBS:
            fn.concurrency_id, fn.concurrency_limit = LONG_JOB_GROUP, LONG_JOB_CONCURRENCY
        elif name in APP_WIDE_EVENTS or name in LARGE_ANSWER_EVENTS:
            fn.concurrency_limit = 1


def configure_queue(demo: gr.Blocks, settings: Settings) -> gr.Blocks:
    """The queue a room of 30-50 visitors needs (see the module docstring); returns `demo`."""
    set_event_concurrency(demo)
    return demo.queue(default_concurrency_limit=CHEAP_CONCURRENCY, max_size=settings.limits.queue_size)


def upload_options(settings: Settings) -> dict[str, Any]:
    """launch() keywords: gradio refuses a bigger upload before any handler sees it, and an input that
    fails gradio's own checks (a NaN for a slider, a string for a table) gets its message instead of a
    bare "Error" (the message, never the stack trace)."""
    return {"max_file_size": settings.limits.upload_bytes, "show_error": True}

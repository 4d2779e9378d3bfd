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

And how events are wired so a view control answers in the page within 250 ms: the first view of a move skips the
queue (`skip_the_queue`), its follow-ups wait for its paint (`after_first_paint`), and an event with a hidden
progress reports its loading status on one hidden component (`quiet_progress_on`).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from playground.classroom import MAX_WAITING_FOLLOWERS
from playground.config import Settings
from playground.runtime.gpu import gpu, on_zerogpu

CHEAP_CONCURRENCY = 4
# Every queued event holds one of gradio's job slots while it runs (launch's `max_threads`, 40 by default), and
# an API client's /class_view long poll runs through the queue: fifty followers waiting took all 40, so every
# other request (an answer, the presenter's next view) waited for a poll to end. Slots for work, plus one per
# long poll the class lets wait at once.
WORK_SLOTS = 40
JOB_SLOTS = WORK_SLOTS + MAX_WAITING_FOLLOWERS
LONG_JOB_CONCURRENCY = 2
LONG_JOB_GROUP = "long-model-jobs"
# api_name -> why it is a long job (seconds to minutes of forwards on a CPU)
LONG_MODEL_JOBS = {
    "generate_trace": "up to 128 traced tokens",
    "speculate": "a target + draft race of up to 512 tokens",
    "quantization_report": "loads and decodes in several precisions",
    "rag_index": "embeds up to 10,000 chunks",
    "retrieve": "builds the index when it is not built yet (and may rerank with the LLM)",
    "rag_check_uploads": "reads uploaded PDFs (up to rag_pdf_seconds of CPU)",
    "rag_answer": "a grounded answer of up to 256 tokens",
    "rag_positions": "three grounded answers",
    "rag_evaluate": "retrieval over a question set (and a judge)",
    "calibrate": "scores every multiple-choice question",
    "self_consistency": "samples each question several times",
    "compare_lora": "answers each prompt with and without the adapter",
    "use_lora": "merges the visitor's adapter into a private copy of the model",
    "serving_batching": "batched decode steps at batch sizes up to 64, timed",
    "serving_kv_cache": "one prefill of up to serving_kv_tokens (batch x context) tokens",
    "ablate": "two greedy continuations of up to inside_new_tokens tokens",
    "head_importance": "one batched forward per layer, a copy of the prompt per head",
    "attribute": "integrated gradients: forwards and backwards over up to inside_ig_steps points",
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


def _plain(handler: Any) -> Any:
    """The function under bound methods and decorators (`@user_errors`, the prepared-examples wrapper)."""
    for _ in range(10):
        inner = getattr(handler, "__func__", None) or getattr(handler, "__wrapped__", None)
        if inner is None:
            break
        handler = inner
    return handler


# api_name -> the ZeroGPU slot (seconds) of every event that runs the model or the embedder: on a ZeroGPU
# Space each borrows a GPU for the call (runtime.gpu.gpu, a no-op elsewhere). tests/unit/test_zerogpu.py calls
# every endpoint on a model whose forward is trapped and fails when one that reaches it is missing here.
GPU_EVENTS = {
    **{name: 120 for name in LONG_MODEL_JOBS},
    "next_token": 30, "draw_samples": 30, "force_token": 60, "attention": 60, "retrieve": 60,
    "lora_budget": 30, "lora_dataset": 30, "train_lora": 300, "use_lora": 60, "merge_lora": 60,
    "model_card": 30, "weight_quantization": 30, "open_poll": 30,
    "logit_lens": 60, "show_position": 60,  # show_position: the lens curves (a cache miss runs the lens)
    "search": 60, "show_row": 60,  # private events: the RAG search behind retrieve, attention's row view
    # private events of a slider move (the stage chart first, then the rest) and RAG's index stats
    "stage_view": 30, "sweep_view": 30, "raw_numbers": 30,
    "move_layer_or_head": 60, "after_layer_move": 60, "after_head_move": 60, "change_grid_mode": 60,
    "index_stats": 60,
}


def skip_the_queue() -> dict[str, Any]:
    """Event options for the first view of a slider move (sampling's stage chart, attention's heatmap and query
    row, the speculative step). It re-reads a cached result in milliseconds: queued, the page's join and event
    stream around it cost more than the work (a temperature move painted in ~910 ms queued, ~690 ms not,
    benchmarks.slider_latency on 2026-12-03). A cache miss (settings moved on a prompt never run) does one forward
    outside the queue, still serialized by the model's lock. Under ZeroGPU every GPU handler stays queued: its
    GPU is borrowed for a queued event."""
    return {} if on_zerogpu() else {"queue": False}


# Resolves once the page has painted what the previous event's answer drew: one animation frame, then a macrotask.
AFTER_PAINT_JS = "() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)))"


def after_first_paint(dependency: Any) -> Any:
    """Chain a slider move's follow-up events (`.then` on the result) only after its first view is painted. gradio
    starts a `.then` in the same task that applied the answer, and a starting event refreshes the loading status of
    every component the page has written to, twice, before the browser may paint: ~40 ms of a temperature move's
    ~230 (benchmarks.slider_latency, 2026-12-03). A step in the page alone (no Python) costs no such refresh."""
    return dependency.then(None, None, None, js=AFTER_PAINT_JS, queue=False, api_visibility="private")


# Outputs a drawn progress covers (see quiet_progress_on): what a visitor watches while a job runs.
PROGRESS_VIEWS = (gr.Plot, gr.HTML, gr.Markdown, gr.HighlightedText, gr.Dataframe, gr.Image, gr.Chatbot, gr.Textbox)


def quiet_progress_on(demo: gr.Blocks, sink: gr.components.Component) -> None:
    """Events whose progress is hidden report their loading status on `sink` (one hidden component, first in the
    layout) instead of on each of their outputs. The page keeps a loading status for every component any of its
    events has reported on, and at every status message of every event refreshes each of them with a search of the
    whole layout: with a status per output, a visitor's own slider moves and page-load events kept ~80 components
    there after opening one tab. A hidden progress draws nothing, so no view changes.

    A drawn progress (a tab's main button) goes on the event's views only, not on the controls its answer re-ranges
    (a slider's maximum, a dropdown's choices, whose overlay only blocked them) or on the raw JSON in a closed
    accordion: each output it skips is one component fewer that every later move refreshes."""
    for fn in demo.fns.values():
        if fn.show_progress_on is not None or not fn.outputs:
            continue
        if fn.show_progress == "hidden":
            fn.show_progress_on = [sink]
        elif views := [output for output in fn.outputs if isinstance(output, PROGRESS_VIEWS)]:
            fn.show_progress_on = views


def wrap_gpu_events(demo: gr.Blocks) -> list[str]:
    """Wrap the handlers of GPU_EVENTS with `runtime.gpu.gpu` (ZeroGPU's `spaces.GPU` on a Space, else
    unchanged), and every other event that calls the same handler (a slider's private re-run of
    next_token). Returns the api names wrapped."""
    seconds = {_plain(fn.fn): GPU_EVENTS[fn.api_name] for fn in demo.fns.values()
               if fn.api_name in GPU_EVENTS and fn.fn is not None}
    wrapped = []
    for fn in demo.fns.values():
        slot = seconds.get(_plain(fn.fn)) if fn.fn is not None else None
        if slot is not None:
            fn.fn = gpu(slot)(fn.fn)
            wrapped.append(fn.api_name)
    return wrapped


def set_event_concurrency(demo: gr.Blocks) -> None:
    """Apply the two tables above to the app's events (by api_name). Call before `queue()`/`launch()`."""
    # A private twin of a long job (the question box's Enter runs the same handler as "Retrieve") joins it.
    # (compared as plain functions: an event may hold the bound method or the function it wraps)
    long_handlers = {_plain(fn.fn) for fn in demo.fns.values() if fn.api_name in LONG_MODEL_JOBS} - {None}
    for fn in demo.fns.values():
        name = fn.api_name
        if name in LONG_MODEL_JOBS or _plain(fn.fn) in long_handlers:
            fn.concurrency_id, fn.concurrency_limit = LONG_JOB_GROUP, LONG_JOB_CONCURRENCY
        elif name in APP_WIDE_EVENTS or name in LARGE_ANSWER_EVENTS:
            fn.concurrency_limit = 1


def configure_queue(demo: gr.Blocks, settings: Settings) -> gr.Blocks:
    """The queue a room of 30-50 visitors needs (see the module docstring); returns `demo`."""
    set_event_concurrency(demo)
    wrap_gpu_events(demo)
    return demo.queue(default_concurrency_limit=CHEAP_CONCURRENCY, max_size=settings.limits.queue_size)


def queue_launch_options() -> dict[str, Any]:
    """launch() keywords of the queue: its job slots (JOB_SLOTS; gradio also lets sync handlers use as many
    threads, each still bounded by its event's concurrency limit)."""
    return {"max_threads": JOB_SLOTS}


def upload_options(settings: Settings) -> dict[str, Any]:
    """launch() keywords: gradio refuses a bigger upload before any handler sees it, and an input that
    fails gradio's own checks (a NaN for a slider, a string for a table) gets its message instead of a
    bare "Error" (the message, never the stack trace)."""
    return {"max_file_size": settings.limits.upload_bytes, "show_error": True}

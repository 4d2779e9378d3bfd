"""How the tabs use the --engine: the token-level tabs ask it first and fall back to the local model (when
one is loaded) if it fails, with a warning that names the failure; the weights tabs say they stay local.
The header's engine line lives here too, so header.py only calls it."""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any, Callable, TypeVar

import gradio as gr

from playground.engine import EngineError, EngineStatus, EngineTokenSource
from playground.engine.speculative import engine_spec_decode
from playground.ui.context import AppContext
from playground.ui.errors import user_errors

T = TypeVar("T")


def engine_or_local(ctx: AppContext, engine_call: Callable[[EngineTokenSource], T], local_call: Callable[[], T]) -> T:
    """engine_call(engine) when an engine is configured; on an engine failure, local_call() if a local model is
    loaded (a gr.Warning says why), else the engine's specific error."""
    if ctx.engine is None:
        return local_call()
    if ctx.models.active() is not None:
        status = ctx.engine.client.status()  # one quick probe at most every few seconds
        if not status.reachable:  # known down: answer locally now, not after the request's retries and timeouts
            gr.Warning(f"{status.message} The local model answers instead.")
            return local_call()
    try:
        return engine_call(ctx.engine)
    except EngineError as error:
        if ctx.models.active() is None:
            raise
        gr.Warning(f"{error} The local model answers instead.")
        return local_call()


def weights_note(ctx: AppContext) -> str:
    """Markdown for a tab that needs the model's weights (attention, LoRA, quantization): empty without an engine."""
    if ctx.engine is None:
        return ""
    return (f"ℹ️ An engine ({html.escape(ctx.engine.client.url)}) serves the token-level tabs. This tab needs the "
            "model's **weights**, which an engine does not share: it uses the local model loaded here.")


def format_engine_line(status: EngineStatus) -> str:
    """One header line: which engine, which model it serves, whether it answers."""
    if status.reachable:
        return (f'<div class="pg-status-engine">Engine <b>{html.escape(status.url)}</b> serves '
                f'<b>{html.escape(status.model or "?")}</b> · {html.escape(status.message)} · the token-level tabs '
                "use it</div>")
    return (f'<div class="pg-status-error pg-status-engine">Engine <b>{html.escape(status.url)}</b> is not answering: '
            f"{html.escape(status.message)} The token-level tabs fall back to the local model when one is "
            "loaded.</div>")


def engine_line(ctx: AppContext, status: dict[str, Any]) -> str:
    """The header's engine line; also puts the engine's status in the header's model_status JSON (None: no engine)."""
    if ctx.engine is None:
        status["engine"] = None
        return ""
    engine = ctx.engine.client.status()
    status["engine"] = asdict(engine)
    return format_engine_line(engine)


@user_errors
def read_spec_decode(ctx: AppContext) -> tuple[str, dict[str, Any]]:
    """The engine's own speculative-decoding counters (its /metrics), as a sentence and JSON."""
    if ctx.engine is None:
        raise ValueError("No engine is configured (--engine URL).")
    counters = engine_spec_decode(ctx.engine.client)
    if counters is None:
        return (f"The engine at {html.escape(ctx.engine.client.url)} does not run speculative decoding (no "
                "`vllm:spec_decode_*` counters in its /metrics; vLLM: `--speculative-config`).", {"running": False})
    per_position = ", ".join(f"{value:.0f}" for value in counters.accepted_per_position) or "not reported"
    return (f"Since it started, the engine made **{counters.drafts:.0f}** drafts of **{counters.draft_tokens:.0f}** "
            f"tokens; the target accepted **{counters.accepted_tokens:.0f}** (**{counters.acceptance_rate:.1%}**, "
            f"{counters.mean_accepted_per_draft:.2f} per draft). Accepted per draft position: {per_position}.",
            {"running": True, **counters.to_dict()})


def spec_decode_panel(ctx: AppContext) -> None:
    """The Speculative tab's line about the engine's own speculative decoding (only with an engine)."""
    if ctx.engine is None:
        return
    with gr.Accordion("The engine's own speculative decoding", open=False):
        button = gr.Button("Read the engine's counters", size="sm")
        summary = gr.Markdown()
        data = gr.JSON(label="engine_spec_decode")
    button.click(lambda: read_spec_decode(ctx), None, [summary, data], api_name="engine_spec_decode", queue=False)

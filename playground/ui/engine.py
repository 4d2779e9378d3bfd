"""How the tabs use the --engine: the token-level tabs ask it first and fall back to the local model (when
one is loaded) if it fails, with a warning that names the failure; the weights tabs say they stay local.
The header's engine line lives here too, so header.py only calls it."""

from __future__ import annotations

import html
from typing import Callable, TypeVar

import gradio as gr

from playground.engine import EngineError, EngineStatus, EngineTokenSource
from playground.ui.context import AppContext

T = TypeVar("T")


def engine_or_local(ctx: AppContext, engine_call: Callable[[EngineTokenSource], T], local_call: Callable[[], T]) -> T:
    """engine_call(engine) when an engine is configured; on an engine failure, local_call() if a local model is
    loaded (a gr.Warning says why), else the engine's specific error."""
    if ctx.engine is None:
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


def engine_line(ctx: AppContext) -> str:
    return "" if ctx.engine is None else format_engine_line(ctx.engine.client.status())

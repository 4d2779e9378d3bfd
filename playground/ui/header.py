"""The header: what is loaded (name, parameters, device, precision, memory, load time) and a picker."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from playground.config import DEVICE_CHOICES, PRECISION_CHOICES
from playground.network import offline_note
from playground.runtime import ModelLoadError, causal_lm_presets
from playground.sessions import AccessDenied, presenter_message
from playground.ui import common
from playground.ui.access import current_session, current_session_id
from playground.ui.context import AppContext
from playground.ui.engine import engine_line
from playground.ui.errors import user_errors


def _format_parameters(count: int) -> str:
    return f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.1f} M"


def format_status(status: dict[str, Any]) -> str:
    """Header HTML from ModelManager.status(): the model card line, then the loading line."""
    loading = status["loading"]
    model = status["model"]
    parts = []
    if model:
        parts.append(
            '<div class="pg-status-model">'
            f"<b>{html.escape(model['label'])}</b>"
            f" · {_format_parameters(model['parameters'])} parameters"
            f" · device <b>{html.escape(model['device'])}</b>"
            f" · {html.escape(model['precision'])}"
            f" · {model['memory_mb']:.0f} MB in memory"
            f" · loaded in {model['load_seconds']:.1f} s"
            "</div>"
            f'<div class="pg-status-reason">{html.escape(model["precision_reason"])}</div>'
        )
        if model.get("warning"):
            parts.append(f'<div class="pg-status-warning">⚠ {html.escape(model["warning"])}</div>')
    if loading["phase"] == "loading":
        percent = int(round(100 * loading["fraction"]))
        parts.append(
            f'<div class="pg-status-loading">Loading <b>{html.escape(loading["target"])}</b>: '
            f'{html.escape(loading["message"])} ({loading["elapsed_seconds"]:.0f} s) '
            f'<progress max="100" value="{percent}"></progress> {percent}%</div>'
        )
    elif loading["phase"] == "failed":
        parts.append(f'<div class="pg-status-error">Loading <b>{html.escape(loading["target"])}</b> failed: '
                     f'{html.escape(loading["message"])}</div>')
    elif not model:
        parts.append('<div class="pg-status-loading">No model loaded yet: pick one and press Load.</div>')
    return '<div class="pg-status">' + "".join(parts) + "</div>"


def session_status(ctx: AppContext) -> dict[str, Any]:
    """The server's status plus what this session's tabs use and which models are resident."""
    status = ctx.models.status()
    session = ctx.sessions.find(current_session_id())
    yours = None
    if session is not None and session.private_model is not None:
        yours = {**session.private_model.status(), "private": True}
    elif session is not None and session.model_key is not None:
        chosen = ctx.models.resident(session.model_key)
        yours = chosen.status() if chosen is not None else None
    status["yours"] = yours  # None: the server's model above
    status["resident"] = [loaded.spec.label + f" · {loaded.status()['precision']}" for _, loaded in
                          ctx.models.residents()]
    status["presenter"] = ctx.sessions.is_presenter(current_session_id())
    return status


def format_session_line(status: dict[str, Any]) -> str:
    """One line under the model card: what *your* tabs use, when it is not the server's model."""
    yours = status.get("yours")
    parts = []
    if yours:
        whose = "your private copy with your adapter" if yours.get("private") else "your choice"
        parts.append(f"Your tabs use <b>{html.escape(yours['label'])}</b> · {html.escape(yours['precision'])} "
                     f"({whose}; other visitors are not affected).")
    if len(status.get("resident", ())) > 1:
        parts.append("Resident: " + "; ".join(html.escape(name) for name in status["resident"]) + ".")
    return f'<div class="pg-status-session">{" ".join(parts)}</div>' if parts else ""


def load_for_session(ctx: AppContext, name: str, precision: str, where: str, progress: Any) -> None:
    """The presenter loads for everyone; a visitor may switch *their* tabs to a model already in memory."""
    if ctx.sessions.is_presenter(current_session_id()):
        ctx.models.load(name, precision, where, progress=progress)
        current_session(ctx.sessions).model_key = None
        return
    key = ctx.models.resolve_key(name, precision, where)
    if ctx.models.resident(key) is None:
        resident = "; ".join(f"{k.model} ({k.precision}, {k.device})" for k, _ in ctx.models.residents())
        raise AccessDenied(presenter_message("load a new model") +
                           (f" Models in memory you can switch to: {resident}." if resident else ""))
    current_session(ctx.sessions).model_key = key


def picker_in_use(ctx: AppContext) -> tuple[Any, Any, Any]:
    """The picker set to the model the calling session's tabs actually use (after a failed load it kept showing
    the model that failed); left alone while there is no model yet."""
    try:
        loaded = ctx.model()
    except ModelLoadError:
        return gr.skip(), gr.skip(), gr.skip()
    precision, device = loaded.precision.quantization, loaded.device.split(":")[0]  # "cuda:0" -> "cuda"
    return (gr.update(value=loaded.spec.key),
            gr.update(value=precision) if precision in PRECISION_CHOICES else gr.skip(),
            gr.update(value=device) if device in DEVICE_CHOICES else gr.skip())


def create_header(ctx: AppContext) -> dict[str, Any]:
    settings = ctx.settings
    presets = [(spec.label, spec.key) for spec in causal_lm_presets()]
    gr.Markdown("# Visual LLM Playground\nSee how a real language model works — every number is computed "
                "live on the model loaded here.", elem_id="pg-title")
    if settings.offline:
        gr.Markdown(offline_note(), elem_id="pg-offline", elem_classes=["pg-offline"])
    with gr.Row(elem_id="pg-header", equal_height=True):
        model = gr.Dropdown(presets, value=settings.model, label="Model (a preset, a hub id owner/name, or a local folder)",
                            allow_custom_value=True, scale=4, min_width=300)
        precision = gr.Dropdown(list(PRECISION_CHOICES), value=settings.precision, label="Precision",
                                scale=1, min_width=110)
        device = gr.Dropdown(list(DEVICE_CHOICES), value=settings.device, label="Device", scale=1, min_width=110)
        load = gr.Button("Load", variant="primary", scale=1, min_width=90)
    with gr.Row(equal_height=True, elem_id="pg-status-row"):
        status_html = gr.HTML(format_status(ctx.models.status()), elem_id="pg-status", scale=20)
        status_button = gr.Button("↻", size="sm", scale=0, min_width=44, elem_id="pg-refresh")
    with gr.Accordion("Model status as JSON", open=False, elem_id="pg-status-json"):
        status_json = gr.JSON(label="model_status")
    timer = gr.Timer(1.0, active=False)

    def refresh() -> tuple[str, dict[str, Any], gr.Timer]:
        status = session_status(ctx)
        return (format_status(status) + format_session_line(status) + engine_line(ctx, status), status,
                gr.Timer(active=status["loading"]["phase"] == "loading"))

    @user_errors
    def load_model(name: str, precision: str, where: str, progress: gr.Progress = gr.Progress()) -> tuple[str, dict[str, Any], gr.Timer]:
        load_for_session(ctx, name, precision, where,
                         lambda fraction, message: progress(fraction, desc=message))
        return refresh()

    def on_page_load(visitor: str | None = None) -> tuple[str, dict[str, Any], gr.Timer]:
        ctx.claim_page(visitor)  # the status line shows the visitor's model and role
        # The model loads lazily: the first visitor's page starts the configured load if nothing did.
        if settings.preload and ctx.models.active() is None and ctx.models.state.phase == "idle":
            ctx.models.start_background_load()
        return refresh()

    outputs = [status_html, status_json, timer]
    load.click(load_model, [model, precision, device], outputs, api_name="load_model", concurrency_limit=1).failure(
        lambda: picker_in_use(ctx), None, [model, precision, device], api_visibility="private", queue=False,
        show_progress="hidden")
    timer.tick(refresh, None, outputs, show_progress="hidden", queue=False, api_visibility="private")
    status_button.click(refresh, None, outputs, api_name="model_status", queue=False)
    common.on_page_load(on_page_load, ctx.visitor, outputs, queue=False, api_visibility="private")
    return {"model": model, "precision": precision, "device": device, "load": load,
            "status_html": status_html, "status_json": status_json, "timer": timer}

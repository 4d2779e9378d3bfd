"""build_app(settings) -> gr.Blocks: the header (model picker and status) above one tab per area."""

from __future__ import annotations

from typing import Any

import gradio as gr

from playground.config import ASSETS, Settings
from playground.runtime import ModelManager
from playground.ui.context import AppContext
from playground.ui.header import create_header
from playground.ui.tabs import all_tabs, pending_tab


def build_app(settings: Settings, manager: ModelManager | None = None) -> gr.Blocks:
    """Build the whole UI. Loads no model: the header starts the load when the first page opens."""
    ctx = AppContext(settings, manager or ModelManager(settings))
    with gr.Blocks(title="Visual LLM Playground") as demo:
        create_header(ctx)
        with gr.Tabs(elem_id="pg-tabs"):
            for info in all_tabs():
                with gr.Tab(info.label, id=info.key, elem_id=f"tab-{info.key}"):
                    if info.build is not None:
                        info.build(ctx)
                    else:
                        pending_tab(info)
    demo.playground_context = ctx  # type: ignore[attr-defined]  # for tests and app.py
    return demo


def launch_options() -> dict[str, Any]:
    """Theme and CSS (gradio 6 takes them in launch())."""
    return {"theme": gr.themes.Soft(), "css_paths": [ASSETS / "style.css"]}

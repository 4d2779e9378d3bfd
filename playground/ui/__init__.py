"""build_app(settings, manager) -> gr.Blocks: the header (model picker and status) above one tab per area."""

from __future__ import annotations

from typing import Any

import gradio as gr

from playground.config import ASSETS, Settings
from playground.runtime import ModelManager
from playground.ui.access import current_session_id
from playground.ui.classroom_panel import create_classroom_panel, wire_classroom
from playground.ui.context import AppContext
from playground.ui.header import create_header
from playground.ui.queueing import quiet_progress_on
from playground.ui.tabs import TabInfo, all_tabs, pending_tab
from playground.ui.viewtools import (TabLinks, create_example_row, create_export_panel, create_link_row,
                                     create_page_controls, mark_advanced, tab_links, wire_deep_links,
                                     wire_example_row, wire_link_row)


def build_app(settings: Settings, manager: ModelManager) -> gr.Blocks:
    """Build the whole UI around `manager` (the caller owns it: app.py starts its background load). Loads no
    model: the header starts the load when the first page opens."""
    links: list[TabLinks] = []
    with gr.Blocks(title="Visual LLM Playground") as demo:
        # first in the layout, where the page's search for it ends at once (queueing.quiet_progress_on)
        progress_sink = gr.HTML(visible=False, elem_id="pg-quiet-progress")
        # the browser keeps a random visitor token, so a reload finds the visitor's session again
        visitor = gr.BrowserState("", storage_key="playground-visitor")
        ctx = AppContext(settings, manager, visitor=visitor)
        # during a class the presenter's forwards go before the room's (a poll opens at once)
        manager.urgent = lambda: ctx.classroom.current is not None and ctx.sessions.is_presenter(current_session_id())
        demo.load(ctx.claim_page, visitor, visitor, api_visibility="private", queue=False, show_progress="hidden")
        create_header(ctx)
        page = create_page_controls()
        classroom = create_classroom_panel(ctx)
        # wrap: every tab stays in sight (presenter mode's larger text would push the last ones into a "…" menu)
        with gr.Tabs(elem_id="pg-tabs", overflow_behavior="wrap") as tabs:
            for info in all_tabs():
                with gr.Tab(info.label, id=info.key, elem_id=f"tab-{info.key}") as tab:
                    if info.build is not None:
                        links.append(build_tab(demo, ctx, info))
                    else:
                        pending_tab(info)
                # the presenter's page reports which tab is open (followers mirror it)
                tab.select(lambda key=info.key: key, None, classroom.current_tab, api_visibility="private",
                           queue=False, show_progress="hidden")
        wire_deep_links(demo, tabs, links, page)
        wire_classroom(demo, classroom, ctx, tabs, links)
        quiet_progress_on(demo, progress_sink)
    demo.playground_links = links  # type: ignore[attr-defined]  # deep-link fields per tab, for tests
    return demo


def build_tab(demo: gr.Blocks, ctx: AppContext, info: TabInfo) -> TabLinks:
    """A tab's own components between the shared rows (link, prepared examples) and the export panel."""
    assert info.build is not None
    row = create_link_row(info.key)
    examples = create_example_row(info.key)
    components = info.build(ctx)
    create_export_panel(info.key, components)
    mark_advanced(components, info.advanced)
    links = tab_links(info.key, components, info.link_inputs, info.run)
    wire_link_row(row, links)
    if examples is not None:
        wire_example_row(demo, examples, links, open_with_example=not info.opens_live)
    return links


def close_app(demo: gr.Blocks) -> None:
    """demo.close(), past a gradio race: close() sets the server loop's asyncio.Event from the calling thread, and
    when the loop adds a waiter meanwhile (a heartbeat), set() raises "deque mutated during iteration" before
    the server is closed (seen in a test's teardown, 2026-12-03). Then the server is closed here."""
    try:
        demo.close()
    except RuntimeError:
        if demo.server:
            demo.server.close()


def launch_options(settings: Settings | None = None) -> dict[str, Any]:
    """Theme, CSS and the presenter-mode script (gradio 6 takes them in launch()), the queue's job slots, and
    with `settings` the upload cap."""
    from playground.ui.queueing import queue_launch_options, upload_options

    return {"theme": gr.themes.Soft(), "css_paths": [ASSETS / "style.css"],
            "js": (ASSETS / "presenter.js").read_text(encoding="utf-8"), **queue_launch_options(),
            **(upload_options(settings) if settings is not None else {})}

"""Small UI pieces every tab uses the same way."""

from __future__ import annotations

from typing import Any

import gradio as gr

# Inline $...$ and display $$...$$ LaTeX (gradio's default only renders $$...$$).
LATEX_DELIMITERS = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def explanation(text: str) -> gr.Markdown:
    """A tab's "what you are seeing" block: a few lines in our words, the formula, a takeaway."""
    return gr.Markdown(text, latex_delimiters=LATEX_DELIMITERS, elem_classes=["pg-explanation"])


def on_page_load(fn: Any, inputs: Any, outputs: Any, **options: Any) -> Any:
    """Run `fn` when a page opens, reading `inputs` then: the page's own load event (`gr.on(None, ...)` with
    inputs would also fire on every change of those inputs)."""
    from gradio.context import Context

    if Context.root_block is None:
        raise RuntimeError("on_page_load is called while the app's Blocks are being built")
    return Context.root_block.load(fn, inputs, outputs, **options)

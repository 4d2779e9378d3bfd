"""Small UI pieces every tab uses the same way."""

from __future__ import annotations

import gradio as gr

# Inline $...$ and display $$...$$ LaTeX (gradio's default only renders $$...$$).
LATEX_DELIMITERS = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def explanation(text: str) -> gr.Markdown:
    """A tab's "what you are seeing" block: a few lines in our words, the formula, a takeaway."""
    return gr.Markdown(text, latex_delimiters=LATEX_DELIMITERS, elem_classes=["pg-explanation"])

"""Small UI pieces every tab uses the same way."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Any, Iterator

import gradio as gr

# Inline $...$ and display $$...$$ LaTeX (gradio's default only renders $$...$$).
LATEX_DELIMITERS = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def page_key(request: gr.Request | None) -> str:
    """The calling page's key for per-page state (its gradio session hash; "api" for a script without one)."""
    return getattr(request, "session_hash", None) or "api"


class StopSwitches:
    """One long job's Stop button: a fresh cancel event per run, kept per browser session ("api" for scripts), so
    Stop reaches the caller's running job and never another visitor's. Bounded: the oldest sessions' events go.

    >>> switches = StopSwitches()
    >>> with switches.running(None) as cancel:
    ...     switches.stop(None), cancel.is_set()
    (True, True)
    >>> switches.stop(None)  # nothing running any more
    False
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._events: OrderedDict[str, threading.Event] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def fresh(self, request: gr.Request | None) -> threading.Event:
        """A new run of the caller's: its own cancel event (an earlier Stop does not stop it)."""
        event = threading.Event()
        with self._lock:
            self._events[page_key(request)] = event
            self._events.move_to_end(page_key(request))
            while len(self._events) > self._capacity:
                self._events.popitem(last=False)
        return event

    @contextlib.contextmanager
    def running(self, request: gr.Request | None) -> Iterator[threading.Event]:
        """`fresh` for the length of a run: afterwards Stop says nothing is running."""
        event = self.fresh(request)
        try:
            yield event
        finally:
            with self._lock:
                if self._events.get(page_key(request)) is event:
                    del self._events[page_key(request)]

    def stop(self, request: gr.Request | None) -> bool:
        """Ask the caller's job to stop; False when none of theirs has started (or it has ended)."""
        with self._lock:
            event = self._events.get(page_key(request))
        if event is None or event.is_set():
            return False
        event.set()
        return True


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

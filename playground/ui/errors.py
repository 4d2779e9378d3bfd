"""Turning exceptions into messages a user can act on (gr.Error), never a stack trace."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, TypeVar

import gradio as gr
import torch

from playground.limits import LIMITS, check_text_length
from playground.runtime import ModelLoadError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("playground")


def to_user_error(error: BaseException) -> gr.Error:
    """Map an exception to a gr.Error with a specific message.

    Our compute modules raise ValueError subclasses whose message already names the problem and
    the allowed range; model problems raise ModelLoadError with the fix in the message.
    """
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, (ModelLoadError, ValueError)):
        return gr.Error(str(error))
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return gr.Error("Out of memory. Try a shorter input, fewer tokens, or a smaller model / lower precision.")
    log.exception("unexpected error in a handler")
    return gr.Error(f"Something went wrong ({type(error).__name__}: {error}). The app is still running; "
                    "try again, and report it if it repeats.")


def check_text_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse any text argument over `LIMITS.text_chars` before a handler spends time on it."""
    for position, value in enumerate((*args, *kwargs.values())):
        if isinstance(value, str):
            check_text_length(f"Text input {position + 1}", value, LIMITS.text_chars)


def user_errors(function: F) -> F:
    """Decorate a gradio handler (plain or generator) so every failure reaches the UI as gr.Error, and
    no text argument is longer than the server accepts."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                check_text_arguments(args, kwargs)
                yield from function(*args, **kwargs)
            except Exception as error:
                raise to_user_error(error) from error

        return generator_wrapper  # type: ignore[return-value]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_text_arguments(args, kwargs)
            return function(*args, **kwargs)
        except Exception as error:
            raise to_user_error(error) from error

    return wrapper  # type: ignore[return-value]

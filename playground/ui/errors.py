"""Turning exceptions into messages a user can act on (gr.Error), never a stack trace; refusing arguments
of the wrong type (checked against the handler's own type hints) before a handler runs."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import types
import typing
from typing import Any, Callable, Literal, TypeVar, Union

import gradio as gr
import torch

from playground.limits import LIMITS, LimitExceededError, check_text_length, lone_surrogate_at
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


class InputTypeError(ValueError):
    """An argument of the wrong type (a number where a list of names belongs); the message names the input."""


@functools.cache
def parameter_hints(function: Callable[..., Any]) -> dict[str, Any]:
    """The handler's parameter annotations, resolved; one that cannot be resolved (a name only the
    enclosing function knows) is left out, so it is simply not checked."""
    hints: dict[str, Any] = {}
    annotations = getattr(inspect.unwrap(function), "__annotations__", {})
    for name, annotation in annotations.items():
        if name == "return":
            continue
        holder = types.SimpleNamespace(__annotations__={name: annotation},
                                       __globals__=getattr(inspect.unwrap(function), "__globals__", {}))
        try:
            hints[name] = typing.get_type_hints(holder)[name]
        except Exception:  # noqa: BLE001 - an unresolvable hint is not checked, never a failure
            continue
    return hints


def value_fits(value: Any, hint: Any) -> bool:
    """Whether `value` has the shape `hint` asks for. Lenient where gradio is: None is always allowed (an
    empty component; handlers treat it as "not given"), whole-number hints accept floats (sliders send 24.0),
    tuples accept lists (JSON has no tuples); a hint this does not understand accepts anything."""
    if value is None or hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(value_fits(value, arg) for arg in args)
    if origin is Literal:
        return isinstance(value, tuple({type(arg) for arg in args}))
    if hint in (int, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, bool, dict) or origin is dict:
        return isinstance(value, origin or hint)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        # list[X] and tuple[X, ...] say what each item is; a fixed-shape tuple[X, Y] is not checked inside
        item_hint = args[0] if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else Any
        return all(value_fits(item, item_hint) for item in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


PLAIN_WORDS = {str: "text", int: "a number", float: "a number", bool: "true or false", dict: "a JSON object",
               list: "a list", tuple: "a list"}


def describe(hint: Any) -> str:
    """A type hint in words: list[str] -> "a list of text"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(arg) for arg in args if arg is not type(None)))
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in (list, tuple) and args and args[0] is not Any:
        item = describe(args[0])
        return f"a list of {item[2:] + 's' if item.startswith('a ') else item}"
    return PLAIN_WORDS.get(origin or hint, getattr(hint, "__name__", str(hint)))


def named_arguments(function: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    """The inputs as (parameter name, value), `self` left out; positional names ("input") when the arguments
    do not bind (check_argument_types then says what is wrong)."""
    try:
        bound = inspect.signature(function).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        skip = 1 if is_method(function) else 0
        return [("input", value) for value in (*args[skip:], *kwargs.values())]
    return [(name, value) for name, value in bound.arguments.items()
            if not (name == "self" and is_method(function))]


def accepts_numbers(hint: Any) -> bool:
    """Whether a hint asks for a number (int, float, or a union with one): NaN and infinities are refused there."""
    return hint is not Any and value_fits(0.5, hint) and not value_fits("x", hint)


def check_argument_types(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse an argument whose type does not fit the handler's type hint, naming the input: an API client
    can send any JSON, and gradio checks only some components' inputs (a `gr.api` endpoint: none). A NaN or
    an infinity where a number is hinted is refused too (JSON over HTTP can carry both)."""
    hints = parameter_hints(function)
    if not hints:
        return
    try:
        inspect.signature(function).bind_partial(*args, **kwargs)
    except TypeError as error:
        raise InputTypeError(f"Wrong arguments: {error}") from None
    for position, (name, value) in enumerate(named_arguments(function, args, kwargs), start=1):
        if name not in hints:
            continue
        if not value_fits(value, hints[name]):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise InputTypeError(f"Input {position} ({name}) must be {describe(hints[name])}; got "
                                 f"{type(value).__name__} {shown}.")
        if isinstance(value, float) and not math.isfinite(value) and accepts_numbers(hints[name]):
            raise InputTypeError(f"Input {position} ({name}) must be a finite number; got float {value!r}.")


MAX_NESTING = LIMITS.nesting_depth


def check_text_value(label: str, value: Any, limit: int) -> None:
    """Walk one argument (text, or text anywhere inside lists and dicts, keys included), without recursion:
    refuse a lone surrogate, nesting deeper than MAX_NESTING, and more than `limit` characters in all."""
    total = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            total += len(item)
            where = lone_surrogate_at(item)
            if where is not None:
                raise InputTypeError(f"{label} contains a lone surrogate (\\u{ord(item[where]):04x} at character "
                                     f"{where + 1:,}), which is not valid Unicode text; remove it.")
            continue
        if isinstance(item, (list, tuple, dict)):
            if depth >= MAX_NESTING:
                raise InputTypeError(f"{label} is nested more than {MAX_NESTING} levels deep; this server accepts "
                                     f"at most {MAX_NESTING}.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    if total > limit and not isinstance(value, str):
        raise LimitExceededError(f"{label} has {total:,} characters in all (text inside it counted together); "
                                 f"this server accepts at most {limit:,}.")


@functools.cache
def is_method(function: Callable[..., Any]) -> bool:
    """A handler defined in a class (a per-tab handlers object): its first parameter is `self`, which is not an
    input and is not counted when an error names "Input N"."""
    return next(iter(inspect.signature(function).parameters), None) == "self"


def check_text_arguments(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse any text argument over `LIMITS.text_chars` before a handler spends time on it, and the same for
    the text nested in a list or dict argument (chat messages, table rows: counted together); refuse lone
    surrogates and over-deep nesting anywhere in an argument. Each message names the input."""
    for position, (name, value) in enumerate(named_arguments(function, args, kwargs), start=1):
        named = f"{position}" if name == "input" else f"{position} ({name})"
        if isinstance(value, str):
            check_text_length(f"Text input {named}", value, LIMITS.text_chars)
        check_text_value(f"Input {named}", value, LIMITS.text_chars)


def user_errors(function: F) -> F:
    """Decorate a gradio handler (plain, async or generator; a function or a method of a per-tab handlers class) so
    every failure reaches the UI as gr.Error, no text argument is longer than the server accepts, and every
    argument fits the handler's type hints."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def coroutine_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                check_text_arguments(function, args, kwargs)
                check_argument_types(function, args, kwargs)
                return await function(*args, **kwargs)
            except Exception as error:
                raise to_user_error(error) from error

        return coroutine_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                check_text_arguments(function, args, kwargs)
                check_argument_types(function, args, kwargs)
                yield from function(*args, **kwargs)
            except Exception as error:
                raise to_user_error(error) from error

        return generator_wrapper  # type: ignore[return-value]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_text_arguments(function, args, kwargs)
            check_argument_types(function, args, kwargs)
            return function(*args, **kwargs)
        except Exception as error:
            raise to_user_error(error) from error

    return wrapper  # type: ignore[return-value]

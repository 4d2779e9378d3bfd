"""A `spaces.GPU` shim: on ZeroGPU Spaces the decorator borrows a GPU for the call; elsewhere
(the `spaces` package absent, or not on a Space) it is a no-op, so handlers are written once."""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _spaces_module() -> Any:
    # Only on a Space: the `spaces` package patches CUDA at import time, which we never want locally.
    if not os.environ.get("SPACE_ID"):
        return None
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def on_zerogpu() -> bool:
    """Whether handlers run under ZeroGPU (a Space with the `spaces` package)."""
    return _spaces_module() is not None


def gpu(duration: int = 60) -> Callable[[F], F]:
    """Decorate a GPU-bound handler; `duration` is the ZeroGPU time slot in seconds."""
    spaces = _spaces_module()
    if spaces is None:
        return lambda function: function
    return spaces.GPU(duration=duration)

"""The lock on a shared model: reentrant like threading.RLock, and fair to the person in charge.

Every visitor's forwards queue on one model. When the presenter asks for a forward (opening a poll in
front of the room), waiting behind thirty attendees' requests freezes the projector, so the lock serves
waiting *urgent* callers first. Who is urgent is asked of `urgent()`, a callable the app installs (the
runtime knows nothing of sessions); by default nobody is, and the lock is an ordinary reentrant lock.

    >>> lock = ModelLock()
    >>> with lock:
    ...     with lock:  # reentrant: a forward inside a view that holds the lock
    ...         pass
"""

from __future__ import annotations

import threading
from typing import Any, Callable


def nobody() -> bool:
    return False


class ModelLock:
    """A reentrant lock whose waiting urgent callers are served before the others (FIFO is not promised
    among either group, as with threading.RLock)."""

    def __init__(self, urgent: Callable[[], bool] = nobody) -> None:
        self.urgent = urgent
        self._condition = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._condition:
            if self._owner == me:
                self._depth += 1
                return True
            urgent = bool(self.urgent())

            def free() -> bool:
                return self._owner is None and (urgent or self._urgent_waiting == 0)

            if not blocking and not free():
                return False
            if urgent:
                self._urgent_waiting += 1
            try:
                if not self._condition.wait_for(free, None if timeout < 0 else timeout):
                    return False
            finally:
                if urgent:
                    self._urgent_waiting -= 1
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._condition:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a model lock held by another thread")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._condition.notify_all()

    def __enter__(self) -> "ModelLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

"""The model lock (playground.runtime.locks): reentrant, exclusive, and an urgent waiter goes first."""

from __future__ import annotations

import threading
import time

import pytest

from playground.runtime.locks import ModelLock


def test_it_is_reentrant_and_exclusive():
    lock, inside, order = ModelLock(), threading.Event(), []
    with lock:
        with lock:
            pass
        thread = threading.Thread(target=lambda: (lock.acquire(), order.append("other"), lock.release()))
        thread.start()
        time.sleep(0.1)
        assert order == []  # still held by this thread (depth 1)
    thread.join(5)
    assert order == ["other"] and not inside.is_set()
    with pytest.raises(RuntimeError):
        lock.release()


def test_a_waiting_urgent_caller_goes_before_earlier_waiters():
    urgent_threads: set[int] = set()
    lock = ModelLock(urgent=lambda: threading.get_ident() in urgent_threads)
    order: list[str] = []

    def forward(name: str, urgent: bool) -> None:
        if urgent:
            urgent_threads.add(threading.get_ident())
        with lock:
            order.append(name)

    lock.acquire()  # a long forward is running
    waiters = [threading.Thread(target=forward, args=(f"visitor-{i}", False)) for i in range(5)]
    for thread in waiters:
        thread.start()
    time.sleep(0.2)  # the visitors are all waiting ...
    presenter = threading.Thread(target=forward, args=("presenter", True))
    presenter.start()
    time.sleep(0.2)  # ... and so is the presenter, who came last
    lock.release()
    for thread in [*waiters, presenter]:
        thread.join(5)
    assert order[0] == "presenter" and sorted(order[1:]) == [f"visitor-{i}" for i in range(5)]


def test_a_timeout_gives_up_and_a_non_blocking_try_fails_while_held():
    lock = ModelLock()
    lock.acquire()
    result = []
    thread = threading.Thread(target=lambda: result.append((lock.acquire(timeout=0.1), lock.acquire(False))))
    thread.start()
    thread.join(5)
    assert result == [(False, False)]
    lock.release()

"""The classroom (playground.classroom): joining, the shared view, polls and their limits."""

from __future__ import annotations

import asyncio
import threading

import pytest

from playground.classroom import ANSWER_MAX_CHARS, MAX_ANSWER_CHANGES, ClassError, Classroom, new_code


def test_codes_are_readable_and_random():
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(code) == 6 and not set(code) & set("01OI") for code in codes)


def test_a_forged_code_is_refused_and_the_right_one_joins():
    room = Classroom("Demo", "p", code="ABC234")
    with pytest.raises(ClassError, match="not the current class"):
        room.join("ZZZ999", "s1")
    room.join(" abc234 ", "s1")
    assert room.is_member("s1") and room.connected() == 1


def test_pushed_views_count_up():
    room = Classroom("Demo", "p")
    assert room.push_view("sampling", "?tab=sampling&temperature=0.7").version == 1
    assert room.push_view("attention", "?tab=attention").version == 2
    assert room.view.tab == "attention"


def test_three_sessions_are_counted_exactly_and_a_changed_answer_replaces_the_old_one():
    room = Classroom("Demo", "p")
    room.open_poll("next_token", "Next token?", prompt="The capital of France is")
    room.answer("a", "visitor-a", " Paris")
    room.answer("b", "visitor-b", "Paris")
    room.answer("c", "visitor-c", "Lyon")
    room.answer("c", "visitor-c", "London")
    assert room.tally() == [("Paris", 2), ("London", 1)]


def test_yes_no_polls_take_only_their_choices():
    room = Classroom("Demo", "p")
    room.open_poll("top_p_keeps", "Does top-p 0.9 keep ' the'?", truth={"answer": "yes"})
    room.answer("a", "visitor-a", "YES")
    with pytest.raises(ClassError, match="yes, no"):
        room.answer("b", "visitor-b", "maybe")
    assert room.tally() == [("yes", 1)]


def test_bad_answers_are_refused_without_changing_the_results():
    room = Classroom("Demo", "p")
    with pytest.raises(ClassError, match="No poll is open"):
        room.answer("a", "visitor-a", "x")
    room.open_poll("next_token", "Next?")
    with pytest.raises(ClassError, match=f"at most {ANSWER_MAX_CHARS} characters"):
        room.answer("a", "visitor-a", "x" * 10_000)
    for index in range(MAX_ANSWER_CHANGES + 1):
        room.answer("a", "visitor-a", f"guess {index}")
    with pytest.raises(ClassError, match="your last answer stands"):
        for index in range(1000):
            room.answer("a", "visitor-a", f"spam {index}")
    assert room.tally() == [(f"guess {MAX_ANSWER_CHANGES}", 1)]
    room.close_poll()
    with pytest.raises(ClassError, match="closed"):
        room.answer("b", "visitor-b", "late")
    assert room.tally() == [(f"guess {MAX_ANSWER_CHANGES}", 1)]


def test_opening_a_poll_closes_the_previous_one_and_the_export_keeps_both():
    room = Classroom("Demo", "p")
    first = room.open_poll("next_token", "Q1")
    room.answer("a", "visitor-a", "=cmd|' /C calc'!A0")
    room.open_poll("draft_accepted", "Q2")
    room.answer("a", "visitor-a", "no")
    assert not first.open
    header, rows = room.export_rows()
    assert header[0] == "poll" and [row[0] for row in rows] == [1, 2]
    assert "visitor-a" in rows[0] and all(cell != "a" for row in rows for cell in row)  # labels, never session ids


def test_unknown_poll_kind_is_refused():
    with pytest.raises(ClassError, match="Unknown poll"):
        Classroom("Demo", "p").open_poll("quiz", "Q")


def test_ending_a_class_forgets_its_code_and_answers():
    from playground.classroom import ClassHost

    host = ClassHost()
    with pytest.raises(ClassError, match="No class is running"):
        host.require()
    room = host.start("Demo", "p")
    room.join(room.code, "a")
    room.open_poll("next_token", "Q")
    room.answer("a", "visitor-a", "x")
    host.end()
    with pytest.raises(ClassError, match="No class is running"):
        host.require()
    assert host.start("Next", "p").code != room.code or host.current.polls == []


def test_shared_results_compute_once_for_concurrent_identical_requests():
    import threading
    import time

    from playground.classroom import SharedResults

    shared, calls = SharedResults(), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return len(calls)

    answers = []
    threads = [threading.Thread(target=lambda: answers.append(shared.get_or_compute("view", slow))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [1] * 8 and len(calls) == 1 and shared.computed == 1 and shared.shared == 7
    assert shared.get_or_compute("other", lambda: "b") == "b" and shared.computed == 2


def test_a_failed_shared_computation_lets_the_waiters_compute_their_own():
    import threading

    from playground.classroom import SharedResults

    shared = SharedResults()
    started, release = threading.Event(), threading.Event()

    def failing():
        started.set()
        release.wait(5)
        raise RuntimeError("boom")

    errors = []
    first = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, shared.get_or_compute,
                                                                        "k", failing)))
    first.start()
    started.wait(5)
    waiter_answer = []
    waiter = threading.Thread(target=lambda: waiter_answer.append(shared.get_or_compute("k", lambda: "own")))
    waiter.start()
    release.set()
    first.join()
    waiter.join()
    assert waiter_answer == ["own"] and errors


def test_shared_results_keep_only_the_most_recent():
    from playground.classroom import SharedResults

    shared = SharedResults(capacity=2)
    for key in "abc":
        shared.get_or_compute(key, lambda key=key: key)
    calls = []
    shared.get_or_compute("a", lambda: calls.append("a") or "a")
    assert calls == ["a"]


def run_coroutine(coroutine):
    """asyncio.run in a thread of its own: an earlier test in the session (a sync Playwright page) may leave an
    event loop running in this one."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_a_waiting_follower_gets_a_view_pushed_from_another_thread_during_its_wait():
    import threading

    room = Classroom("Long poll", "p", code="ABC234")
    room.push_view("sampling", "?tab=sampling")
    timer = threading.Timer(0.2, room.push_view, ("attention", "?tab=attention&layer=3"))
    timer.start()
    view = run_coroutine(room.next_view(1, within=30.0))  # returns on the push, long before 30 s
    timer.join()
    assert view is not None and (view.tab, view.version) == ("attention", 2)
    assert run_coroutine(room.next_view(2, within=0.05)) is None  # nothing newer: no view after the wait


def test_ending_the_class_releases_a_waiting_follower():
    import threading

    from playground.classroom import ClassHost

    host = ClassHost()
    room = host.start("Ending", "p")
    timer = threading.Timer(0.2, host.end)
    timer.start()
    assert run_coroutine(room.next_view(0, within=30.0)) is None and room.ended
    timer.join()


def test_a_member_who_stops_following_during_a_wait_does_not_get_the_next_view():
    import threading

    room = Classroom("Explore", "p", code="ABC234")
    room.join("ABC234", "s1")
    threading.Timer(0.1, room.follow, ("s1", False)).start()  # unticks Follow while the poll waits ...
    threading.Timer(0.3, room.push_view, ("attention", "?tab=attention")).start()  # ... then the presenter moves
    assert run_coroutine(room.next_view(0, within=1.0, session_id="s1")) is None
    room.follow("s1", True)
    assert run_coroutine(room.next_view(0, within=1.0, session_id="s1")).tab == "attention"


class FrozenClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock never moves: no timer ever comes due (asyncio.sleep, wait_for's timeout), while
    callbacks from other threads (call_soon_threadsafe) still run. What finishes on it was woken by an event."""

    def time(self) -> float:
        return 0.0


def on_frozen_clock(scenario):
    """Run `scenario()` (a coroutine function) on a FrozenClockLoop in a thread of its own (see run_coroutine)."""
    from concurrent.futures import ThreadPoolExecutor

    def run():
        loop = FrozenClockLoop()
        try:
            return loop.run_until_complete(scenario())
        finally:
            loop.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


async def settle(task, turns: int = 20) -> bool:
    """Let the loop run a few turns (no timer can fire on a frozen clock); whether `task` finished."""
    for _ in range(turns):
        if task.done():
            break
        await asyncio.sleep(0)
    return task.done()


def from_another_thread(action, *args) -> None:
    """The presenter's push runs in a worker thread of the server, not on the followers' event loop."""
    thread = threading.Thread(target=action, args=args)
    thread.start()
    thread.join()


def test_a_push_wakes_a_waiting_follower_by_itself_not_at_a_later_check():
    room = Classroom("Event", "p", code="ABC234")
    room.push_view("sampling", "?tab=sampling")

    async def scenario():
        waiter = asyncio.ensure_future(room.next_view(1, within=3600.0))
        waiting = not await settle(waiter)  # nothing new: it waits (no timer can end the wait here)
        from_another_thread(room.push_view, "attention", "?tab=attention&layer=3")
        woken = await settle(waiter)  # a follower that looked again every few ms would still be asleep
        waiter.cancel()
        return waiting, woken, waiter.result() if woken else None

    waiting, woken, view = on_frozen_clock(scenario)
    assert waiting and woken and (view.tab, view.version) == ("attention", 2)


def test_ending_the_class_and_a_change_of_follow_wake_a_waiter_by_themselves():
    from playground.classroom import ClassHost

    host = ClassHost()
    room = host.start("Event", "p")
    room.join(room.code, "s1")

    async def scenario():
        ended = asyncio.ensure_future(room.next_view(0, within=3600.0))
        follower = asyncio.ensure_future(room.next_view(0, within=3600.0, session_id="s1"))
        waiting = not await settle(ended) and not await settle(follower)
        from_another_thread(room.follow, "s1", False)  # s1 unticks Follow: its page asks again with the new state
        follower_woken = await settle(follower) and not ended.done()
        exploring = asyncio.ensure_future(room.next_view(0, within=3600.0, session_id="s1"))
        from_another_thread(room.push_view, "attention", "?tab=attention")
        # an exploring member's poll waits (no tight loop) and does not get the pushed view ...
        explorer_waits = not await settle(exploring) and await settle(ended)
        from_another_thread(room.follow, "s1", True)  # ... until it ticks Follow again
        explorer_woken = await settle(exploring)
        last = asyncio.ensure_future(room.next_view(1, within=3600.0))
        from_another_thread(host.end)
        end_woken = await settle(last)
        for task in (ended, follower, exploring, last):
            task.cancel()
        return (waiting, follower_woken and follower.result() is None, explorer_waits, ended.result().version if ended.done() else None,
                explorer_woken and exploring.result() is None, end_woken and last.result() is None)

    assert on_frozen_clock(scenario) == (True, True, True, 1, True, True)


def test_past_the_cap_a_long_poll_answers_at_once_instead_of_waiting(monkeypatch):
    from playground import classroom

    monkeypatch.setattr(classroom, "MAX_WAITING_FOLLOWERS", 2)
    room = Classroom("Crowd", "p", code="ABC234")

    async def scenario():
        waiting = [asyncio.ensure_future(room.next_view(0, within=3600.0)) for _ in range(2)]
        first_two_wait = not await settle(waiting[0]) and not waiting[1].done() and room.waiting == 2
        third = asyncio.ensure_future(room.next_view(0, within=3600.0))
        third_answers = await settle(third) and third.result() is None and room.waiting == 2
        for task in waiting:
            task.cancel()
        return first_two_wait, third_answers

    assert on_frozen_clock(scenario) == (True, True)

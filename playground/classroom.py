"""The classroom: a presenter's class that attendees join, follow and answer polls in (server scope).

One `Classroom` at a time per server, started and ended by the presenter. Attendees join with its code
(or the join link that carries it), follow the presenter's view (`ClassView`: a tab and a deep-link
query, the same mechanism as shared links), and answer polls. Answers are anonymous (a per-session
random label); everything vanishes when the class ends. Nothing here imports gradio or torch.

    >>> room = Classroom("Tokens 101", presenter_session="p", code="ABC234")
    >>> room.join("abc234", "s1")
    >>> poll = room.open_poll("next_token", "What comes next?", prompt="The capital of France is")
    >>> room.answer("s1", "visitor-1", " Paris").text
    'Paris'
    >>> room.tally()
    [('Paris', 1)]
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from playground.limits import shown

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud from a projector
CODE_LENGTH = 6
ANSWER_MAX_CHARS = 64
MAX_ANSWER_CHANGES = 20  # one session may change its answer this often per poll; more are refused
POLL_KINDS = {
    "next_token": "Guess the next token",
    "top_p_keeps": "Does top-p keep this token?",
    "draft_accepted": "Will the draft token be accepted?",
}
YES_NO = ("yes", "no")
# Long polls (next_view) waiting at once; one more answers at once instead. An API client's poll holds one of
# the queue's job slots while it waits, so ui/queueing.py adds this many slots to those for work.
MAX_WAITING_FOLLOWERS = 100


class ClassError(ValueError):
    """A class action that cannot be done; the message says why."""


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_answer(text: str) -> str:
    """What counts as the same guess: NFC, surrounding spaces dropped (a typed ' Paris' is 'Paris').

    >>> normalize_answer("  Paris ")
    'Paris'
    """
    return unicodedata.normalize("NFC", text).strip()


@dataclass(frozen=True)
class ClassView:
    """What followers mirror: a tab and its inputs as a deep-link query. `version` grows with each push."""

    tab: str
    query: str
    version: int


@dataclass
class Answer:
    label: str
    text: str
    changes: int = 0
    at: float = 0.0


@dataclass
class Poll:
    id: int
    kind: str
    question: str
    prompt: str = ""
    choices: tuple[str, ...] = ()  # empty: free text (next_token)
    truth: dict[str, Any] = field(default_factory=dict)  # what the model says, shown on reveal
    open: bool = True
    revealed: bool = False
    answers: dict[str, Answer] = field(default_factory=dict)  # session id -> its latest answer


class SharedResults:
    """Results computed once and shared while a class runs: the presenter's page and every follower's page
    press the same button with the same inputs, and only the first request computes; the others wait for
    it (never more than `wait` seconds) and get the same answer. Least recently used entries go first.

    >>> shared, calls = SharedResults(), []
    >>> [shared.get_or_compute("k", lambda: calls.append(1) or 42) for _ in range(3)], len(calls)
    ([42, 42, 42], 1)
    """

    def __init__(self, capacity: int = 64, wait: float = 120.0) -> None:
        self.capacity = capacity
        self.wait = wait
        self._lock = threading.Lock()
        self._done: dict[Any, Any] = {}  # insertion order = recency
        self._running: dict[Any, threading.Event] = {}
        self.computed = 0
        self.shared = 0

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._done:
                self._done[key] = self._done.pop(key)
                self.shared += 1
                return self._done[key]
            running = self._running.get(key)
            if running is None:
                self._running[key] = threading.Event()
        if running is not None:
            running.wait(self.wait)
            with self._lock:
                if key in self._done:
                    self.shared += 1
                    return self._done[key]
            return compute()  # the first request failed or took too long: compute our own
        try:
            result = compute()
            with self._lock:
                self._done[key] = result
                self.computed += 1
                while len(self._done) > self.capacity:
                    self._done.pop(next(iter(self._done)))
            return result
        finally:
            with self._lock:
                self._running.pop(key).set()


class Classroom:
    """One class: its code, members, the presenter's current view, the polls and the shared results."""

    def __init__(self, title: str, presenter_session: str, code: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.title = normalize_answer(title)[:80] or "Class"
        self.code = code or new_code()
        self.presenter_session = presenter_session
        self._clock = clock
        self._lock = threading.Lock()
        self.members: dict[str, float] = {}  # session id -> last seen
        self.view: ClassView | None = None
        self.polls: list[Poll] = []
        self.results = SharedResults()
        self.ended = False  # set by end(): waiting followers stop waiting
        self.exploring: set[str] = set()  # members who unticked "Follow the presenter"
        # the long polls waiting now: each its loop and the event that wakes it (see next_view)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- members --------------------------------------------------------------------------------
    def join(self, code: str, session_id: str) -> None:
        """Join with the class's code; a member who joins again (the link opened again) follows the presenter."""
        if normalize_answer(code).upper() != self.code:
            raise ClassError("That class code is not the current class's: check the code on the presenter's "
                             "screen (the class may have ended).")
        with self._lock:
            self.members[session_id] = self._clock()
            self.exploring.discard(session_id)
            self._wake_waiters()

    def is_member(self, session_id: str) -> bool:
        return session_id in self.members

    def is_following(self, session_id: str) -> bool:
        """Whether a member follows the presenter (what their page's Follow box must show, also after a reload)."""
        return session_id not in self.exploring

    def seen(self, session_id: str) -> None:
        with self._lock:
            if session_id in self.members:
                self.members[session_id] = self._clock()

    def connected(self, within: float = 15.0) -> int:
        """Members whose page checked in within `within` seconds (followers poll every second or two)."""
        now = self._clock()
        return sum(1 for seen in self.members.values() if now - seen <= within)

    # -- the presenter's view ---------------------------------------------------------------------
    def push_view(self, tab: str, query: str) -> ClassView:
        with self._lock:
            version = self.view.version + 1 if self.view else 1
            self.view = ClassView(tab, query, version)
            self._wake_waiters()
            return self.view

    def follow(self, session_id: str, on: bool) -> None:
        """A member ticks or unticks "Follow the presenter": a wait already under way honours it."""
        with self._lock:
            (self.exploring.discard if on else self.exploring.add)(session_id)
            self._wake_waiters()

    def end(self) -> None:
        """The class is over: every waiting follower stops waiting now."""
        with self._lock:
            self.ended = True
            self._wake_waiters()

    @property
    def waiting(self) -> int:
        """Long polls waiting for the next view now."""
        return len(self._waiters)

    def _wake_waiters(self) -> None:
        """Wake every waiting long poll (they re-check what changed). Called with the lock held, from any
        thread (the presenter's push runs in a worker thread): an asyncio.Event is set on its own loop only."""
        for loop, changed in self._waiters:
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:  # that loop has closed: its waiter is gone with it
                pass

    async def next_view(self, after_version: int, within: float, session_id: str | None = None) -> ClassView | None:
        """The room's view once its version is not `after_version`, waiting at most `within` seconds: a long
        poll that a push wakes at once (an event, not a timer: the presenter's push sets it from whatever
        thread it runs in). None when nothing changed, the class ended, or `session_id` ticked or unticked
        Follow meanwhile (the page asks again with its new state). A member who does not follow waits too
        (for a change of mind, the end or `within`), so an exploring page does not ask in a tight loop.
        Waiting costs no thread: it runs on the server's event loop.

        >>> room = Classroom("T", "p", code="ABC234")
        >>> asyncio.run(room.next_view(0, within=0.1)) is None
        True
        >>> _ = room.push_view("sampling", "?tab=sampling")
        >>> asyncio.run(room.next_view(0, within=5.0)).version
        1
        """
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        waiter = (loop, changed)
        deadline = loop.time() + within
        with self._lock:  # registered before the first look: a push between the look and the wait still wakes it
            crowded = len(self._waiters) >= MAX_WAITING_FOLLOWERS
            if crowded:
                deadline = loop.time()  # look once, do not wait
            else:
                self._waiters.add(waiter)
            following = session_id not in self.exploring
        try:
            while not self.ended and (session_id not in self.exploring) == following:
                view = self.view
                if following and view is not None and view.version != after_version:
                    return view
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                changed.clear()  # cleared before the next look: a push after it sets it again
            return None
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    # -- polls ----------------------------------------------------------------------------------
    @property
    def poll(self) -> Poll | None:
        return self.polls[-1] if self.polls else None

    def open_poll(self, kind: str, question: str, prompt: str = "", truth: dict[str, Any] | None = None) -> Poll:
        if kind not in POLL_KINDS:
            raise ClassError(f"Unknown poll {shown(kind)}: one of {', '.join(POLL_KINDS)}.")
        with self._lock:
            if self.poll is not None:
                self.poll.open = False
            poll = Poll(len(self.polls) + 1, kind, question, prompt, () if kind == "next_token" else YES_NO,
                        dict(truth or {}))
            self.polls.append(poll)
            return poll

    def answer(self, session_id: str, label: str, text: str) -> Answer:
        poll = self.poll
        if poll is None:
            raise ClassError("No poll is open: wait for the presenter to put a question to the room.")
        if not poll.open:
            raise ClassError("This poll has closed: your answer was not counted.")
        if len(text) > ANSWER_MAX_CHARS:
            raise ClassError(f"An answer is at most {ANSWER_MAX_CHARS} characters (yours has {len(text):,}).")
        answer_text = normalize_answer(text)
        if not answer_text:
            raise ClassError("Type or pick an answer first.")
        if poll.choices and answer_text.lower() not in poll.choices:
            raise ClassError(f"Answer one of: {', '.join(poll.choices)}.")
        answer_text = answer_text.lower() if poll.choices else answer_text
        with self._lock:
            previous = poll.answers.get(session_id)
            changes = previous.changes + 1 if previous else 0
            if changes > MAX_ANSWER_CHANGES:
                raise ClassError(f"You changed your answer {MAX_ANSWER_CHANGES} times: your last answer stands.")
            answer = Answer(label, answer_text, changes, self._clock())
            poll.answers[session_id] = answer
            return answer

    def close_poll(self) -> Poll:
        if self.poll is None:
            raise ClassError("No poll to close.")
        self.poll.open = False
        return self.poll

    def reveal(self) -> Poll:
        poll = self.close_poll()
        poll.revealed = True
        return poll

    def tally(self, poll: Poll | None = None) -> list[tuple[str, int]]:
        """(answer, how many gave it), most given first, ties in alphabetical order."""
        poll = poll or self.poll
        if poll is None:
            return []
        counts: dict[str, int] = {}
        for answer in list(poll.answers.values()):
            counts[answer.text] = counts.get(answer.text, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def export_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Every answer of every poll, anonymous: the rows of the presenter's CSV export."""
        header = ["poll", "kind", "question", "prompt", "answer_label", "answer", "changes"]
        rows = [[poll.id, poll.kind, poll.question, poll.prompt, answer.label, answer.text, answer.changes]
                for poll in self.polls for answer in list(poll.answers.values())]
        return header, rows


class ClassHost:
    """The server's one class slot: the presenter starts a class, ends it, and everything in it vanishes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.current: Classroom | None = None

    def start(self, title: str, presenter_session: str) -> Classroom:
        with self._lock:
            self.current = Classroom(title, presenter_session, clock=self._clock)
            return self.current

    def end(self) -> None:
        with self._lock:
            if self.current is not None:
                self.current.end()
            self.current = None

    def require(self) -> Classroom:
        room = self.current
        if room is None:
            raise ClassError("No class is running: the presenter starts one under 'Classroom'.")
        return room

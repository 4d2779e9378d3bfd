"""Who is asking: one `Session` per browser tab (or API client), and who may act for everyone.

A server has three scopes, each with one owner in the code:
- server: the resident models (runtime.ModelManager), published adapters, the class (playground.classroom);
- session: this visitor's model choice, private adapter model, jobs (this module's `Session`);
- request: everything else (plain arguments).

Roles. The *operator* decides what the server may run (flags, env vars). The *presenter* holds the
presenter key (`--presenter-key` / `PLAYGROUND_PRESENTER_KEY`) and alone may change what everybody sees:
load a model for everyone, publish an adapter, run a class. Without a key, a server bound to loopback
treats its local user as the presenter (a laptop behaves as a single-user app); a server reachable from
a network has no presenter until the operator sets a key. Everyone else is a *visitor*.

Nothing here imports gradio: the UI passes gradio's session hash in as the session id.

    >>> registry = SessionRegistry(PresenterGate("s3cret", open_to_all=False))
    >>> registry.is_presenter("tab-a")
    False
    >>> registry.log_in("tab-a", "s3cret")
    >>> registry.is_presenter("tab-a"), registry.is_presenter("tab-b")
    (True, False)
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
IDLE_TIMEOUT_SECONDS = 30 * 60  # a closed tab's session (and its private model) is freed after this
MAX_SESSIONS = 500  # beyond this the longest-idle sessions are freed first (see MIN_IDLE_TO_EVICT_SECONDS)
# A session idle less than this is in use (a follower's page checks in every second or two): a flood of new
# sessions is refused rather than ending it. The presenter's session is never ended for room.
MIN_IDLE_TO_EVICT_SECONDS = 120.0
# One address may hold this many sessions (a school behind one NAT sends a whole class from one address);
# beyond it, that address's own longest-idle session makes room, never another address's.
MAX_SESSIONS_PER_HOST = 150
MAX_PAGE_ALIASES_PER_SESSION = 4  # page loads remembered per session slot; older ones without a session go
BACKOFF_FIRST_SECONDS = 1.0  # a wrong key waits this long before the next try, doubling each time
BACKOFF_MAX_SECONDS = 60.0
GLOBAL_FAILURES_PER_MINUTE = 20  # more wrong keys than this from anyone: everyone waits a minute


class AccessDenied(ValueError):
    """An action this session may not take; the message says why and how to get the right."""


class SessionsFull(AccessDenied):
    """The server holds its maximum of sessions and none has been idle long enough to make room."""


def presenter_message(action: str) -> str:
    """The one sentence a refused visitor reads."""
    return (f"Only the presenter can {action}: it changes what everyone on this server sees. Ask the presenter, "
            "or, on your own machine, start the app with --presenter-key and enter the key under 'Presenter'.")


@dataclass
class Session:
    """One visitor's own state. `model_key` is a resident model the visitor picked (None: the server's model);
    `private_model` is a model only this session's tabs use (its own adapter merged into a copy)."""

    id: str
    label: str  # anonymous, shown in polls: no names are stored unless given
    created: float
    last_seen: float
    presenter: bool = False
    host: str | None = None  # the client's address, when the UI knows it (bounds what one address holds)
    model_key: Any = None
    private_model: Any = None
    on_end: list[Callable[[], None]] = field(default_factory=list)  # frees what the session owns

    def end(self) -> None:
        self.private_model = None
        self.model_key = None
        for release in self.on_end:
            release()
        self.on_end.clear()


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class PresenterGate:
    """The presenter key: compared in constant time, wrong tries slowed down per session and overall.

    `open_to_all`: no key and a loopback-only server, so whoever can reach it is the local user.
    """

    def __init__(self, key: str | None, open_to_all: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = (key or "").encode()
        self.open_to_all = open_to_all and not key
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._recent_failures: list[float] = []

    @property
    def has_key(self) -> bool:
        return bool(self._key)

    def check(self, session_id: str, attempt: str) -> None:
        """Raise AccessDenied unless `attempt` is the key. Never echoes the attempt or the key."""
        now = self._clock()
        with self._lock:
            self._recent_failures = [t for t in self._recent_failures if now - t < 60]
            wait = max(self._retry_at.get(session_id, 0.0) - now,
                       60 - (now - self._recent_failures[0]) if len(self._recent_failures) >= GLOBAL_FAILURES_PER_MINUTE
                       else 0.0)
            if wait > 0:
                raise AccessDenied(f"Too many wrong presenter keys: try again in {wait:.0f} s.")
            if not self._key:
                raise AccessDenied("This server has no presenter key: the operator starts it with --presenter-key "
                                   "(or PLAYGROUND_PRESENTER_KEY) to let a presenter take charge.")
            if hmac.compare_digest(attempt.encode("utf-8", "surrogatepass"), self._key):
                self._failures.pop(session_id, None)
                self._retry_at.pop(session_id, None)
                return
            failures = self._failures.get(session_id, 0) + 1
            self._failures[session_id] = failures
            self._retry_at[session_id] = now + min(BACKOFF_FIRST_SECONDS * 2 ** (failures - 1), BACKOFF_MAX_SECONDS)
            self._recent_failures.append(now)
        raise AccessDenied("That is not the presenter key.")


class SessionRegistry:
    """Every live session, keyed by gradio's session hash; idle ones expire and free what they hold."""

    def __init__(self, gate: PresenterGate, idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                 max_sessions: int = MAX_SESSIONS, max_per_host: int = MAX_SESSIONS_PER_HOST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gate = gate
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.max_per_host = max_per_host
        self._clock = clock
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._aliases: dict[str, str] = {}  # a page's session hash -> its browser's visitor session

    def claim(self, session_id: str | None, token: str | None) -> str:
        """Link a page (gradio's session hash, new at every page load) to its browser's visitor token, kept
        in the browser across reloads, so a reload keeps the visitor's session: model choice, adapter,
        training job, role. A missing or malformed token gets a new one (unless the page already has one);
        returns the token for the browser to keep. What the page did before its claim (its first events run side
        by side: a quick click can come first) was done as the page's own session, which ends here; its presenter
        role, proven by the key, goes to the visitor's session. Page-load handlers that act for the visitor claim
        first (AppContext.claim_page), so a class joined from a link is the visitor's.

        >>> registry = SessionRegistry(PresenterGate(None, open_to_all=True))
        >>> token = registry.claim("page-1", "")
        >>> registry.get("page-1") is registry.get("page-2") , registry.claim("page-2", token) == token
        (False, True)
        >>> registry.get("page-1") is registry.get("page-2")
        True
        """
        page = session_id or "local"
        with self._lock:
            if not re.fullmatch(r"[0-9a-f]{32}", token or ""):
                held = self._aliases.get(page)
                token = held.removeprefix("visitor-") if held else secrets.token_hex(16)
            self._aliases.pop(page, None)  # re-inserted last: the dict's order is the order of page loads
            self._aliases[page] = f"visitor-{token}"
            early = self._sessions.pop(page, None)
            if early is not None and early.presenter:
                self.get(page).presenter = True
            self._bound_aliases()
        if early is not None:
            early.end()
        return token

    def _bound_aliases(self) -> None:
        """Forget the oldest page loads whose visitor has no session (pages that never came back), so a
        flood of page loads cannot grow the table without end. Caller holds the lock."""
        excess = len(self._aliases) - MAX_PAGE_ALIASES_PER_SESSION * self.max_sessions
        if excess <= 0:
            return
        stale = [page for page, visitor in self._aliases.items() if visitor not in self._sessions][:excess]
        for page in stale:
            del self._aliases[page]

    def release_page(self, session_id: str | None) -> None:
        """A page closed (or reloaded): a visitor's session stays until it idles out (a reload comes back to
        it); a page without a visitor token (an API client) ends its session now."""
        with self._lock:
            visitor = self._aliases.pop(session_id or "local", None)
        if visitor is None:
            self.end(session_id)

    def _canonical(self, session_id: str | None) -> str:
        session_id = session_id or "local"
        return self._aliases.get(session_id, session_id)

    def get(self, session_id: str | None, host: str | None = None) -> Session:
        """The session (created on first use, marked as seen now). A call with no session id (a script that
        imports the app, a test calling a handler directly) is the local user's. A new session on a full
        server raises SessionsFull (nobody idle enough to make room for it)."""
        session_id = self._canonical(session_id)
        now = self._clock()
        ended: list[Session] = []
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                ended = self._make_room(host, now)
                session = Session(session_id, f"visitor-{secrets.token_hex(2)}", now, now, host=host)
                self._sessions[session_id] = session
            session.last_seen = now
        for old in ended:
            old.end()
        return session

    def _make_room(self, host: str | None, now: float) -> list[Session]:
        """Pop what must go for one more session (idle ones, then this host's or the server's longest-idle
        evictable one); raise SessionsFull when nothing may go. Caller holds the lock and ends what returns."""
        ended = self._pop_sessions([s for s in self._sessions.values() if now - s.last_seen > self.idle_timeout])
        if host is not None and sum(s.host == host for s in self._sessions.values()) >= self.max_per_host:
            # the address makes room from its own sessions only, never another address's
            ended += self._evict(1, lambda s: s.host == host, ended,
                                 f"Too many sessions from your address ({self.max_per_host}), all of them active. "
                                 "Close some tabs, or try again in a few minutes.")
        if len(self._sessions) >= self.max_sessions:
            ended += self._evict(len(self._sessions) + 1 - self.max_sessions, lambda s: True, ended,
                                 f"The server is busy: it serves its maximum of {self.max_sessions} visitors, "
                                 "all of them active. Try again in a few minutes.")
        return ended

    def _evict(self, count: int, among: Callable[[Session], bool], ended: list[Session], refusal: str) -> list[Session]:
        """Pop the `count` longest-idle sessions `among` those idle long enough (never the presenter's);
        refuse with `refusal` (after ending what already went) when there are not enough."""
        now = self._clock()
        evictable = sorted((s for s in self._sessions.values()
                            if among(s) and not s.presenter and now - s.last_seen >= MIN_IDLE_TO_EVICT_SECONDS),
                           key=lambda s: s.last_seen)
        if len(evictable) < count:
            for old in ended:
                old.end()
            raise SessionsFull(refusal)
        return self._pop_sessions(evictable[:count])

    def _pop_sessions(self, sessions: list[Session]) -> list[Session]:
        gone = {session.id for session in sessions}
        for session_id in gone:
            self._sessions.pop(session_id, None)
        if gone:
            self._aliases = {page: visitor for page, visitor in self._aliases.items() if visitor not in gone}
        return sessions

    def find(self, session_id: str | None) -> Session | None:
        with self._lock:
            return self._sessions.get(self._canonical(session_id))

    def is_presenter(self, session_id: str | None) -> bool:
        if self.gate.open_to_all:
            return True
        session = self.find(session_id)
        return bool(session and session.presenter)

    def require_presenter(self, session_id: str | None, action: str) -> None:
        if not self.is_presenter(session_id):
            raise AccessDenied(presenter_message(action))

    def log_in(self, session_id: str | None, key: str) -> None:
        """Make this session the presenter's if `key` is the presenter key (AccessDenied otherwise)."""
        self.gate.check(self._canonical(session_id), key)
        self.get(session_id).presenter = True

    def end(self, session_id: str | None) -> None:
        """The tab closed: free what the session held now."""
        with self._lock:
            session = self._sessions.pop(self._canonical(session_id), None)
        if session is not None:
            session.end()

    def expire(self) -> list[str]:
        """End sessions idle longer than the timeout."""
        now = self._clock()
        with self._lock:
            ended = self._pop_sessions([s for s in self._sessions.values() if now - s.last_seen > self.idle_timeout])
        for session in ended:
            session.end()
        return [session.id for session in ended]

    def sessions_using(self, predicate: Callable[[Session], bool]) -> list[Session]:
        with self._lock:
            return [s for s in self._sessions.values() if predicate(s)]

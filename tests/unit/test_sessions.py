"""Sessions and roles (playground.sessions): who is the presenter, how wrong keys slow down, expiry."""

from __future__ import annotations

import pytest

from playground.sessions import (
    MAX_PAGE_ALIASES_PER_SESSION,
    MIN_IDLE_TO_EVICT_SECONDS,
    AccessDenied,
    PresenterGate,
    SessionRegistry,
    SessionsFull,
    is_loopback,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry(key: str | None = "s3cret", open_to_all: bool = False, **kwargs) -> tuple[SessionRegistry, Clock]:
    clock = Clock()
    return SessionRegistry(PresenterGate(key, open_to_all, clock=clock), clock=clock, **kwargs), clock


def test_without_a_key_a_loopback_server_makes_everyone_the_presenter():
    sessions, _ = registry(key=None, open_to_all=True)
    assert sessions.is_presenter("a") and sessions.is_presenter("b")


def test_a_key_makes_only_the_session_that_entered_it_the_presenter():
    sessions, _ = registry(open_to_all=True)  # a key overrides loopback's open door
    assert not sessions.is_presenter("a")
    sessions.log_in("a", "s3cret")
    assert sessions.is_presenter("a") and not sessions.is_presenter("b")
    with pytest.raises(AccessDenied, match="Only the presenter can load a model"):
        sessions.require_presenter("b", "load a model")


def test_a_network_server_without_a_key_has_no_presenter_and_says_how_to_get_one():
    sessions, _ = registry(key=None, open_to_all=False)
    assert not sessions.is_presenter("a")
    with pytest.raises(AccessDenied, match="--presenter-key"):
        sessions.log_in("a", "anything")


def test_wrong_keys_wait_longer_each_time_and_never_echo_the_attempt():
    sessions, clock = registry()
    with pytest.raises(AccessDenied) as wrong:
        sessions.log_in("a", "guess-1")
    assert "guess-1" not in str(wrong.value) and "s3cret" not in str(wrong.value)
    with pytest.raises(AccessDenied, match="try again in 1 s"):
        sessions.log_in("a", "s3cret")  # even the right key waits out the delay
    clock.now += 1.01
    with pytest.raises(AccessDenied, match="not the presenter key"):
        sessions.log_in("a", "guess-2")
    clock.now += 1.01
    with pytest.raises(AccessDenied, match="try again in 1 s"):  # the second wait is 2 s
        sessions.log_in("a", "s3cret")
    clock.now += 1.0
    sessions.log_in("a", "s3cret")
    assert sessions.is_presenter("a")


def test_many_wrong_keys_from_many_sessions_slow_everyone_down():
    sessions, clock = registry()
    for index in range(20):
        with pytest.raises(AccessDenied, match="not the presenter key"):
            sessions.log_in(f"attacker-{index}", "x")
    with pytest.raises(AccessDenied, match="Too many wrong presenter keys"):
        sessions.log_in("honest", "s3cret")
    clock.now += 61
    sessions.log_in("honest", "s3cret")


def test_idle_sessions_expire_and_free_what_they_hold():
    sessions, clock = registry(idle_timeout=60)
    freed = []
    session = sessions.get("a")
    session.private_model = object()
    session.on_end.append(lambda: freed.append("a"))
    sessions.get("b")
    clock.now += 30
    sessions.get("b")  # b is still active
    clock.now += 31
    assert sessions.expire() == ["a"]
    assert freed == ["a"] and session.private_model is None
    assert sessions.find("a") is None and sessions.find("b") is not None


def test_the_number_of_sessions_is_bounded_longest_idle_first():
    sessions, clock = registry(max_sessions=3)
    for name in "abc":
        sessions.get(name)
        clock.now += 1
    clock.now += MIN_IDLE_TO_EVICT_SECONDS  # all three have been idle a while: the longest-idle goes
    sessions.get("d")
    assert sessions.find("a") is None and all(sessions.find(name) for name in "bcd")


def test_a_flood_of_new_sessions_never_ends_the_presenters_or_an_active_visitors_session():
    sessions, clock = registry(max_sessions=3)
    sessions.log_in("presenter", "s3cret")
    sessions.get("visitor").model_key = "fp32"
    clock.now += 10 * MIN_IDLE_TO_EVICT_SECONDS  # the presenter and the visitor paused for a long while
    sessions.get("visitor")  # the visitor is back; the presenter is still idle
    refused = 0
    for index in range(20):  # a script opens twenty new sessions at once
        try:
            sessions.get(f"flood-{index}")
        except SessionsFull as error:
            refused += 1
            assert "busy" in str(error) and "3" in str(error)
    assert sessions.is_presenter("presenter") and sessions.find("visitor").model_key == "fp32"
    assert refused == 19 and len(sessions.sessions_using(lambda s: True)) == 3


def test_a_flood_from_one_host_frees_only_that_hosts_own_sessions():
    sessions, clock = registry(max_sessions=100, max_per_host=3)
    sessions.get("neighbour", host="192.0.2.2").model_key = "fp32"
    refusals = []
    for index in range(50):  # fifty sessions in fifty seconds from one address: all but three refused
        try:
            sessions.get(f"flood-{index}", host="192.0.2.66")
        except SessionsFull as error:
            refusals.append(str(error))
        clock.now += 1
    flood = sessions.sessions_using(lambda s: s.host == "192.0.2.66")
    assert {s.id for s in flood} == {"flood-0", "flood-1", "flood-2"} and len(refusals) == 47
    assert "your address" in refusals[0]
    clock.now += MIN_IDLE_TO_EVICT_SECONDS  # later, the address's own longest-idle session makes room
    sessions.get("flood-late", host="192.0.2.66")
    assert sessions.find("flood-0") is None and sessions.find("flood-late") is not None
    assert sessions.find("neighbour").model_key == "fp32"


def test_page_aliases_stay_bounded_under_a_flood_of_page_loads():
    sessions, _ = registry(max_sessions=10)
    sessions.claim("teacher-page", "")
    sessions.get("teacher-page").model_key = "fp32"
    for index in range(10_000):  # page loads that never come back (no session behind them)
        sessions.claim(f"page-{index}", "")
    assert len(sessions._aliases) <= MAX_PAGE_ALIASES_PER_SESSION * 10
    assert sessions.find("teacher-page").model_key == "fp32"  # a page whose visitor session exists keeps its alias


def test_labels_are_anonymous_and_distinct_per_session():
    sessions, _ = registry()
    labels = {sessions.get(f"s{i}").label for i in range(30)}
    assert all(label.startswith("visitor-") for label in labels) and len(labels) >= 25


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("0.0.0.0", False), ("192.0.2.10", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_a_reloaded_page_finds_its_visitor_session_and_an_api_client_ends_with_its_page():
    sessions, _ = registry()
    token = sessions.claim("page-1", "")
    sessions.get("page-1").model_key = "fp32"
    sessions.log_in("page-1", "s3cret")
    sessions.release_page("page-1")  # the reload closes the old page ...
    assert sessions.claim("page-2", token) == token  # ... and the new page brings the browser's token
    assert sessions.get("page-2").model_key == "fp32" and sessions.is_presenter("page-2")
    sessions.get("api-client").model_key = "fp32"
    sessions.release_page("api-client")
    assert sessions.find("api-client") is None


def test_a_forged_or_malformed_token_gets_a_fresh_session():
    sessions, _ = registry()
    sessions.get("page-1").model_key = "fp32"
    token = sessions.claim("page-2", "../../etc/passwd")
    assert len(token) == 32 and sessions.get("page-2").model_key is None


def test_a_presenter_who_logs_in_before_the_page_claims_its_token_stays_the_presenter():
    """A page's first events run side by side: a quick click on "I am the presenter" can reach the server before
    the page's claim of its browser's visitor token. The role proven on the page's own session goes with the page
    to its visitor's session (on a first visit and on a reload); the page's early session ends."""
    sessions, _ = registry()
    sessions.log_in("page-1", "s3cret")  # before the page's claim (a first visit: no token yet)
    token = sessions.claim("page-1", "")
    assert sessions.is_presenter("page-1") and "page-1" not in sessions._sessions
    sessions.release_page("page-1")
    visitor = sessions.claim("page-2", "")  # another browser, a plain visitor, reloads ...
    sessions.release_page("page-2")
    sessions.log_in("page-3", "s3cret")  # ... and logs in before its new page's claim
    assert sessions.claim("page-3", visitor) == visitor
    assert sessions.is_presenter("page-3") and "page-3" not in sessions._sessions
    assert sessions.claim("page-4", token) == token and sessions.is_presenter("page-4")
    assert not sessions.is_presenter("page-5")  # a page that never logged in stays a visitor

"""Sessions and roles (playground.sessions): who is the presenter, how wrong keys slow down, expiry."""

from __future__ import annotations

import pytest

from playground.sessions import AccessDenied, PresenterGate, SessionRegistry, is_loopback


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
    sessions.get("d")
    assert sessions.find("a") is None and all(sessions.find(name) for name in "bcd")


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

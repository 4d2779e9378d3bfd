"""Many people, one server, through gradio's API: a presenter with a key, visitors who cannot change what
others see, per-session model choice, and a class with a poll answered by three clients."""

from __future__ import annotations

import logging
import time

import pytest

pytestmark = pytest.mark.slow

from conftest import PRESENTER_KEY as KEY
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def clients(classroom_app):
    from gradio_client import Client

    url, _ = classroom_app
    return {name: Client(url, verbose=False) for name in ("presenter", "a", "b", "c")}


def next_token(client):
    """A seeded next-token view: the same answer every time on the same model."""
    _, _, _, data = client.predict(PROMPT, False, 0.8, 40, 0.95, 0.0, 1.0, 7, 10, api_name="/next_token")
    return [(token["text"], round(token["probs"]["raw"], 6)) for token in data["tokens"]]


def test_a_visitor_cannot_load_a_model_for_everyone(clients):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Only the presenter can load a new model"):
        clients["a"].predict("smollm2-135m-instruct", "none", "cpu", api_name="/load_model")
    with pytest.raises(AppError, match="Only the presenter can start a class"):
        clients["a"].predict("Hijack", api_name="/start_class")


def test_the_presenter_key_is_checked_and_never_echoed(clients, caplog):
    from gradio_client.exceptions import AppError

    caplog.set_level(logging.DEBUG)
    with pytest.raises(AppError) as wrong:
        clients["b"].predict("wrong-guess", api_name="/presenter_login")
    assert "wrong-guess" not in str(wrong.value) and KEY not in str(wrong.value)
    role, cleared = clients["presenter"].predict(KEY, api_name="/presenter_login")
    assert "You are the presenter" in role and cleared == ""
    state = clients["presenter"].predict(api_name="/class_state")
    status = clients["presenter"].predict(api_name="/model_status")[1]
    assert state["presenter"] is True and clients["a"].predict(api_name="/class_state")["presenter"] is False
    assert KEY not in str(state) + str(status) + caplog.text


def test_one_visitors_precision_never_changes_anothers_answers(clients, classroom_app):
    _, manager = classroom_app
    presenter, a, b = clients["presenter"], clients["a"], clients["b"]
    presenter.predict(KEY, api_name="/presenter_login")
    before_a, before_b = next_token(a), next_token(b)
    assert before_a == before_b
    # the presenter makes fp32 resident (loading it for everyone), then switches everyone back to the default
    presenter.predict("smollm2-135m-instruct", "none", "cpu", api_name="/load_model")
    presenter.predict("smollm2-135m-instruct", "auto", "cpu", api_name="/load_model")
    assert len(manager.residents()) >= 2
    assert next_token(b) == before_b
    # visitor A switches *their* tabs to the resident fp32 copy: allowed, and only A's answers change
    html, status, _ = a.predict("smollm2-135m-instruct", "none", "cpu", api_name="/load_model")
    assert status["yours"]["quantization"] == "none" and "Your tabs use" in html
    during_a, during_b = next_token(a), next_token(b)
    assert during_a != before_a and during_b == before_b
    assert b.predict(api_name="/model_status")[1]["yours"] is None
    a.predict("smollm2-135m-instruct", "auto", "cpu", api_name="/load_model")
    assert next_token(a) == before_a and next_token(b) == before_b


def test_a_poll_counts_three_clients_exactly(clients):
    from gradio_client.exceptions import AppError

    presenter = clients["presenter"]
    presenter.predict(KEY, api_name="/presenter_login")
    presenter.predict("Tokens 101", api_name="/start_class")
    code = presenter.predict(api_name="/class_state")["code"]
    assert "code" not in clients["a"].predict(api_name="/class_state")  # only the presenter is shown the code
    with pytest.raises(AppError, match="not the current class"):
        clients["a"].predict("ZZZZZZ", api_name="/join_class")
    for name in ("a", "b", "c"):
        clients[name].predict(code.lower(), api_name="/join_class")
    with pytest.raises(AppError, match="Only the presenter can put a poll"):
        clients["a"].predict("next_token", PROMPT, "", 0.9, api_name="/open_poll")
    presenter.predict("next_token", PROMPT, "", 0.9, api_name="/open_poll")
    for name, guess in (("a", "Paris"), ("b", " Paris"), ("c", "London")):
        clients[name].predict(guess, api_name="/answer_poll")
    with pytest.raises(AppError, match="at most 64 characters"):
        clients["c"].predict("x" * 10_000, api_name="/answer_poll")
    results = clients["a"].predict(api_name="/poll_results")
    assert results["answers"] == 3 and results["tally"] == [{"answer": "Paris", "count": 2},
                                                            {"answer": "London", "count": 1}]
    # the page's card timer re-reads the poll every 3 s: its note keeps each member's own confirmation (it was
    # blanked, so "your answer is in" vanished from an attendee's screen within 3 s)
    assert "“Paris” is in" in results["note"] and "“London” is in" in clients["c"].predict(api_name="/poll_results")["note"]
    assert "is in" not in presenter.predict(api_name="/poll_results")["note"]
    assert "model_top" not in results  # not revealed yet
    with pytest.raises(AppError, match="Only the presenter can reveal"):
        clients["b"].predict(api_name="/reveal_poll")
    _, revealed, note = presenter.predict(api_name="/reveal_poll")
    assert revealed["model_top"][0]["text"] == " Paris" and revealed["room_rank"] == 1
    paris = next(row for row in revealed["guesses"] if row["guess"] == "Paris")
    assert paris["text"] == " Paris" and 0.3 < paris["prob"] < 1 and "Paris" in note
    with pytest.raises(AppError, match="closed"):
        clients["c"].predict("Lyon", api_name="/answer_poll")
    with pytest.raises(AppError, match="Only the presenter can export"):
        clients["a"].predict(api_name="/export_poll")
    csv_path = presenter.predict(api_name="/export_poll")
    assert open(csv_path, encoding="utf-8").read().count("\n") == 4  # header + three answers
    presenter.predict(api_name="/end_class")
    with pytest.raises(AppError, match="No class is running"):
        clients["a"].predict("Paris", api_name="/answer_poll")


def test_the_presenter_shows_a_view_and_members_read_it(clients):
    from gradio_client.exceptions import AppError

    presenter, a, b = clients["presenter"], clients["a"], clients["b"]
    presenter.predict(KEY, api_name="/presenter_login")
    presenter.predict("Views", api_name="/start_class")
    code = presenter.predict(api_name="/class_state")["code"]
    a.predict(code, api_name="/join_class")
    with pytest.raises(AppError, match="Only the presenter can show a view"):
        a.predict("?tab=sampling&top_p=0.5", api_name="/show_view")
    with pytest.raises(AppError, match="no tab called"):
        presenter.predict("?tab=nowhere", api_name="/show_view")
    shown = presenter.predict("?tab=sampling&top_p=0.5&temperature=1.3", api_name="/show_view")
    view = a.predict(api_name="/class_view")
    assert view == shown and view["tab"] == "sampling" and "top_p=0.5" in view["query"]
    with pytest.raises(AppError, match="Join the class first"):
        b.predict(api_name="/class_view")
    # a long poll: a member waiting on the version it has gets the next view as soon as it is pushed
    waiting = a.submit(view["version"], api_name="/class_view")
    pushed = presenter.predict("?tab=attention&layer=3", api_name="/show_view")
    assert waiting.result(timeout=30) == pushed and pushed["version"] == view["version"] + 1
    assert a.predict(pushed["version"], api_name="/class_view") == pushed  # nothing newer: the same view
    presenter.predict(api_name="/end_class")


def test_followers_share_one_computation_of_the_presenters_view(clients):
    presenter, a, b = clients["presenter"], clients["a"], clients["b"]
    presenter.predict(KEY, api_name="/presenter_login")
    presenter.predict("Shared", api_name="/start_class")
    code = presenter.predict(api_name="/class_state")["code"]
    for member in (a, b):
        member.predict(code, api_name="/join_class")
    request = ("Attention is all you need, they said.", 0, "mean", "heads", False)
    answers = [client.predict(*request, api_name="/attention")[-1] for client in (presenter, a, b)]
    assert presenter.predict(api_name="/class_state")["results"] == {"computed": 1, "shared": 2}
    assert answers[0] == answers[1] == answers[2]
    presenter.predict(api_name="/end_class")


def test_more_waiting_followers_than_gradios_default_job_slots_still_get_the_next_view(clients, monkeypatch):
    """A queued event holds one of the queue's job slots while it runs, and an API client's long poll goes
    through the queue: with gradio's default 40 slots, 45 waiting polls left no slot for the presenter's
    show_view (nor for class_state) until polls ran out of time and answered with the old view."""
    from gradio_client import Client

    from playground.ui import classroom_panel
    from playground.ui.queueing import WORK_SLOTS

    url = clients["presenter"].src
    monkeypatch.setattr(classroom_panel, "FOLLOW_WAIT_SECONDS", 60.0)  # no poll here ends by running out of time
    presenter, follower = clients["presenter"], Client(url, verbose=False, max_workers=WORK_SLOTS + 10)
    presenter.predict(KEY, api_name="/presenter_login")
    presenter.predict("Crowd", api_name="/start_class")
    follower.predict(presenter.predict(api_name="/class_state")["code"], api_name="/join_class")
    shown = presenter.predict("?tab=sampling", api_name="/show_view")
    polls = [follower.submit(shown["version"], api_name="/class_view") for _ in range(WORK_SLOTS + 5)]
    waiting, give_up = 0, time.monotonic() + 180  # a bound for a failing run, not a speed asserted
    while waiting < len(polls) and time.monotonic() < give_up:
        waiting = presenter.submit(api_name="/class_state").result(timeout=180)["waiting"]
    assert waiting == len(polls), "some polls found no job slot to wait in"
    pushed = presenter.predict("?tab=attention&layer=3", api_name="/show_view")
    assert [poll.result(timeout=120) for poll in polls] == [pushed] * len(polls)
    presenter.predict(api_name="/end_class")
    follower.close()

"""LoRA on a shared server (issue 17; issue 24 item 1, model poisoning): each visitor trains their own
adapter, uses it in their own tabs only, cannot cancel, download or publish anyone else's, and cannot
load a merged model by name; seeded /next_token of another visitor is compared before, during and after."""

from __future__ import annotations

import time

import pytest

from conftest import PRESENTER_KEY

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def train_args(steps: int = 2, learning_rate: float = 2e-2) -> list:
    return ["pirate", None, 8, 16, 0.0, ["q_proj", "v_proj"], learning_rate, "constant", 0, "steps", steps, 1, 2, 1,
            64, 0, True, steps]


def next_token(client):
    _, _, _, data = client.predict(PROMPT, False, 0.8, 40, 0.95, 0.0, 1.0, 7, 10, api_name="/next_token")
    return [(token["text"], round(token["probs"]["raw"], 6)) for token in data["tokens"]]


@pytest.fixture(scope="module")
def visitors(classroom_app):
    from gradio_client import Client

    url, _ = classroom_app
    return {name: Client(url, verbose=False) for name in ("presenter", "alice", "bob")}


def test_a_visitors_adapter_stays_theirs(visitors):
    from gradio_client.exceptions import AppError

    alice, bob, presenter = visitors["alice"], visitors["bob"], visitors["presenter"]
    before = next_token(bob)
    run = alice.submit(*train_args(steps=200, learning_rate=1e-2), api_name="/train_lora")
    started = None
    for _ in range(600):  # wait (bounded: 5 minutes) until alice's run has a job id and a first step
        outputs = run.outputs()
        if outputs and outputs[-1][-1].get("step"):
            started = outputs[-1][-1]
            break
        time.sleep(0.5)
    assert started is not None
    job_id = started["job_id"]
    assert next_token(bob) == before  # during alice's run
    with pytest.raises(AppError, match="Only the presenter can cancel another visitor's training run"):
        bob.predict(job_id, api_name="/cancel_lora")
    assert bob.predict("", api_name="/cancel_lora")["cancelled"] is False  # bob has no run of his own
    assert alice.predict("", api_name="/cancel_lora")["cancelled"] is True  # the owner cancels
    run.result(timeout=300)
    with pytest.raises(AppError, match="No adapter of yours yet"):
        bob.predict(api_name="/download_adapter")
    with pytest.raises(AppError, match="Only the presenter can publish an adapter"):
        alice.predict(api_name="/merge_lora")
    message, info = alice.predict(api_name="/use_lora")
    assert info["private"] is True and "other visitors still use the base model" in message
    assert next_token(alice) != before and next_token(bob) == before
    with pytest.raises(AppError, match="Unknown model 'smollm2-135m-instruct\\+lora:"):
        bob.predict(info["model"], "auto", "cpu", api_name="/load_model")  # a private copy is in no one's reach
    alice.predict(api_name="/unload_lora")
    assert next_token(alice) == before and next_token(bob) == before
    presenter.predict(PRESENTER_KEY, api_name="/presenter_login")
    assert presenter.predict("", api_name="/cancel_lora")["cancelled"] is False

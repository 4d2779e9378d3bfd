"""The Inside tab's endpoints, driven through gradio_client like a script would."""

from __future__ import annotations

import time

import pytest
import torch

pytestmark = pytest.mark.slow

PROMPT = "The Eiffel Tower is in the city of"


def test_logit_lens_returns_raw_numbers(client, real_model):
    status, _heatmap, _curves, data, _position = client.predict(PROMPT, "final_rank", 1.0, 5, 1.0, 0.0,
                                                                api_name="/logit_lens")
    n = len(data["tokens"])
    assert len(data["depths"]) == 31 and len(data["top_probs"][0]) == n and len(data["top_probs"][0][0]) == 5
    assert data["final_tokens"][-1] == "·Paris" and "Paris" in status
    assert all(rank == 1 for rank in data["final_ranks"][-1])
    with torch.no_grad():
        logits = real_model.model(torch.tensor([data["token_ids"]])).logits[0, -1]
    # 5e-5: float32 rounding only. The lens runs the head on blocks of ~256 normed rows (the forward: one row),
    # and reads probabilities as e^d / S; seen up to 2.8e-5 apart on this model.
    assert abs(data["top_probs"][-1][-1][0] - float(logits.softmax(-1).max())) < 5e-5
    assert data["kept_by_sampling"][-1] <= 5  # top-k 5


def test_ablate_and_head_importance(client):
    _status, _plot, data = client.predict(PROMPT, "12.4, 20.*", [], [3], "zero", 4, api_name="/ablate")
    assert [p["name"] for p in data["parts"]][:2] == ["L12H4", "L20H0"] and data["kl_before_after"] > 0
    assert data["parts"][-1]["name"] == "MLP of layer 3"
    _status, _plot, importance = client.predict(PROMPT, "zero", api_name="/head_importance")
    assert len(importance["kl"]) == 30 and len(importance["kl"][0]) == 9 and importance["batched_forwards"] == 30


def test_attribute_reports_completeness_and_the_precision(client):
    status, _plot, data = client.predict(PROMPT, "", "", 32, api_name="/attribute")
    assert data["target"]["token"] == "·Paris" and data["precision"]["precision"].startswith("fp32")
    assert "Completeness" in status and "no backward" in status
    assert len(data["integrated_gradients"]) == len(data["leave_one_out"]) == len(data["tokens"])


@pytest.mark.parametrize("args,api,message", [
    (("", "", [], [], "zero", 4), "/ablate", "Type a prompt first"),
    ((PROMPT, "3.12", [], [], "zero", 4), "/ablate", r"Head 12 of layer 3 is out of range"),
    ((PROMPT, ",".join(["1.1"] * 10_000), [], [], "zero", 4), "/ablate", r"at most 300 at once"),
    ((PROMPT, "Xyzzyplughq", "", 32), "/attribute", "not one token of this vocabulary"),
])
def test_bad_input_is_a_clear_error(client, args, api, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name=api)


def test_stop_ends_the_callers_importance_map_and_not_another_visitors(app_url):
    """Two visitors map head importance at once; one presses Stop. Theirs ends (gradio drops it, and the server's
    thread ends before its next layer, freeing the model's lock); the other visitor's map runs to its end."""
    from gradio_client import Client
    from gradio_client.utils import Status

    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    long_prompt = " ".join([PROMPT] * 3)  # 27 tokens: each map takes seconds, so both are still running at Stop
    alices = alice.submit(long_prompt, "zero", api_name="/head_importance")
    bobs = bob.submit(long_prompt, "zero", api_name="/head_importance")
    deadline = time.monotonic() + 120
    # both maps are being computed (two long jobs run at once; their layers take the model's lock in turn)
    while not (alices.status().progress_data and bobs.status().progress_data):
        assert time.monotonic() < deadline and not alices.done(), (alices.status(), bobs.status())
        time.sleep(0.05)
    importance_status, _attribution_status = alice.predict(api_name="/stop_inside")
    assert importance_status.startswith("⏹ Stopping")
    _status, _plot, data = bobs.result(timeout=300)
    assert "stopped" not in data and len(data["kl"]) == 30, data
    deadline = time.monotonic() + 60
    while alices.status().code not in (Status.FINISHED, Status.CANCELLED):
        assert time.monotonic() < deadline, alices.status()
        time.sleep(0.05)

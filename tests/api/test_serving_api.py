"""The Serving tab's endpoints through gradio_client on the real model: raw numbers that add up (tokens/s =
batch / step time, measured KV bytes = formula), a simulation on given step costs, the block table, and a
bad input's clear message."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

pytestmark = pytest.mark.slow

REQUESTS = "5, 3, 9"


def test_serving_batching_returns_the_raw_curve(client):
    outputs = client.predict("The sky is blue because", [1, 4], 2, REQUESTS, 2, 4, 12, api_name="/serving_batching")
    batching, kv, schedule, paged = outputs[-4:]
    assert [p["batch"] for p in batching["points"]] == [1, 4]
    for point in batching["points"]:
        assert point["total_tokens_per_second"] == pytest.approx(point["batch"] / point["step_seconds"])
        assert point["kv_cache"]["measured_bytes"] == point["kv_cache"]["formula_bytes"]
    # SmolLM2-135M: 30 layers x 3 KV heads x 64 dims x 2 (K and V) x 4 bytes (fp32 cache)
    assert kv["bytes_per_token"] == 2 * 30 * 3 * 64 * 4 and kv["free_bytes"] > 0
    assert schedule["simulation"] is True and paged["block_table"] == [[0, 3], [1], [2, 4, 5]]


def test_serving_schedule_and_paged_are_pure(client):
    figure, table, data = client.predict(REQUESTS, 2, "1:10, 2:15", api_name="/serving_schedule")
    assert data["static"]["total_seconds"] == pytest.approx(0.165)
    assert data["continuous"]["total_steps"] == 12  # request 2 (9 tokens) takes request 1's slot at step 3
    figure, data = client.predict(REQUESTS, 4, 12, api_name="/serving_paged")
    assert data["wasted_tokens_paged"] == 7 and data["wasted_bytes_reserved"] == 19 * data["bytes_per_token"]


def test_serving_kv_cache_and_a_bad_request(client):
    figure, data = client.predict("The sky is blue because", 2, 64, api_name="/serving_kv_cache")
    assert [p["tokens"] for p in data["points"]] == [16, 32, 64]
    assert all(p["measured_bytes"] == p["formula_bytes"] for p in data["points"])
    with pytest.raises(AppError, match="whole number of tokens"):
        client.predict("3, lots", 2, "1:10", api_name="/serving_schedule")

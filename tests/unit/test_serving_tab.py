"""The Serving tab's handlers (ServingHandlers, called directly) on the tiny model: the main run (measured
curve -> KV report, simulation and block table), the KV-cache measurement, the pure views, clear errors,
stop, the engine hook's honest note; the wiring."""

from __future__ import annotations

import json

import gradio as gr
import plotly.graph_objects as go
import pytest

from playground.limits import PUBLIC_LIMITS
from playground.serving import formula_cache_bytes
from playground.serving.kv_memory import AttentionShape
from playground.ui import serving_tab

REQUESTS = "5, 3, 9"


@pytest.fixture(scope="module")
def handlers(tiny_context):
    return serving_tab.ServingHandlers(tiny_context)


@pytest.fixture(scope="module")
def demo(tiny_context):
    with gr.Blocks() as demo:
        serving_tab.create_serving_tab(tiny_context)
    return demo


def test_the_tab_has_its_api_endpoints(demo):
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    assert {"serving_batching", "serving_kv_cache", "serving_schedule", "serving_paged", "stop_serving"} <= names


def test_measure_runs_the_curve_and_drives_the_simulation_with_it(handlers, tiny_loaded):
    (status, batching_plot, rows, kv_plot, schedule_plot, schedule_rows, paged_plot, costs, batching, kv, schedule,
     paged) = handlers.measure("The capital of France", [1, 2, 4], 2, REQUESTS, 2, 4, 12)
    assert "Measured on" in status and all(isinstance(f, go.Figure) for f in
                                           (batching_plot, kv_plot, schedule_plot, paged_plot))
    assert [p["batch"] for p in batching["points"]] == [row[0] for row in rows] == [1, 2, 4]
    assert all(row[-1] == "yes" for row in rows)  # measured KV bytes == formula at every batch size
    # the simulation runs on exactly the measured step costs (ms to 0.01 in the text box)
    measured = {str(p["batch"]): p["step_seconds"] for p in batching["points"]}
    for batch, seconds in schedule["step_costs_seconds"].items():
        assert seconds == pytest.approx(measured[batch], abs=1e-5)
    assert costs.count(":") == 3 and schedule["simulation"] is True
    assert schedule["continuous"]["total_seconds"] <= schedule["static"]["total_seconds"]
    assert [r["length"] for r in schedule["static"]["requests"]] == [5, 3, 9]
    assert paged["block_table"] == [[0, 3], [1], [2, 4, 5]]
    assert kv["points"] == [p["kv_cache"] for p in batching["points"]]
    json.dumps([batching, kv, schedule, paged])  # plain JSON for the API and the export


def test_kv_cache_measures_one_prefill_and_its_crops(handlers, tiny_loaded):
    figure, data = handlers.kv_cache("The capital of France", 3, 40)
    shape = AttentionShape.from_config(tiny_loaded.model.config)
    assert [(p["batch"], p["tokens"]) for p in data["points"]] == [(3, 10), (3, 20), (3, 40)]
    for point in data["points"]:
        assert point["measured_bytes"] == point["formula_bytes"] == formula_cache_bytes(shape, point["tokens"], 3, 4)
    assert data["bytes_per_token"] == formula_cache_bytes(shape, 1, 1, 4)
    assert data["tokens_that_fit"] == data["free_bytes"] // data["bytes_per_token"] > 0
    assert isinstance(figure, go.Figure)


def test_pure_views_need_no_forward(handlers):
    figure, rows, data = handlers.schedule(REQUESTS, 2, "1:10, 2:15")
    assert [row[0] for row in rows] == ["static", "continuous"]
    assert data["static"]["total_seconds"] == pytest.approx(0.015 * 5 + 0.010 * 9)  # {5, 3}: 5 steps of 2 rows; {9}: 9 of 1
    figure, data = handlers.paged(REQUESTS, 4, 12)
    assert data["wasted_tokens_paged"] == 7 and data["wasted_tokens_reserved"] == 19


@pytest.mark.parametrize("call, message", [
    (lambda h: h.schedule("", 2, "1:10"), "lengths in tokens"),
    (lambda h: h.schedule("3, x", 2, "1:10"), "whole number of tokens"),
    (lambda h: h.schedule("3", 2, ""), "step costs"),
    (lambda h: h.schedule("3", 0, "1:10"), "Batch slots"),
    (lambda h: h.paged("30", 16, 20), "longest request"),
    (lambda h: h.measure("", [1], 2, "3", 2, 4, 12), "Type a prompt"),
    (lambda h: h.measure("hi", [], 2, "3", 2, 4, 12), "at least one batch size"),
    (lambda h: h.measure("hi", [1, 128], 2, "3", 2, 4, 12), "1..64"),
    (lambda h: h.measure("hi", [1], 1000, "3", 2, 4, 12), "Decode steps"),
    (lambda h: h.measure("hi", [1], 2, "", 2, 4, 12), "lengths in tokens"),  # refused before any timing
    (lambda h: h.kv_cache("hi", 64, 4096), "at most 16,384"),
])
def test_bad_input_gets_a_clear_message(handlers, call, message):
    with pytest.raises(gr.Error, match=message):
        call(handlers)


def test_public_limits_are_tighter(stub_context, tiny_loaded):
    public = serving_tab.ServingHandlers(stub_context(tiny_loaded, public=True))
    with pytest.raises(gr.Error, match=f"1..{PUBLIC_LIMITS.serving_batch}"):
        public.measure("hi", [64], 2, "3", 2, 4, 12)


def test_stop_cancels_the_callers_run(handlers, tiny_loaded):
    assert handlers.stop() in ("Nothing is running.", "⏹ Stopping after the current batch size…")
    original = handlers.stops.fresh

    def cancelled(request):
        event = original(request)
        event.set()
        return event

    handlers.stops.fresh = cancelled
    try:
        status, *_ = handlers.measure("hi", [1, 2], 2, "3", 2, 4, 12)
    finally:
        handlers.stops.fresh = original
    assert status.startswith("⏹ Stopped")


def test_a_stop_after_the_run_ended_says_nothing_is_running(handlers, tiny_loaded):
    handlers.measure("hi", [1], 1, "3", 2, 4, 12)
    assert handlers.stop() == "Nothing is running."


def test_with_an_engine_the_tab_says_its_curve_is_local_and_reads_the_engines_load(stub_context, tiny_loaded):
    from types import SimpleNamespace

    ctx = stub_context(tiny_loaded)
    assert serving_tab.ServingHandlers(ctx).engine_note() == ""  # no engine: nothing to say
    with pytest.raises(Exception, match="No engine is connected"):
        serving_tab.ServingHandlers(ctx).engine_metrics()
    reads = []

    class Client:
        url = "http://127.0.0.1:8000"

        def metrics(self):
            reads.append(1)
            return {'vllm:num_requests_running{engine="0"}': 2.0, 'vllm:num_requests_waiting{engine="0"}': 5.0,
                    'vllm:kv_cache_usage_perc{engine="0"}': 0.5, 'vllm:generation_tokens_total{engine="0"}': 99.0}

    object.__setattr__(ctx, "engine", SimpleNamespace(client=Client()))
    clock = [0.0]
    handlers = serving_tab.ServingHandlers(ctx, clock=lambda: clock[0])
    note = handlers.engine_note()
    assert "127.0.0.1:8000" in note and "not measured here" in note
    text, data = handlers.engine_metrics()
    assert (data["running"], data["waiting"], data["kv_cache_usage"]) == (2.0, 5.0, 0.5)
    assert "**2** requests running" in text and "**5** waiting" in text and "50.0%" in text
    handlers.engine_metrics()  # many pages within one interval: one read of /metrics
    clock[0] += serving_tab.ENGINE_METRICS_SECONDS
    handlers.engine_metrics()
    assert len(reads) == 2

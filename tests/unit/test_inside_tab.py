"""The Inside tab's handlers on the tiny model (a stub AppContext), the figures they return, and the refusals."""

from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go
import pytest

from playground.ui.inside_tab import InsideHandlers

PROMPT = "The capital of France is Paris. The capital of Italy is"


@pytest.fixture(scope="module")
def handlers(tiny_context):
    return InsideHandlers(tiny_context)


def test_lens_returns_figures_json_and_the_commit(handlers):
    status, heatmap, curves, data, position = handlers.show_lens(PROMPT, "final_rank", 0.8, 5, 0.9, 0.0)
    assert isinstance(heatmap, go.Figure) and isinstance(curves, go.Figure)
    n = len(data["tokens"])
    assert len(data["depths"]) == 3 and len(data["top_tokens"][0]) == n and position["value"] == n - 1
    assert "Next token" in status and "keeps" in status
    assert data["sampling"] == {"temperature": 0.8, "top_k": 5, "top_p": 0.9, "min_p": 0.0}
    names = [trace.name for trace in heatmap.data]
    assert "final token stays top-1 from here" in names
    # moving the position reuses the cached lens (the model is not run again)
    runs = len(handlers.lenses)
    assert isinstance(handlers.show_position(PROMPT, 0.8, 5, 0.9, 0.0, 2), go.Figure)
    assert len(handlers.lenses) == runs


def test_a_sampling_move_reuses_the_lens_and_marks_what_those_settings_cut(handlers, tiny_context):
    """Sampling settings change only the ✕ marks and the kept counts: moving them does not run the model again,
    and the marks equal a lens computed from scratch with those settings."""
    from playground import inside
    from playground.sampling_pipeline import SamplingSettings

    loaded = tiny_context.model()
    handlers.show_lens(PROMPT, "top_prob", 1.0, 0, 1.0, 0.0)
    forwards = []
    hook = loaded.model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        *_, data, _position = handlers.show_lens(PROMPT, "top_prob", 0.7, 1, 0.9, 0.05)
    finally:
        hook.remove()
    assert forwards == []
    prompt = inside.encode(loaded.tokenizer, PROMPT, tiny_context.limits.inside_lens_tokens)
    fresh = inside.lens_json(inside.logit_lens(loaded.model, loaded.tokenizer, prompt,
                                               SamplingSettings(temperature=0.7, top_k=1, top_p=0.9, min_p=0.05)))
    assert data == fresh and max(data["kept_by_sampling"]) == 1  # top-k 1: the settings were applied


def test_empty_prompt_is_an_empty_state_not_an_error(handlers):
    status, *_ , data, _position = handlers.show_lens("  ", "top_prob", 1, 0, 1, 0)
    assert data["empty"] is True and "Type a prompt" in status


def test_ablation_and_importance(handlers):
    status, figure, data = handlers.ablate(PROMPT, "1.0, 0.*", [1], [], "zero", 4)
    assert [p["name"] for p in data["parts"]][:2] == ["L0H0", "L0H1"] and "KL(before ‖ after)" in status
    status, figure, data = handlers.head_importance(PROMPT, "mean")
    assert len(data["kl"]) == 2 and len(data["kl"][0]) == 4 and "batched forwards" in status


def test_attribution_says_which_precision_gave_the_gradients(handlers):
    status, figure, data = handlers.attribute(PROMPT, "", "", 16)
    assert "Completeness" in status and "loaded model itself (fp32)" in status
    assert data["precision"]["precision"] == "fp32" and data["completeness_error"] < 0.01
    assert len(data["integrated_gradients"]) == len(data["leave_one_out"]) == len(data["tokens"])


def test_stop_reaches_the_callers_running_job_only(handlers):
    """Stop tells the caller's running importance map or attribution to end after its current step; the page
    learns so, and a Stop with nothing running changes nothing."""
    assert handlers.stop() == (gr.skip(), gr.skip())

    class StopAtOnce(gr.Progress):
        def __call__(self, value, desc=None, unit=None, **_):
            if value[0]:  # the first layer / step batch is done: the visitor presses Stop
                assert handlers.stop()[0 if unit == "layers" else 1].startswith("⏹ Stopping")

    stop_at_once = StopAtOnce()

    status, figure, data = handlers.head_importance(PROMPT, "mean", progress=stop_at_once)
    assert status.startswith("⏹ Stopped after 1 of 2 layers") and data == {"stopped": True, "done": 1, "total": 2}
    status, figure, data = handlers.attribute(PROMPT, "", "", 64, progress=stop_at_once)
    assert status.startswith("⏹ Stopped after 16 of 64 steps") and data["stopped"] is True
    assert handlers.stop() == (gr.skip(), gr.skip())  # both ended: nothing left to stop
    status, _, data = handlers.head_importance(PROMPT, "mean")  # the next run is not stopped by the last Stop
    assert len(data["kl"]) == 2


@pytest.mark.parametrize("call,message", [
    (lambda h: h.ablate(PROMPT, "1.9", [], [], "zero", 4), r"Head 9 of layer 1 is out of range"),
    (lambda h: h.ablate(PROMPT, ",".join(["0.0"] * 10_000), [], [], "zero", 4), r"at most 300 at once"),
    (lambda h: h.ablate(PROMPT, "", [], [], "zero", 4), r"Pick what to switch off"),
    (lambda h: h.ablate("", "0.0", [], [], "zero", 4), r"Type a prompt first"),
    (lambda h: h.ablate(PROMPT, "0.0", [], [], "zero", 10_000), r"new tokens must be a whole number in 1..32"),
    (lambda h: h.attribute(PROMPT, "xqzjvwk", "", 16), r"not one token of this vocabulary"),
    (lambda h: h.attribute(PROMPT, "", "", 100_000), r"steps must be a whole number in 1..128"),
    (lambda h: h.head_importance(PROMPT, "shrink"), r"Mode must be one of zero, mean"),
])
def test_bad_input_gets_a_clear_message(handlers, call, message):
    with pytest.raises(gr.Error, match=message):
        call(handlers)

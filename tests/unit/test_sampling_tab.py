"""The Sampling tab's handlers (SamplingHandlers, called directly) on the tiny model: API names, JSON shapes,
the empty state, errors as messages, the logits cache behind the sliders, and trace -> force round trips."""

from __future__ import annotations

import math

import gradio as gr
import pytest

from playground.ui.sampling_tab import EMPTY_MESSAGE, SamplingHandlers, create_sampling_tab

SETTINGS = ("The capital of France is", False, 1.2, 0, 0.9, 0.0, 1.0, 0)  # prompt, chat, T, k, p, min-p, penalty, seed


@pytest.fixture(scope="module")
def tab(tiny_context, tiny_loaded):
    forwards = []
    hook = tiny_loaded.model.register_forward_hook(lambda module, args, output: forwards.append(1))  # model calls
    with gr.Blocks() as demo:
        components = create_sampling_tab(tiny_context)
    yield {"handlers": SamplingHandlers(tiny_context), "components": components, "forwards": forwards, "demo": demo}
    hook.remove()


def test_public_api_names(tab):
    config = tab["demo"].get_config_file()
    public = {d["api_name"] for d in config["dependencies"] if d.get("api_visibility", "public") == "public"}
    assert {"next_token", "draw_samples", "generate_trace", "force_token"} <= public
    assert not any(name.startswith("next_token_") for name in public)  # slider events stay private


def test_next_token_json_has_every_stage_and_sliders_reuse_the_cached_logits(tab):
    next_token = tab["handlers"].next_token
    stage_plot, stats, sweep_plot, data = next_token(*SETTINGS, 10)
    assert data["stages"] == ["raw", "repetition_penalty", "temperature", "top_k", "top_p", "min_p"]
    top = data["tokens"][0]
    assert set(top) == {"token_id", "text", "rank", "probs", "cut_by"} and set(top["probs"]) == set(data["stages"])
    assert {"entropy_bits", "nucleus_size", "kept", "mass_kept", "chosen", "temperature_sweep"} <= set(data)
    assert "Entropy" in stats and "nucleus" in stats
    assert stage_plot.layout.title.text and sweep_plot.layout.title.text
    before = len(tab["forwards"])
    for temperature in (0.3, 0.9, 2.0):  # moving a slider: no model call
        _, _, _, moved = next_token("The capital of France is", False, temperature, 20, 0.5, 0.05, 1.3, 1, 10)
        assert moved["settings"]["temperature"] == temperature
    assert len(tab["forwards"]) == before


def test_empty_prompt_is_a_friendly_empty_state(tab):
    _, stats, _, data = tab["handlers"].next_token("  ", False, 1.0, 0, 1.0, 0.0, 1.0, 0, 10)
    assert stats == EMPTY_MESSAGE and data == {"empty": True, "message": EMPTY_MESSAGE}
    _, samples = tab["handlers"].draw_samples("", False, 1.0, 0, 1.0, 0.0, 1.0, 0, 100)
    assert samples["empty"]


@pytest.mark.parametrize("values, message", [
    ((math.nan, 0, 1.0, 0.0, 1.0, 0), "temperature must be a finite number"),
    ((-1.0, 0, 1.0, 0.0, 1.0, 0), "temperature must be >= 0"),
    ((1.0, 0, 0.0, 0.0, 1.0, 0), r"top_p must be in \(0, 1\]"),
    ((1.0, -2, 1.0, 0.0, 1.0, 0), "top_k must be a whole number >= 0"),
])
def test_bad_settings_reach_the_user_as_messages(tab, values, message):
    with pytest.raises(gr.Error, match=message):
        tab["handlers"].next_token("Hello", False, *values, 10)


def test_top_k_beyond_the_vocabulary_is_clamped_with_a_note(tab):
    _, stats, _, data = tab["handlers"].next_token("Hello", False, 1.0, 10**6, 1.0, 0.0, 1.0, 0, 10)
    assert any("clamped to 300" in note for note in data["notes"]) and "clamped to 300" in stats


def test_draw_samples_counts_and_replays(tab):
    draw = tab["handlers"].draw_samples
    hot = ("The capital of France is", False, 3.0, 0, 1.0, 0.0, 1.0, 0)  # spread out: many bins to test
    _, first = draw(*hot, 3000)
    _, again = draw(*hot, 3000)
    assert first == again and sum(first["counts"]) + first["other_count"] == 3000
    assert first["chi_square"]["p_value"] > 1e-3
    with pytest.raises(gr.Error, match="number of samples must be a whole number"):
        draw(*SETTINGS, 0)


def test_generate_then_force_a_token(tab):
    outputs = tab["handlers"].generate_trace(*SETTINGS, 10, True)
    sampled_text, greedy_text, _, position, _, alternative, data = outputs
    trace = data["trace"]
    assert len(trace["steps"]) == len(sampled_text) == 10 and len(greedy_text) == len(data["greedy"]["steps"])
    assert data["greedy"]["settings"]["temperature"] == 0.0
    step = trace["steps"][4]
    assert {"token_id", "text", "prob", "raw_prob", "rank", "alternatives"} <= set(step)
    forced_id = next(alt["token_id"] for alt in step["alternatives"] if alt["token_id"] != step["token_id"])
    branched = tab["handlers"].force_token(data, 4, forced_id)
    new = branched[6]["trace"]
    assert [s["token_id"] for s in new["steps"][:4]] == [s["token_id"] for s in trace["steps"][:4]]
    assert new["steps"][4]["token_id"] == forced_id and new["steps"][4]["forced"]
    assert branched[6]["greedy"] == data["greedy"] and branched[3].value == 4


def test_force_needs_a_trace_and_the_same_model(tab):
    force = tab["handlers"].force_token
    with pytest.raises(gr.Error, match="Generate a trace first"):
        force(None, 0, 5)
    data = tab["handlers"].generate_trace(*SETTINGS, 3, False)[6]
    assert data["greedy"] is None
    stale = {**data, "trace": {**data["trace"], "model_key": "another-model|fp32|cpu"}}
    with pytest.raises(gr.Error, match="model changed"):
        force(stale, 0, data["trace"]["steps"][0]["alternatives"][1]["token_id"])

"""The Sampling tab's handlers (SamplingHandlers, called directly) on the tiny model: API names, JSON shapes,
the empty state, errors as messages, the logits cache behind the sliders, and trace -> force round trips."""

from __future__ import annotations

import math

import gradio as gr
import pytest

from playground.ui.sampling_tab import EMPTY_MESSAGE, SamplingHandlers, create_sampling_tab

SETTINGS = ("The capital of France is", False, 1.2, 0, 0.9, 0.0, 1.0, 0)  # prompt, chat, T, k, p, min-p, penalty, seed


def final(outputs):
    """A streaming handler's last yield: the finished view."""
    *_, last = outputs
    return last


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
    ((math.nan, 0, 1.0, 0.0, 1.0, 0), r"Input 3 \(temperature\) must be a finite number"),
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
    outputs = final(tab["handlers"].generate_trace(*SETTINGS, 10, True))
    sampled_text, greedy_text, _, position, _, alternative, data = outputs
    trace = data["trace"]
    assert len(trace["steps"]) == len(sampled_text) == 10 and len(greedy_text) == len(data["greedy"]["steps"])
    assert data["greedy"]["settings"]["temperature"] == 0.0
    step = trace["steps"][4]
    assert {"token_id", "text", "prob", "raw_prob", "rank", "alternatives"} <= set(step)
    forced_id = next(alt["token_id"] for alt in step["alternatives"] if alt["token_id"] != step["token_id"])
    branched = final(tab["handlers"].force_token(data, 4, forced_id))
    new = branched[6]["trace"]
    assert [s["token_id"] for s in new["steps"][:4]] == [s["token_id"] for s in trace["steps"][:4]]
    assert new["steps"][4]["token_id"] == forced_id and new["steps"][4]["forced"]
    assert branched[6]["greedy"] == data["greedy"] and branched[3].value == 4


def test_force_needs_a_trace_and_the_same_model(tab):
    force = tab["handlers"].force_token
    with pytest.raises(gr.Error, match="Generate a trace first"):
        final(force(None, 0, 5))
    data = final(tab["handlers"].generate_trace(*SETTINGS, 3, False))[6]
    assert data["greedy"] is None
    stale = {**data, "trace": {**data["trace"], "model_key": "another-model|fp32|cpu"}}
    with pytest.raises(gr.Error, match="model changed"):
        final(force(stale, 0, data["trace"]["steps"][0]["alternatives"][1]["token_id"]))


def _tampered(data, **changes):
    """The trace JSON a client sends back, with some fields changed (copied: the original stays valid)."""
    import copy

    trace = copy.deepcopy(data["trace"])
    for path, value in changes.items():
        target = trace
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return {**data, "trace": trace}


@pytest.mark.parametrize("changes, message", [
    ({"prompt_ids": list(range(9000))}, r"prompt_ids has 9,000 tokens; .* at most 512"),
    ({"prompt_ids": [1, 10**9]}, r"prompt_ids\[1\] is 1000000000, not a token id of this model \(0\.\.\d+\)"),
    ({"prompt_ids": [1, "a"]}, r"prompt_ids\[1\] must be a whole number"),
    ({"prompt_ids": []}, r"prompt_ids must not be empty"),
    ({"max_new_tokens": 10**6}, r"max_new_tokens is 1000000, out of range \(1\.\.128\)"),
    ({"steps": "x"}, r"steps must be a list"),
    ({"steps__0__alternatives__1__token_id": 10**9}, r"steps\[0\]\.alternatives\[1\]\.token_id is 1000000000"),
    ({"steps__0__alternatives": [{"token_id": 1}] * 5000}, r"steps\[0\]\.alternatives has 5,000 items; .* at most 64"),
    ({"steps__0__token_id": -1}, r"steps\[0\]\.token_id is -1"),
    ({"steps__0__prob": "high"}, r"steps\[0\]\.prob must be a number"),
    ({"settings": {"temperature": "hot"}}, r"temperature must be a finite number"),
    ({"settings": [1]}, r"settings must be a JSON object"),
    ({"text": 5}, r"text must be text"),
])
def test_force_token_refuses_tampered_trace_json_by_field(tab, changes, message):
    """Issue 24 #4: force_token trusted the trace a client sends back: 9,000 prompt ids ran 79 s past the
    context and the 512-token cut, an id of 10**9 gave "Something went wrong (IndexError)"."""
    data = final(tab["handlers"].generate_trace(*SETTINGS, 3, False))[6]
    forced = data["trace"]["steps"][0]["alternatives"][1]["token_id"]
    before = len(tab["forwards"])
    with pytest.raises(gr.Error, match=message):
        final(tab["handlers"].force_token(_tampered(data, **changes), 0, forced))
    assert len(tab["forwards"]) == before  # refused before any forward


def test_force_token_refuses_more_steps_than_the_trace_allows_and_a_tampered_greedy_trace(tab):
    data = final(tab["handlers"].generate_trace(*SETTINGS, 3, False))[6]
    forced = data["trace"]["steps"][0]["alternatives"][1]["token_id"]
    too_many = _tampered(data, steps=data["trace"]["steps"] * 2)
    with pytest.raises(gr.Error, match=r"steps has 6 items; .* at most 3 \(its max_new_tokens\)"):
        final(tab["handlers"].force_token(too_many, 0, forced))
    with pytest.raises(gr.Error, match=r"greedy.*prompt_ids\[0\] is 1000000000"):
        final(tab["handlers"].force_token({**data, "greedy": {**data["trace"], "prompt_ids": [10**9]}}, 0, forced))
    with pytest.raises(gr.Error, match=r"token id .* got 1e\+300|token 10{300}|whole number"):
        final(tab["handlers"].force_token(data, 0, str(10**300)))
    with pytest.raises(gr.Error, match=r"Input 2 \(position\) must be a finite number"):
        final(tab["handlers"].force_token(data, math.nan, forced))
    with pytest.raises(gr.Error, match=r"prompt_ids\[0\]"):
        tab["handlers"].show_step(_tampered(data, prompt_ids=[10**9]), 0)


def test_step_through_generation_streams_every_token_in_order_and_ends_on_the_plain_result(tab, tiny_context,
                                                                                          tiny_loaded):
    """The trace used to appear only after all tokens and the greedy run (50 s on the real model)."""
    from playground import sampling as smp
    from playground.ui.sampling_tab import model_key

    views = list(tab["handlers"].generate_trace(*SETTINGS, 6, True))
    traces = [view[6]["trace"] for view in views]
    greedy = [view[6]["greedy"] for view in views]
    sampled = [t for t, g in zip(traces, greedy) if g is None]  # the sampled run streams first, greedy after
    assert [len(t["steps"]) for t in sampled] == list(range(1, len(sampled) + 1))  # one more token per yield
    assert all(t["finish_reason"] == smp.traces.GENERATING for t in sampled[:-1])
    assert sampled[-1]["finish_reason"] in ("length", "eos")
    for earlier, later in zip(sampled, sampled[1:]):
        assert later["steps"][:len(earlier["steps"])] == earlier["steps"]  # a prefix, never rewritten
    assert [len(g["steps"]) for g in greedy if g is not None] == list(range(1, len(greedy) - len(sampled) + 1))
    assert all(t == sampled[-1] for t in traces[len(sampled):])  # the sampled text stays while greedy streams
    # the last view equals the non-streamed traces (timings aside)
    settings = smp.SamplingSettings(temperature=1.2, top_p=0.9, seed=0)
    _, cached = tab["handlers"].prompt_logits(SETTINGS[0], False)
    plain = smp.trace_generation(tiny_loaded.model, tiny_loaded.tokenizer, cached.input_ids, settings, 6,
                                 tiny_loaded.eos_token_ids, tiny_loaded.lock, model_key(tiny_loaded)).to_dict()
    streamed = {**views[-1][6]["trace"], "seconds": plain["seconds"]}
    assert streamed == plain
    assert views[-1][0] == final(tab["handlers"].generate_trace(*SETTINGS, 6, True))[0]


def _events(demo):
    """(trigger labels, handler name, output labels) per event of the tab, and the chained event after each."""
    blocks = {block._id: block for block in demo.blocks.values()}
    events = {}
    for fn in demo.fns.values():
        triggers = tuple(sorted(f"{blocks[target].label}.{event}" for target, event in fn.targets if target in blocks))
        events[fn._id] = (triggers, fn.name, tuple(getattr(block, "label", None) for block in fn.outputs),
                          fn.trigger_after)
    return events


def _chain(demo, trigger: str) -> list[tuple[str, tuple]]:
    """The handler names and output labels a control's move runs, in order (its event, then each `.then`)."""
    events = _events(demo)
    first = next(i for i, (triggers, *_) in events.items() if trigger in triggers)
    chain = [first]
    while follow := [i for i, (*_, after) in events.items() if after == chain[-1]]:
        chain.append(follow[0])
    return [(events[i][1], events[i][2]) for i in chain]


def test_a_settings_move_redraws_the_stage_chart_first_and_then_only_what_depends_on_it(tab):
    """The stage chart is its own first event (painted before the rest arrives); the sweep (fixed temperatures,
    no draws) is not re-sent for a temperature or seed move; the draws follow every setting but the tokens shown."""
    demo = tab["demo"]
    stage = ("stage_view", ("Stage by stage", None))
    numbers = ("raw_numbers", ("next_token",))
    sweep = ("sweep_view", ("Temperature sweep", "next_token"))
    draws = ("draw_samples", ("Samples vs the math", "draw_samples"))
    painted = (None, ())  # a step in the page: the rest waits until the stage chart is painted
    for control in ("Temperature T (0 = greedy).change", "Seed (blank = random).change"):
        assert _chain(demo, control) == [stage, painted, numbers, draws], control
    assert _chain(demo, "Tokens to show.change") == [stage, painted, numbers]
    for control in ("Top-k (0 = off)", "Top-p (1 = off)", "Min-p (0 = off)", "Repetition penalty (1 = off)",
                    "Wrap in the chat template (as a user message)"):
        assert _chain(demo, f"{control}.change") == [stage, painted, sweep, draws], control


def test_a_moves_events_together_equal_the_button_and_compute_the_sweep_once_per_setting(tab, monkeypatch):
    from playground import sampling as smp

    handlers = SamplingHandlers(tab["handlers"].ctx)
    sweeps = []
    real_sweep = smp.temperature_sweep
    monkeypatch.setattr(smp, "temperature_sweep",
                        lambda *args, **kwargs: sweeps.append(1) or real_sweep(*args, **kwargs))
    settings = ("The capital of France is", False, 0.8, 0, 0.95, 0.0, 1.0, 0, 10)
    stage_plot, stats, sweep_plot, data = handlers.next_token(*settings)
    moved = ("The capital of France is", False, 1.35, 0, 0.95, 0.0, 1.0, 3, 10)  # temperature and seed moved
    moved_stage, moved_stats = handlers.stage_view(*moved)
    moved_data = handlers.raw_numbers(*moved)
    assert len(sweeps) == 1  # the sweep shows fixed temperatures: a temperature or seed move reuses it
    assert moved_data["temperature_sweep"] == data["temperature_sweep"]
    fresh = SamplingHandlers(tab["handlers"].ctx).next_token(*moved)  # the button's answer, computed afresh
    assert moved_stage.to_json() == fresh[0].to_json() and moved_stats == fresh[1] and moved_data == fresh[3]
    assert moved_data["settings"]["temperature"] == 1.35 and moved_stats != stats

    top_p_moved = ("The capital of France is", False, 1.35, 0, 0.5, 0.0, 1.0, 3, 10)
    sweep_figure, sweep_data = handlers.sweep_view(*top_p_moved)
    assert len(sweeps) == 3  # a new top-p: a new sweep (counted once in the handler, once in the fresh one)
    assert sweep_data["temperature_sweep"] != data["temperature_sweep"]
    assert sweep_figure.to_json() == SamplingHandlers(tab["handlers"].ctx).next_token(*top_p_moved)[2].to_json()


def test_the_slider_events_have_an_empty_state_too(tab):
    handlers = tab["handlers"]
    stage_plot, stats = handlers.stage_view(" ", False, 1.0, 0, 1.0, 0.0, 1.0, 0, 10)
    assert stats == EMPTY_MESSAGE and stage_plot.layout.annotations[0].text == EMPTY_MESSAGE
    assert handlers.raw_numbers(" ", False, 1.0, 0, 1.0, 0.0, 1.0, 0, 10) == {"empty": True, "message": EMPTY_MESSAGE}
    assert handlers.sweep_view(" ", False, 1.0, 0, 1.0, 0.0, 1.0, 0, 10)[1]["empty"]


def test_a_step_of_the_trace_links_to_the_logit_lens_on_the_text_before_it(tab, tiny_context):
    """Issue 19: one click from a token of the step-through opens the lens at that step. The link fills the Inside
    tab (its deep-link fields) with the prompt plus the tokens before the step and the same sampling settings; the
    lens's last layer then gives the step's token the probability the trace recorded."""
    import re
    from urllib.parse import unquote_plus

    from playground.ui.deeplinks import fields_for, resolve_query
    from playground.ui.inside_tab import InsideHandlers, create_inside_tab
    from playground.ui.tabs import all_tabs

    data = final(tab["handlers"].generate_trace(*SETTINGS, 6, False))[6]
    assert tab["handlers"].lens_link({}, 0) == ""  # no trace yet: no link
    text = tab["handlers"].lens_link(data, 3)
    (query,) = re.findall(r"\]\((\?[^)]+)\)", text)
    with gr.Blocks():
        inside = create_inside_tab(tiny_context)
    names = next(info.link_inputs for info in all_tabs() if info.key == "inside")
    link = resolve_query(query, {"inside": fields_for(inside, names)})
    assert link.tab == "inside" and link.run and not link.problems
    steps = data["trace"]["steps"]
    tokenizer = tiny_context.model().tokenizer
    context = tokenizer.decode([*data["trace"]["prompt_ids"], *(s["token_id"] for s in steps[:3])])
    assert link.values["prompt"] == context and unquote_plus(query).count(context) == 1
    assert {name: link.values[name] for name in ("temperature", "top_k", "top_p", "min_p")} == \
        {"temperature": 1.2, "top_k": 0, "top_p": 0.9, "min_p": 0.0}
    *_, lens, _ = InsideHandlers(tiny_context).show_lens(link.values["prompt"], "top_prob", 1.2, 0, 0.9, 0.0)
    assert lens["token_ids"] == [*data["trace"]["prompt_ids"], *(s["token_id"] for s in steps[:3])]  # the same context
    raw = {alt["token_id"]: alt["raw_prob"] for alt in steps[3]["alternatives"]}  # the model's own probabilities
    top = lens["final_ids"][-1]  # the last layer's top token at the last position
    assert top == max(raw, key=raw.get) and abs(lens["final_probs"][-1][-1] - raw[top]) < 1e-4

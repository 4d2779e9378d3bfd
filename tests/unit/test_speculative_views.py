"""The tab's figures and renderings, from a real run on tiny models: titled axes, explained colours,
exact numbers in the hover text, and the coloured text / step tables built from the JSON records."""

from __future__ import annotations

import json

import pytest

from playground.drafts import CachedModel, ModelDraft
from playground.figures import speculative as figures
from playground.generation import encode_prompt
from playground.sampling import SamplingSettings
from playground.speculative import acceptance_stats, plain_decode, report_json, speculative_generate, speed_report
from playground.ui import speculative_tab as tab
from tiny import make_tiny_llama


@pytest.fixture(scope="module")
def finished(tiny_tokenizer):
    """(run, stats, plain, JSON) of a sampled run where the draft often disagrees."""
    target = make_tiny_llama(len(tiny_tokenizer), seed=0)
    draft = make_tiny_llama(len(tiny_tokenizer), seed=4)
    prompt = encode_prompt(tiny_tokenizer, "Tokens attend to earlier tokens.", chat=False)[0].tolist()
    settings = SamplingSettings(temperature=1.5, seed=0)
    run = speculative_generate(CachedModel(target), ModelDraft(draft, label="tiny draft"), tiny_tokenizer, prompt,
                               settings, k=4, max_new_tokens=40)
    plain = plain_decode(target, tiny_tokenizer, prompt, settings, 40)
    stats = acceptance_stats(run)
    data = json.loads(json.dumps(report_json(run, stats, speed_report(run, plain, stats), (), plain)))
    return run, stats, plain, data


def all_figures(finished):
    run, stats, plain, _ = finished
    return [figures.acceptance_by_position_figure(stats), figures.accepted_length_figure(run, stats),
            figures.tokens_per_forward_figure(run), figures.time_split_figure(stats, run, plain)]


def test_the_run_has_every_fate(finished):
    run = finished[0]
    outcomes = {token.outcome for step in run.steps for token in step.drafted}
    kinds = {step.final_kind for step in run.steps}
    assert {"accepted", "rejected"} <= outcomes and kinds == {"resampled", "bonus"}


def test_every_figure_titles_its_axes_and_names_its_traces(finished):
    for figure in all_figures(finished):
        layout = figure.layout
        assert layout.title.text and layout.xaxis.title.text and layout.yaxis.title.text
        assert layout.font.size >= 12
        for trace in figure.data:
            assert trace.name, f"unnamed trace in {layout.title.text}"


def test_hover_text_carries_the_exact_numbers(finished):
    run, stats, plain, _ = finished
    position, length, forwards, time_split = all_figures(finished)
    first = stats.by_position[0]
    assert f"checked {first.checked}, accepted {first.accepted}" in position.data[0].hovertext[0]
    assert f"{stats.alpha:.4f}" in position.data[1].hovertemplate
    zero = stats.accepted_length_counts[0]
    assert length.data[0].hovertext[0].startswith(f"{zero} of {stats.steps} steps")
    assert f"{len(run.token_ids)} tokens" in forwards.data[0].hovertext[-1]
    assert f"{stats.draft_seconds:.3f} s" in time_split.data[0].hovertext[0]
    assert f"{plain.seconds:.3f} s" in time_split.data[1].hovertext[1]


def test_expected_accepted_lengths_add_up_to_the_steps(finished):
    run, stats, _, _ = finished
    length = figures.accepted_length_figure(run, stats)
    assert list(length.data[0].y) == list(stats.accepted_length_counts)
    assert sum(length.data[1].y) == pytest.approx(stats.steps)


def test_time_split_without_a_race_has_one_row(finished):
    run, stats, _, _ = finished
    figure = figures.time_split_figure(stats, run, None)
    assert all(list(trace.y) == ["speculative"] for trace in figure.data)


def test_long_runs_are_thinned_in_the_line_chart(finished):
    run = finished[0]
    long_run = type(run)(run.draft, run.k, run.prompt_length, run.token_ids, run.text, run.finish_reason,
                         run.steps * 60, run.seconds)
    figure = figures.tokens_per_forward_figure(long_run)
    assert len(figure.data[0].x) <= figures.MAX_LINE_POINTS + 1
    assert figure.data[0].x[-1] == len(long_run.steps)  # the last point is always shown


def test_tokens_html_colours_every_fate_and_escapes_text(finished):
    data = finished[3]
    page = tab.tokens_html(data["steps"], selected=1)
    for fate in ("accepted", "rejected", "resampled", "bonus"):
        assert f"class='spec-{fate}'" in page
    assert page.count("class='spec-step'") == len(data["steps"])
    assert "outline:2px" in page  # the selected step
    step = {**data["steps"][0], "drafted": [{**data["steps"][0]["drafted"][0], "text": "<b>"}]}
    assert "&lt;b&gt;" in tab.tokens_html([step])
    assert tab.tokens_html([]) == tab.EMPTY_TEXT


def test_step_rows_match_the_records(finished):
    data = finished[3]
    rejected = next(step for step in data["steps"] if step["final_kind"] == "resampled")
    rows, residual = tab.step_rows(rejected)
    assert len(rows) == len(rejected["drafted"]) + 1 and len(rows[0]) == len(tab.STEP_HEADERS)
    assert [row[6] for row in rows[:-1]] == [token["outcome"] for token in rejected["drafted"]]
    assert rows[-1][6] == f"resampled: residual probability {rejected['final_probability']:.4f}" and rows[-1][3] == ""
    bonus = next(step for step in data["steps"] if step["final_kind"] == "bonus")
    assert tab.step_rows(bonus)[0][-1][3] == round(bonus["final_probability"], 4)
    assert [row[0] for row in residual] == [tab.visible(token["text"]) for token in rejected["residual_top"]]


def test_json_is_plain_data_with_the_documented_keys(finished):
    data = finished[3]
    assert {"draft", "k", "prompt_tokens", "generated_tokens", "text", "token_ids", "finish_reason", "seconds",
            "tokens_per_second", "stats", "speed", "plain", "notes", "steps"} <= set(data)
    assert {"measured_speedup", "predicted_speedup", "alpha", "cost_ratio", "verify_cost_ratio",
            "predicted_speedup_measured_costs", "same_tokens"} <= set(data["speed"])
    assert {"drafted", "accepted", "final_kind", "residual_top", "draft_seconds", "target_seconds"} <= set(
        data["steps"][0])


def test_the_tab_builds_without_a_model_and_exposes_speculate(tmp_path):
    import gradio as gr

    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui.context import AppContext

    settings = Settings(cache_dir=tmp_path, preload=False)
    ctx = AppContext(settings, ModelManager(settings))
    with gr.Blocks() as demo:
        components = tab.create_speculative_tab(ctx)
    api = {d.get("api_name"): d for d in demo.get_config_file()["dependencies"]}
    assert "speculate" in api and len(api["speculate"]["inputs"]) == 10
    assert {"prompt", "draft", "k", "temperature", "run", "stop", "json"} <= set(components)
    assert ctx.models.active() is None  # building the tab loads nothing


def test_show_step_refuses_a_tampered_speculate_json(tiny_context):
    """Issue 24 sibling of #4: the speculate JSON comes back from the client when the step slider moves."""
    import gradio as gr

    from playground.ui.speculative_tab import create_speculative_tab

    with gr.Blocks() as demo:
        create_speculative_tab(tiny_context)
    show_step = next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "show_step")
    for data, message in [({"steps": [{"index": 0}]}, "not a speculate result"),
                          ({"steps": "x"}, "steps must be a list"),
                          ({"steps": [{}] * 100_000}, r"100,000 steps; .*at most"),
                          ({"steps": [{"drafted": [1]}]}, "not a speculate result")]:
        with pytest.raises(gr.Error, match=message):
            show_step(data, 1)
    with pytest.raises(gr.Error, match=r"Input 2 \(position\) must be a finite number"):
        show_step({"steps": []}, float("nan"))

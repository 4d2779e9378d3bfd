"""Deep links: query -> tab and values (clamped, checked), and the copy-link query back, on the real tabs'
fields (the app is built once, without a model)."""

from __future__ import annotations

import gradio as gr
import pytest

from playground.ui.deeplinks import (MAX_TEXT_CHARS, LinkError, LinkField, build_query, field_for, parse_value,
                                     resolve_query)

SAMPLING = (LinkField("prompt", "text"), LinkField("temperature", "number", 0.0, 3.0),
            LinkField("top_k", "number", 0.0, None, integer=True), LinkField("chat", "bool"),
            LinkField("draft", "choice", choices=("int8", "ngram")),
            LinkField("names", "choices", choices=("model", "bytes", "minilm")))
FIELDS = {"sampling": SAMPLING, "rag": (LinkField("question", "text"),)}


@pytest.fixture(scope="module")
def app_links(tmp_path_factory):
    """Every built tab's TabLinks, from the real build_app (no model is loaded)."""
    from playground.config import load_settings
    from playground.runtime import ModelManager
    from playground.ui import build_app

    settings = load_settings(["--offline", "--no-preload", "--cache-dir", str(tmp_path_factory.mktemp("cache"))])
    demo = build_app(settings, ModelManager(settings))
    return demo, demo.playground_links


def test_query_selects_the_tab_and_fills_its_inputs():
    link = resolve_query("?tab=sampling&prompt=The+sky+is&temperature=0.7&top_k=5&chat=1", FIELDS)
    assert link.tab == "sampling"
    assert link.values == {"prompt": "The sky is", "temperature": 0.7, "top_k": 5, "chat": True}
    assert link.run and link.problems == ()


def test_numbers_are_clamped_and_rounded_to_the_control():
    link = resolve_query({"tab": "sampling", "temperature": "9.5", "top_k": "-3"}, FIELDS)
    assert link.values == {"temperature": 3.0, "top_k": 0}
    assert resolve_query({"tab": "sampling", "top_k": "4.6"}, FIELDS).values == {"top_k": 5}


@pytest.mark.parametrize("query, problem", [
    ("?tab=nope", "no tab called 'nope'"),
    ("?tab=sampling&temperature=hot", "not a number"),
    ("?tab=sampling&temperature=nan", "not a finite number"),
    ("?tab=sampling&draft=gpt", "'gpt' is not one of int8, ngram"),
    ("?tab=sampling&chat=maybe", "not a yes/no value"),
    ("?tab=sampling&question=hi", "'question' is not an input the sampling tab"),
    ("?prompt=hi", "a link without ?tab="),
])
def test_bad_values_are_reported_not_applied(query, problem):
    link = resolve_query(query, FIELDS)
    assert link.values == {}
    assert any(problem in text for text in link.problems), link.problems


def test_the_rest_of_a_link_applies_when_one_value_is_bad():
    link = resolve_query("?tab=sampling&temperature=hot&prompt=ok", FIELDS)
    assert link.values == {"prompt": "ok"} and len(link.problems) == 1


def test_run_presenter_and_example_flags():
    assert not resolve_query("?tab=sampling", FIELDS).run  # only opening a tab presses nothing
    assert not resolve_query("?tab=sampling&prompt=x&run=0", FIELDS).run
    assert resolve_query("?tab=sampling&run=1", FIELDS).run
    assert not resolve_query("?prompt=x", FIELDS).run  # no tab: nothing to run
    assert resolve_query("?presenter", FIELDS).presenter and resolve_query("?presenter=1", FIELDS).presenter
    assert not resolve_query("?presenter=0", FIELDS).presenter
    assert resolve_query("?tab=rag&example=france", FIELDS).example == "france"
    assert resolve_query("?__theme=dark&tab=rag", FIELDS).problems == ()


def test_choices_and_long_text():
    assert parse_value(SAMPLING[5], "model,bytes") == ["model", "bytes"]
    with pytest.raises(LinkError):
        parse_value(SAMPLING[5], "model,gpt2")
    link = resolve_query({"tab": "rag", "question": "x" * (MAX_TEXT_CHARS + 5)}, FIELDS)
    assert len(link.values["question"]) == MAX_TEXT_CHARS and "cut" in link.problems[0]


def test_build_query_round_trips():
    values = ["Hi & bye = ?", 0.35, 7, False, "ngram", ["bytes", "model"]]
    query = build_query("sampling", SAMPLING, values)
    assert query.startswith("?tab=sampling&")
    assert resolve_query(query, FIELDS).values == dict(zip([spec.name for spec in SAMPLING], values))
    assert "top_k" not in build_query("sampling", SAMPLING[:3], ["x", 1.0, None])  # blank numbers are left out


def test_fields_follow_the_components():
    with gr.Blocks():
        slider = gr.Slider(0, 2, value=1, step=0.05)
        integer_slider = gr.Slider(1, 64, value=4, step=1)
        number = gr.Number(0, precision=0, minimum=0)
        radio = gr.Radio([("Label", "value"), "other"])
        group = gr.CheckboxGroup(["a", "b"])
        custom = gr.Dropdown(["x"], allow_custom_value=True)
        html = gr.HTML()
    assert field_for("t", slider) == LinkField("t", "number", 0.0, 2.0, False)
    assert field_for("k", integer_slider).integer
    assert field_for("n", number) == LinkField("n", "number", 0, None, True)
    assert field_for("r", radio).choices == ("value", "other")
    assert field_for("g", group).kind == "choices"
    assert field_for("c", custom).kind == "text"
    with pytest.raises(TypeError):
        field_for("h", html)


def test_every_built_tab_links_its_defaults_round_trip(app_links):
    _, links = app_links
    assert {tab.key for tab in links} == {"tokenization", "attention", "sampling", "speculative", "rag", "lora",
                                          "calibration", "quantization", "inside", "serving"}
    fields = {tab.key: tab.fields for tab in links}
    for tab in links:
        assert tab.fields, f"{tab.key} has no deep-linkable inputs"
        values = [component.value for component in tab.components]
        link = resolve_query(build_query(tab.key, tab.fields, values), fields)
        assert link.problems == (), (tab.key, link.problems)
        expected = {spec.name: value for spec, value in zip(tab.fields, values) if value is not None}
        assert link.values == expected, tab.key


def test_run_buttons_get_an_element_id_the_page_can_press(app_links):
    demo, links = app_links
    config_ids = {block.get("props", {}).get("elem_id") for block in demo.config["components"]}
    for tab in links:
        if tab.run_elem_id is not None:
            assert tab.run_elem_id in config_ids, tab.key
    assert sum(tab.run_elem_id is not None for tab in links) >= 6


def test_an_old_tab_key_still_opens_its_renamed_tab():
    fields = {"quantization": (LinkField("precisions", "choices", choices=("none", "int4")),)}
    link = resolve_query("?tab=model&precisions=int4", fields)
    assert link.tab == "quantization" and link.values == {"precisions": ["int4"]} and link.problems == ()


def test_link_warnings_are_escaped_and_capped():
    from playground.ui.deeplinks import MAX_LINK_WARNINGS, link_warnings

    fields = {"sampling": (LinkField("temperature", "number", 0, 2, False),)}
    form = '<form action="https://evil.example"><input type=password name=p><img src=https://t.example/x>'
    link = resolve_query({"tab": form, **{f"k{i}": "1" for i in range(1500)}}, fields)
    warnings = link_warnings(link.problems)
    assert len(warnings) == MAX_LINK_WARNINGS + 1 and "1,496 more problems" in warnings[-1]
    assert not any("<form" in w or "<img" in w or "<input" in w for w in warnings)
    assert "&lt;form" in warnings[0]

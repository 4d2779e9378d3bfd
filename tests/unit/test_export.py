"""Export: a plot payload -> standalone HTML that holds the figure's data and plotly.js; raw numbers ->
strict JSON and a lossless path,value CSV; empty views are a clear error."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import pytest

from playground.ui import export
from playground.ui.viewtools import _exporter, render_csv, render_html, render_json


def sample_figure() -> go.Figure:
    return go.Figure(go.Bar(x=["·Paris", "·Lyon"], y=[0.8125, 0.0625]), layout={"title": {"text": "Stage by stage"}})


def plot_payload(figure: go.Figure) -> object:
    """What gr.Plot hands a handler: its own postprocess output, preprocessed back."""
    with gr.Blocks():
        plot = gr.Plot()
    return plot.preprocess(plot.postprocess(figure))


def test_html_is_standalone_and_holds_the_figure():
    html = export.standalone_html(export.figure_from_payload(plot_payload(sample_figure())), "sampling <stages>")
    assert html.lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert "<title>sampling &lt;stages&gt;</title>" in html
    assert "·Paris" in html and "0.8125" in html and "Stage by stage" in html
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined: works offline


def test_empty_plot_and_empty_numbers_are_refused():
    with pytest.raises(export.NothingToExport):
        export.figure_from_payload(None)
    with pytest.raises(export.NothingToExport):
        export.json_text({})
    with pytest.raises(export.NothingToExport):
        render_csv(None, "x")


def test_json_is_strict_and_csv_lists_every_leaf():
    data = {"tokens": ["a", "b,c"], "probs": [0.5, float("nan")], "nested": {"k": 1, "empty": []}, "none": None}
    text, suffix = render_json(data, "x")
    assert suffix == "json"
    assert json.loads(text) == {"tokens": ["a", "b,c"], "probs": [0.5, None], "nested": {"k": 1, "empty": []},
                                "none": None}
    rows = list(csv.reader(io.StringIO(render_csv(data, "x")[0])))
    assert rows[0] == ["path", "value"]
    assert rows[1:] == [["tokens.0", "a"], ["tokens.1", "b,c"], ["probs.0", "0.5"], ["probs.1", ""],
                        ["nested.k", "1"], ["nested.empty", "[]"], ["none", ""]]
    assert export.finite([math.inf, 1.0]) == [None, 1.0]


def test_exporter_writes_the_chosen_component_to_a_named_file():
    entries = [("Stage by stage (stage_plot)", "stage_plot", None), ("Sweep (sweep_plot)", "sweep_plot", None)]
    handler = _exporter("sampling", entries, render_html)
    path = Path(handler("Sweep (sweep_plot)", None, plot_payload(sample_figure())))
    assert path.name == "sampling-sweep_plot.html" and "·Lyon" in path.read_text(encoding="utf-8")
    with pytest.raises(gr.Error, match="empty"):
        handler("Stage by stage (stage_plot)", None, None)
    with pytest.raises(gr.Error, match="Pick what to export"):
        handler("nothing", None, None)


@pytest.mark.parametrize("choice, values, message", [
    (["a"], (None,), "Pick what to export"),
    (7, (None,), "Pick what to export"),
    ("Plot (p)", (), "Send every sampling view"),
    ("Plot (p)", ({"plot": "{not json"},), "not a view this app produced"),
    ("Plot (p)", ("text",), "empty"),
])
def test_hand_made_payloads_get_a_clear_message(choice, values, message):
    handler = _exporter("sampling", [("Plot (p)", "p", None)], render_html)
    with pytest.raises(gr.Error, match=message) as error:
        handler(choice, *values)
    assert "Error" not in error.value.message  # no exception class names reach the page


@pytest.mark.parametrize("cell", ["=cmd|' /C calc'!A0", "=HYPERLINK(\"http://x\",\"y\")", "@SUM(A1)", "+1+1",
                                  "-2+3", "\tx"])
def test_csv_exports_neutralise_formulas(cell):
    import csv as csv_module
    import io as io_module

    from playground.ui.export import json_to_csv, rows_to_csv

    for text in (json_to_csv({"row": cell}), rows_to_csv(["answer"], [[cell]])):
        values = [value for row in csv_module.reader(io_module.StringIO(text)) for value in row]
        assert "'" + cell in values and cell not in values


@pytest.mark.parametrize("render", [render_json, render_csv, render_html])
def test_over_deep_payloads_are_refused_with_a_message(render):
    """Issue 24 #9: an export of JSON nested 100,000 deep failed with "maximum recursion depth exceeded"."""
    from playground.limits import LIMITS

    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    payload = {"plot": "[" * 100_000 + "]" * 100_000} if render is render_html else deep
    handler = _exporter("sampling", [("Data (d)", "d", None)], render)
    expected = "depth limit|nested too deeply" if render is render_html else f"nested more than {LIMITS.nesting_depth}"
    with pytest.raises(gr.Error, match=expected) as raised:
        handler("Data (d)", payload)
    assert "recursion" not in str(raised.value)
    shallow: object = 1
    for _ in range(20):
        shallow = {"a": [shallow]}
    assert Path(_exporter("sampling", [("Data (d)", "d", None)], render_json)("Data (d)", shallow)).is_file()

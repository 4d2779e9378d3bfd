"""Workshop features through gradio_client: what a URL query resolves to (`/deep_link`), and the export
endpoints (a plot as standalone HTML, raw numbers as JSON and CSV) on the real model's output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_deep_link_resolves_a_query_to_a_tab_and_its_inputs(client):
    link = client.predict("?tab=sampling&prompt=The+sky+is&temperature=0.7&top_k=12&chat=true&presenter=1",
                          api_name="/deep_link")
    assert link["tab"] == "sampling" and link["run"] and link["presenter"]
    assert link["values"] == {"prompt": "The sky is", "temperature": 0.7, "top_k": 12, "chat": True}
    assert link["problems"] == []


def test_deep_link_clamps_and_reports(client):
    link = client.predict("?tab=speculative&k=99&draft=gpt&temperature=-1&colour=red", api_name="/deep_link")
    assert link["tab"] == "speculative"
    assert link["values"]["k"] >= 1 and link["values"]["temperature"] == 0.0
    assert "draft" not in link["values"]
    problems = " ".join(link["problems"])
    assert "'gpt' is not one of" in problems and "'colour' is not an input" in problems
    assert client.predict("?tab=nowhere", api_name="/deep_link")["tab"] is None


@pytest.fixture(scope="module")
def sampling_view(client):
    return client.predict("The capital of France is", False, 0.7, 0, 0.95, 0.0, 1.0, 0, 10, api_name="/next_token")


def test_export_plot_as_standalone_html(client, sampling_view):
    stage_plot, _, sweep_plot, _ = sampling_view
    path = Path(client.predict("Stage by stage (stage_plot)", stage_plot, sweep_plot, None, None, None,
                               api_name="/export_sampling_html"))
    html = path.read_text(encoding="utf-8")
    assert path.suffix == ".html" and html.lower().startswith("<!doctype html>")
    assert "Paris" in html and "<script src=" not in html  # the model's top token; plotly.js inlined


def test_export_raw_numbers_as_json_and_csv(client, sampling_view):
    data = sampling_view[3]
    as_json = Path(client.predict("next_token (next_json)", data, None, None, api_name="/export_sampling_json"))
    assert json.loads(as_json.read_text(encoding="utf-8")) == data
    as_csv = Path(client.predict("next_token (next_json)", data, None, None, api_name="/export_sampling_csv"))
    rows = {row["path"]: row["value"] for row in csv.DictReader(as_csv.open(encoding="utf-8"))}
    assert rows["tokens.0.text"] == data["tokens"][0]["text"] == " Paris"
    assert float(rows["tokens.0.probs.raw"]) == pytest.approx(data["tokens"][0]["probs"]["raw"])


def test_export_before_running_is_a_clear_error(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty: run the tab first"):
        client.predict("next_token (next_json)", None, None, None, api_name="/export_sampling_json")

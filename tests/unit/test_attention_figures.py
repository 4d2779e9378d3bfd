"""Attention figures: titled axes, explained colours, hover text with the exact numbers, masked cells
blank, readable on long inputs."""

from __future__ import annotations

import copy
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from playground import attention as att
from playground.figures import attention as figures

PROMPT = "The capital of France is Paris. The capital of Italy is Rome."


@pytest.fixture(scope="module")
def run(tiny_model, tiny_tokenizer):
    model = copy.deepcopy(tiny_model)
    model.set_attn_implementation("eager")
    return att.run_attention(model, tiny_tokenizer, PROMPT)


def assert_axes_titled(figure: go.Figure) -> None:
    """Valid plotly (the heatmap and the query row are built unvalidated for speed, so validate here), every axis
    with ticks titled."""
    as_sent = json.loads(figure.to_json())
    assert json.loads(go.Figure(as_sent).to_json()) == as_sent
    layout = figure.to_dict()["layout"]
    for name, axis in layout.items():
        if (name.startswith("xaxis") or name.startswith("yaxis")) and axis.get("visible", True) and axis.get(
                "showticklabels", True):
            assert axis.get("title", {}).get("text"), f"{name} has no title"
    assert layout["title"]["text"]


def heatmaps(figure: go.Figure) -> list[go.Heatmap]:
    return [trace for trace in figure.data if isinstance(trace, go.Heatmap)]


def test_mask_figure_draws_the_mask_with_a_legend(tiny_tokenizer):
    view = att.explore_mask("a b c d\nx y", "padding_left")
    figure = figures.mask_figure(view)
    assert_axes_titled(figure)
    left, right = heatmaps(figure)
    np.testing.assert_array_equal(np.asarray(right.z), view.sequences[1].allowed.int().numpy())
    assert list(right.x) == ["0 [pad]", "1 [pad]", "2 x", "3 ·y"]
    assert right.colorbar.ticktext == ("masked (−∞)", "allowed (0)")
    assert "1 = allowed" in left.hovertemplate
    assert "10 of 16 pairs allowed" in figure.layout.annotations[0].text  # 4 real tokens: 4·5/2
    assert "3 of 16 pairs allowed" in figure.layout.annotations[1].text  # 2 real tokens: 2·3/2


def test_attention_heatmap_blanks_masked_cells_and_hovers_exact_weights(run):
    view = att.attention_view(run, 1, 2)
    figure = figures.attention_heatmap(view)
    assert_axes_titled(figure)
    (heatmap,) = heatmaps(figure)
    z = np.asarray(heatmap.z, dtype=float)
    assert np.isnan(z[np.triu_indices(run.length, 1)]).all()
    np.testing.assert_allclose(z[np.tril_indices(run.length)], view.weights.numpy()[np.tril_indices(run.length)])
    assert "%{z:.6f}" in heatmap.hovertemplate and heatmap.colorbar.title.text
    assert len(set(heatmap.x)) == run.length  # repeated tokens keep distinct labels
    assert "head 2 (reads KV head 1)" in figure.layout.title.text


def test_axis_labels_are_unique_and_short():
    labels = figures.axis_labels(["·the", "·the", "a" * 40])
    assert labels[:2] == ["0 ·the", "1 ·the"] and labels[2].endswith("…") and len(labels[2]) <= 14


def test_query_row_bars_hold_the_row(run):
    view = att.attention_view(run, 0, None)
    row = att.query_row(view, 4)
    figure = figures.query_row_figure(row, view)
    assert_axes_titled(figure)
    assert list(figure.data[0].y) == pytest.approx(view.weights[4, :5].tolist())
    assert "%{y:.6f}" in figure.data[0].hovertemplate and "token 4" in figure.layout.title.text


@pytest.mark.parametrize("mode", ["heads", "layers"])
def test_grid_has_one_thumbnail_per_head_or_layer_with_a_shared_scale(run, mode):
    grid = att.attention_grid(run, 1, 0, mode)
    figure = figures.attention_grid_figure(grid)
    assert len(heatmaps(figure)) == (4 if mode == "heads" else 2)
    assert all(trace.coloraxis == "coloraxis" for trace in heatmaps(figure))
    assert figure.layout.coloraxis.colorbar.title.text == "weight"
    titles = [annotation.text for annotation in figure.layout.annotations]
    if mode == "heads":
        assert titles[0].startswith("h0 · KV 0") and titles[3].startswith("h3 · KV 1")
        # One colour per GQA group.
        colours = [annotation.font.color for annotation in figure.layout.annotations]
        assert colours[0] == colours[1] != colours[2] == colours[3]
    else:
        assert titles[1].startswith("layer 1")


def test_grid_downsamples_long_inputs(tiny_model, tiny_tokenizer):
    model = copy.deepcopy(tiny_model)
    model.set_attn_implementation("eager")
    long_run = att.run_attention(model, tiny_tokenizer, "Tokens attend to earlier tokens. " * 30, max_tokens=200)
    grid = att.attention_grid(long_run, 0, None, "heads")
    figure = figures.attention_grid_figure(grid)
    assert grid.block == 5 and all(np.asarray(t.z).shape == (40, 40) for t in heatmaps(figure))
    assert "block max over 5×5 tokens" in figure.layout.title.text
    # A block is blank only when all its pairs are masked: the diagonal blocks are drawn.
    z = np.asarray(heatmaps(figure)[0].z, dtype=float)
    assert not np.isnan(np.diag(z)).any() and np.isnan(z[0, 1:]).all()


def test_score_story_has_three_panels_and_two_explained_scales(run):
    story = att.score_story(run, 1, 3)
    figure = figures.score_story_figure(story)
    raw, masked, weights = heatmaps(figure)
    n = run.length
    upper = np.triu_indices(n, 1)
    assert not np.isnan(np.asarray(raw.z, dtype=float)).any()
    assert np.isnan(np.asarray(masked.z, dtype=float)[upper]).all()
    np.testing.assert_allclose(np.asarray(weights.z, dtype=float)[np.tril_indices(n)],
                               run.weights[1][3].numpy()[np.tril_indices(n)], atol=1e-6)
    assert raw.coloraxis == masked.coloraxis == "coloraxis" and weights.coloraxis == "coloraxis2"
    assert figure.layout.coloraxis.colorbar.title.text == "score"
    assert figure.layout.coloraxis2.colorbar.title.text == "weight"
    assert figure.layout.coloraxis.cmin == -figure.layout.coloraxis.cmax  # zero is white
    assert "blank = −∞" in figure.layout.annotations[1].text
    assert_axes_titled(figure)


def test_kv_cache_figure_marks_the_chosen_context():
    estimate = att.kv_cache_estimate(att.AttentionShape(30, 9, 3, 64), 8192, "float32")
    figure = figures.kv_cache_figure(estimate, "SmolLM2")
    assert_axes_titled(figure)
    lines = [trace for trace in figure.data if trace.mode == "lines"]
    assert [trace.name for trace in lines] == ["MHA: 9 KV heads · 1,132.5 MB at 8,192",
                                              "GQA: 3 KV heads (this model) · 377.5 MB at 8,192",
                                              "MQA: 1 KV head · 125.8 MB at 8,192"]
    markers = [trace for trace in figure.data if trace.mode == "markers"]
    assert [trace.y[0] for trace in markers] == pytest.approx([1132.46208, 377.48736, 125.82912])
    assert "MB" in lines[0].hovertemplate and "10⁶" in figure.layout.yaxis.title.text


def test_empty_figure_says_what_to_do():
    from playground.figures.style import empty_figure

    figure = empty_figure("Type a prompt")
    assert figure.layout.annotations[0].text == "Type a prompt" and not figure.data


@pytest.mark.parametrize("mode", ["heads", "layers"])
def test_colour_bar_titles_run_beside_the_bar_not_on_its_top_tick(run, mode):
    """A title on top of a colour bar met its top tick label ('1' vs 'weight') in the page audit at presenter
    sizes: every colour bar of the tab's figures titles its right side (style.colorbar)."""
    mask = figures.mask_figure(att.explore_mask("a b c d", "causal"))
    figures_ = [mask, figures.attention_heatmap(att.attention_view(run, 1, 0)),
                figures.attention_grid_figure(att.attention_grid(run, 1, 0, mode)),
                figures.score_story_figure(att.score_story(run, 1, 3))]
    bars = [trace.colorbar for figure in figures_ for trace in heatmaps(figure) if trace.showscale is not False
            and trace.coloraxis is None and trace.colorbar.title.text]
    bars = [bar.to_plotly_json() for bar in bars]
    bars += [value["colorbar"] for figure in figures_ for name, value in figure.layout.to_plotly_json().items()
             if name.startswith("coloraxis") and "colorbar" in value]
    assert len(bars) >= 5
    assert all(bar["title"]["side"] == "right" for bar in bars), [bar["title"]["text"] for bar in bars]

"""Sampling figures: right panels and bars, every axis titled, colours in the legend, exact numbers
in the hover text, readable labels."""

from __future__ import annotations

from dataclasses import replace

import plotly.graph_objects as go
import pytest
import torch

from playground.figures import sampling as figures
from playground.tokenization import visible_token
from playground.generation import encode_prompt
from playground.sampling import (
    STAGE_LABELS,
    SamplingSettings,
    branch_trace,
    final_probabilities,
    next_token_view,
    sample_histogram,
    temperature_sweep,
    trace_generation,
)

SETTINGS = SamplingSettings(temperature=1.5, top_k=40, top_p=0.8, min_p=0.2, seed=0)


@pytest.fixture(scope="module")
def logits(tiny_tokenizer):
    return torch.randn(len(tiny_tokenizer), generator=torch.Generator().manual_seed(0)) * 2.5


@pytest.fixture(scope="module")
def trace(tiny_model, tiny_tokenizer):
    prompt = encode_prompt(tiny_tokenizer, "The capital of France is", chat=False)
    run = trace_generation(tiny_model, tiny_tokenizer, prompt, SETTINGS, 8)
    return branch_trace(tiny_model, tiny_tokenizer, run, 3, run.steps[3].alternatives[1].token_id)


def axes_of(figure: go.Figure, kind: str) -> list:
    layout = figure.layout.to_plotly_json()
    return [value for key, value in layout.items() if key.startswith(kind)]


def assert_titled(figure: go.Figure) -> None:
    """Valid plotly (the figures are built unvalidated for speed, so validate here), every axis titled."""
    validated = go.Figure(figure.to_plotly_json())
    assert validated.to_plotly_json() == figure.to_plotly_json()
    assert figure.layout.template.layout.plot_bgcolor == "white"  # the house template really applied
    for axis in axes_of(figure, "xaxis") + axes_of(figure, "yaxis"):
        assert axis.get("title", {}).get("text"), axis
    assert figure.layout.title.text and figure.layout.font.size >= 12


def test_stage_figure_has_a_panel_per_active_stage_and_draws_cuts(logits, tiny_tokenizer):
    view = next_token_view(logits, SETTINGS, tiny_tokenizer, top_n=30)
    figure = figures.stage_figure(view)
    assert_titled(figure)
    assert len(axes_of(figure, "xaxis")) == len(view.active_stages) == 5  # raw, temperature, top-k, top-p, min-p
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles[0].startswith("raw softmax") and titles[-1].startswith("= final: min-p")
    assert f"{view.kept['top_p']:,} tokens" in titles[3]
    names = {trace.name for trace in figure.data if trace.showlegend}
    assert names == {"kept: probability after the stage", "cut by this stage", "cut by an earlier stage"}
    # In the top-p panel, the tokens cut there are the candidates whose cut_by is top-p, at their top-k height.
    cut_here = next(t for t in figure.data if t.xaxis == "x4" and t.name == "cut by this stage")
    expected = [token for token in view.tokens if token.cut_by == "top_p"]
    assert len(cut_here.y) == len(expected) > 0
    assert list(cut_here.x) == pytest.approx([token.probs["top_k"] for token in expected])
    kept = next(t for t in figure.data if t.xaxis == "x5" and t.name.startswith("kept"))
    first = next(token for token in view.tokens if token.cut_by is None)
    assert f"{first.probs['min_p']:.6g}" in kept.hovertext[0] and STAGE_LABELS["min_p"] in kept.hovertext[0]
    assert any(label.startswith(figures.CHOSEN_MARK) for label in figure.layout.yaxis.categoryarray)


def test_greedy_stage_figure_stops_at_temperature(logits, tiny_tokenizer):
    view = next_token_view(logits, SamplingSettings(temperature=0.0, top_k=5), tiny_tokenizer)
    figure = figures.stage_figure(view)
    assert len(axes_of(figure, "xaxis")) == 2 and "0 = greedy" in figure.layout.annotations[-1].text


def test_token_labels_are_visible_unique_and_short():
    labels = figures.token_labels([" Paris", " ", "\n", "Paris", "Paris", "x" * 40], [1, 2, 3, 4, 5, 6], chosen=3)
    assert labels[0] == "·Paris" and labels[1] == "· (space)" and labels[2] == "★ ↵"
    assert labels[3] != labels[4] and labels[3].endswith("#4")
    assert len(labels[5]) == figures.LABEL_CHARS and labels[5].endswith("…")


def test_sweep_figure_shares_the_probability_axis(logits, tiny_tokenizer):
    sweep = temperature_sweep(logits, SETTINGS, tiny_tokenizer, temperatures=(0.0, 1.0, 2.0), top_n=5)
    figure = figures.sweep_figure(sweep)
    assert_titled(figure)
    assert [axis["range"] for axis in axes_of(figure, "xaxis")] == [[0, 1]] * 3
    assert list(figure.data[0].y)[-1] == "all others" and "grey: all other tokens" in figure.layout.title.text
    assert "T=0 greedy" in figure.layout.annotations[0].text


def test_samples_figure_shows_both_series_and_the_test(logits, tiny_tokenizer):
    histogram = sample_histogram(final_probabilities(logits, SETTINGS), 2000, tiny_tokenizer, seed=0)
    figure = figures.samples_figure(histogram)
    assert_titled(figure)
    assert [trace.name for trace in figure.data] == ["theoretical (final distribution), ±2σ", "empirical (2,000 draws)"]
    assert "χ² =" in figure.layout.title.text and f"{histogram.chi_square.p_value:.3f}" in figure.layout.title.text
    assert f"drawn {histogram.counts[0]:,} of 2,000" in figure.data[1].hovertext[0]


def test_trace_and_step_figures(trace):
    figure = figures.trace_figure(trace, trace)
    assert_titled(figure)
    assert [t.name for t in figure.data] == ["sampled", "greedy (T=0)", "forced token"]
    assert list(figure.data[2].x) == [3]
    step = figures.step_figure(trace.steps[3])
    assert_titled(step)
    assert "forced" in step.layout.title.text
    assert {t.name for t in step.data} == {"model probability (T=1, no filter)",
                                           "sampling probability (after the pipeline)"}


def test_highlighted_tokens_bin_by_model_probability(trace):
    pieces = figures.highlighted_tokens(trace)
    assert len(pieces) == len(trace.steps) and pieces[3][1] == figures.FORCED_CATEGORY
    for (text, category), step in zip(pieces, trace.steps):
        assert text == visible_token(step.text) and "\n" not in text and " " not in text
        if not step.forced:
            assert category == figures.probability_bin(step.raw_prob)
    assert set(figures.TEXT_COLORS) == {name for _, name in figures.PROBABILITY_BINS} | {figures.FORCED_CATEGORY}
    assert figures.probability_bin(0.95) == "model p ≥ 90%" and figures.probability_bin(0.01) == "< 5%"
    crafted = replace(trace, steps=(replace(trace.steps[0], text="\n\n"), replace(trace.steps[1], text="")))
    crafted = replace(crafted, steps=(*crafted.steps[:2], replace(trace.steps[2], text=" Paris")))
    # one clickable chip per step; a space shows (·), as in every other view of a token
    assert [text for text, _ in figures.highlighted_tokens(crafted)] == ["↵↵", "∅", "·Paris"]


def test_the_sweep_title_is_drawn_at_one_size(tiny_tokenizer):
    """A smaller span in the title fell under presenter mode's 18 px floor (the page audit): no size overrides."""
    sweep = temperature_sweep(torch.linspace(-2, 2, len(tiny_tokenizer)), SamplingSettings(), tiny_tokenizer)
    title = figures.sweep_figure(sweep).layout.title.text
    assert "font-size" not in title and "<sup>" not in title and "<sub>" not in title

"""The Inside tab's figures: what each mark means is what the data says."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from playground import inside
from playground.figures import inside as figures
from playground.figures.attention import axis_labels
from playground.sampling_pipeline import SamplingSettings

PROMPT = "The capital of France is Paris. The capital of Italy is"


@pytest.fixture(scope="module")
def model(tiny_model):
    return copy.deepcopy(tiny_model)


@pytest.fixture(scope="module")
def prompt(tiny_tokenizer):
    return inside.encode(tiny_tokenizer, PROMPT, 64)


def test_lens_heatmap_marks_commits_and_cuts(model, tiny_tokenizer, prompt):
    lens = inside.logit_lens(model, tiny_tokenizer, prompt, SamplingSettings(top_k=1))
    figure = figures.lens_heatmap(lens, "final_rank")
    heat, commits, *cuts = figure.data
    assert np.allclose(np.asarray(heat.z, dtype=float), np.log10(lens.final_ranks), atol=1e-6)
    assert list(commits.y) == [lens.depth_name(int(d)) for d in lens.commit_depth]
    # columns at 0..n-1, named by tick labels; the ◆ sits at its cell's left edge, clear of the token's name in the
    # middle of the cell (on the centre it hid the commit cell's own token: '·P◆ris')
    assert list(heat.x) == list(range(prompt.length))
    assert list(figure.layout.xaxis.ticktext) == axis_labels(prompt.tokens)
    assert all(-0.5 < x - i <= -0.3 for i, x in enumerate(commits.x))
    # top-k 1 keeps only the final token: every depth whose top token differs is cut, and gets a ✕
    assert np.array_equal(lens.cut, lens.top_ids[..., 0] != lens.final_ids[None, :])
    assert sum(len(trace.x) for trace in cuts) == int(lens.cut.sum())
    assert heat.colorbar.title.side == "right"  # on top it met the '1' tick (page audit)
    assert heat.textfont.size >= 12  # the normal-mode floor
    with pytest.raises(ValueError, match="colour must be one of"):
        figures.lens_heatmap(lens, "rainbow")
    assert "commits at" in figures.lens_curves(lens, 0).layout.title.text


def test_importance_map_splits_gqa_groups_and_attribution_bars_carry_the_values(model, tiny_tokenizer, prompt):
    result = inside.head_importance(model, prompt, "zero")
    figure = figures.importance_heatmap(result)
    assert list(figure.data[0].x) == ["H0 (KV0)", "H1 (KV0)", "H2 (KV1)", "H3 (KV1)"]
    assert [shape.x0 for shape in figure.layout.shapes] == [1.5]  # one line between the two KV groups
    attribution = inside.attribute(model, tiny_tokenizer, prompt, None, None, 8)
    bars = figures.attribution_figure(attribution).data
    assert np.allclose(bars[0].x, attribution.ig) and np.allclose(bars[1].x, attribution.loo)

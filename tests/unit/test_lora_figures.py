"""LoRA figures: titled axes, explained colours, exact numbers in hover, long runs thinned."""

from __future__ import annotations

import pytest

from playground import lora
from playground.figures import lora as figures


def progress(n_steps: int) -> lora.TrainingProgress:
    events = [{"event": "queued", "job_id": "j", "total_steps": n_steps, "time": 0.0},
              {"event": "start", "time": 1.0, "settings": {"max_grad_norm": 1.0, "mask_prompt": True}}]
    for step in range(1, n_steps + 1):
        events.append({"event": "step", "step": step, "loss": 3.0 / step, "learning_rate": 1e-3, "grad_norm": 0.5,
                       "tokens_per_second": 100.0, "time": 1.0 + step})
    events += [{"event": "eval", "step": 0, "eval_loss": 3.2, "time": 1.0},
               {"event": "eval", "step": n_steps, "eval_loss": 1.1, "time": 2.0 + n_steps}]
    return lora.summarize_events(events, now=3.0 + n_steps)


def assert_readable(figure):
    layout = figure.layout
    assert layout.title.text
    assert layout.font.size >= 12
    for axis in (a for name, a in layout.to_plotly_json().items() if name.startswith(("xaxis", "yaxis"))):
        assert axis.get("title", {}).get("text") or axis.get("matches"), axis
    for trace in figure.data:
        assert trace.name and trace.hovertemplate


def test_loss_figure_shows_raw_smoothed_and_eval_curves():
    figure = figures.loss_figure(progress(20))
    assert_readable(figure)
    raw, smooth, evaluation = figure.data
    assert list(raw.y) == [3.0 / s for s in range(1, 21)]
    assert list(smooth.y) == pytest.approx(lora.smoothed(raw.y))
    assert list(evaluation.x) == [0, 20] and list(evaluation.y) == [3.2, 1.1]
    assert "response tokens" in figure.layout.title.text


def test_long_runs_are_thinned_keeping_the_last_step():
    figure = figures.loss_figure(progress(1600))
    raw = figure.data[0]
    assert len(raw.x) <= figures.MAX_POINTS + 1 and raw.x[-1] == 1600 and raw.x[0] == 1
    assert "every 4th of 1600 steps" in figure.layout.title.text


def test_dynamics_figure_has_three_titled_panels_and_the_clip_line():
    figure = figures.dynamics_figure(progress(5))
    assert_readable(figure)
    assert [t.name for t in figure.data] == ["learning rate", "gradient norm", "tokens/s"]
    assert any("clipped to 1" in a.text for a in figure.layout.annotations)


def test_budget_figure_shows_full_vs_lora_per_matrix():
    budget = lora.LoraBudget(8, (lora.MatrixBudget("q_proj", 576, 576, 30, 30 * 576 * 576, 30 * 8 * 1152),
                               lora.MatrixBudget("v_proj", 192, 576, 30, 30 * 192 * 576, 30 * 8 * 768)),
                           30 * 576 * 576 + 30 * 192 * 576, 30 * 8 * 1920, 134_515_008, 4, 538_060_032)
    figure = figures.budget_figure(budget)
    assert_readable(figure)
    full, lora_bars = figure.data
    assert list(full.y) == [m.full for m in budget.matrices] and list(lora_bars.y) == [m.lora for m in budget.matrices]
    assert figure.layout.yaxis.type == "log"
    assert f"{budget.reduction_factor:.0f}× fewer" in figure.layout.title.text


def test_token_shift_figure_pairs_before_and_after():
    shift = lora.NextTokenShift("q", (lora.TokenShift(5, "Arr", 0.01, 0.7), lora.TokenShift(6, " The", 0.5, 0.1)), 2.5,
                              " The", "Arr")
    figure = figures.token_shift_figure(shift)
    assert_readable(figure)
    before, after = figure.data
    assert list(before.x) == [0.01, 0.5] and list(after.x) == [0.7, 0.1]
    assert list(after.y) == ["Arr  #5", "·The  #6"]  # whitespace made visible, ids keep labels unique
    assert "KL after‖before = 2.50 bits" in figure.layout.title.text

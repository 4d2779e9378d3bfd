"""The Calibration tab's handlers (CalibrationHandlers, called directly) on the tiny model through a stand-in
model manager: wiring, the built-in run (scored, then cached), CSV uploads, friendly errors, stop,
self-consistency; the figures."""

from __future__ import annotations

import threading
from collections import Counter

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest

from playground import calibration as cal
from playground.figures import calibration as figures
from playground.limits import LIMITS, PUBLIC_LIMITS
from playground.ui import calibration_tab


@pytest.fixture(scope="module")
def cache_dir(tiny_context):
    return tiny_context.settings.cache_dir


@pytest.fixture(scope="module")
def handlers(tiny_context):
    return calibration_tab.CalibrationHandlers(tiny_context)


@pytest.fixture(scope="module")
def demo(tiny_context):
    with gr.Blocks() as demo:
        calibration_tab.create_calibration_tab(tiny_context)
    return demo


def test_the_tab_has_its_api_endpoints(demo):
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    assert {"calibrate", "recalibrate", "self_consistency", "stop_calibration"} <= names


def test_built_in_run_scores_every_question_then_reads_the_cache(handlers, cache_dir, tiny_loaded):
    status, reliability, histogram, metrics, scaling_plot, scaling_table, categories, data = handlers.calibrate(
        "built-in", None, "normalised", 10, "equal-width")
    n = len(cal.load_questions())
    assert "scored now" in status and f"**{n} predictions**" in status and "Fitted temperature T =" in status
    assert data["kind"] == "multiclass" and data["all"]["n"] == n and len(data["all"]["bins"]) == 10
    assert sum(b["count"] for b in data["all"]["bins"]) == n
    assert data["temperature_scaling"]["calibration_size"] == n // 2
    assert data["temperature_scaling"]["test_before"]["n"] == n // 2
    assert [row[0] for row in categories] == ["arithmetic", "chemistry", "geography", "vocabulary"]
    assert [row[0] for row in metrics][:5] == ["accuracy", "ECE", "MCE", "Brier score", "NLL (nats)"]
    assert len(scaling_table) == 5
    for figure in (reliability, histogram, scaling_plot):
        assert isinstance(figure, go.Figure)
    assert len(list((cache_dir / "calibration").iterdir())) == 1
    # The same numbers as scoring directly; the second run comes from the cache.
    questions = cal.load_questions()
    direct = cal.predictions_from_scores(cal.score_questions(tiny_loaded.model, tiny_loaded.tokenizer, questions),
                                         questions)
    assert data["all"]["metrics"]["ece"]["value"] == pytest.approx(cal.calibration_metrics(direct).ece, abs=1e-9)
    again = handlers.calibrate("built-in", None, "raw", 5, "equal-mass")
    assert "from the cache" in again[0] and again[-1]["kind"] == "binary" and len(again[-1]["all"]["bins"]) == 5


def test_moving_bins_binning_or_mode_redraws_from_stored_scores_without_scoring(stub_context, tiny_loaded, tmp_path,
                                                                                monkeypatch):
    handlers = calibration_tab.CalibrationHandlers(stub_context(tiny_loaded, tmp_path))
    # nothing scored and nothing cached: the controls mark the view out of date instead of scoring for a minute
    status, *rest = handlers.redraw("built-in", None, "normalised", 12, "equal-width")
    assert "out of date" in status and "12 equal-width bins" in status and "Score & calibrate" in status
    assert all(isinstance(value, type(gr.skip())) for value in rest)
    handlers.calibrate("built-in", None, "normalised", 10, "equal-width")

    def no_scoring(*args, **kwargs):
        raise AssertionError("a control change must not score the questions again")

    monkeypatch.setattr(cal, "score_questions", no_scoring)
    redrawn = handlers.redraw("built-in", None, "raw", 12, "equal-mass")[-1]
    assert redrawn["n_bins"] == 12 and redrawn["binning"] == "equal-mass" and redrawn["confidence"] == "raw"
    assert len(redrawn["all"]["bins"]) == 12
    fresh = handlers.calibrate("built-in", None, "raw", 12, "equal-mass")[-1]  # a full run (scores from the cache)
    assert redrawn == fresh
    # a new visitor (nothing stored for them) redraws from the scores cached on disk, still without scoring
    other = calibration_tab.CalibrationHandlers(handlers.ctx)
    assert other.redraw("built-in", None, "raw", 12, "equal-mass")[-1] == fresh


def test_redrawing_an_upload_needs_the_same_file(stub_context, tmp_path):
    handlers = calibration_tab.CalibrationHandlers(stub_context(None, tmp_path))
    path = tmp_path / "p.csv"
    path.write_text("confidence,correct\n" + "".join(f"{0.5 + i / 200},{i % 3 > 0:d}\n" for i in range(90)))
    handlers.calibrate("csv", str(path), "normalised", 10, "equal-width")
    redrawn = handlers.redraw("csv", str(path), "normalised", 4, "equal-width")[-1]
    assert redrawn == handlers.calibrate("csv", str(path), "normalised", 4, "equal-width")[-1]
    assert "out of date" in handlers.redraw("csv", str(tmp_path / "other.csv"), "normalised", 4, "equal-width")[0]
    assert "out of date" in handlers.redraw("built-in", None, "normalised", 4, "equal-width")[0]  # no model


def test_csv_upload_needs_no_model(stub_context, tmp_path):
    handlers = calibration_tab.CalibrationHandlers(stub_context(None, tmp_path))
    path = tmp_path / "p.csv"
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1, 200)
    correct = rng.random(200) < confidence - 0.2  # over-confident by 0.2
    path.write_text("confidence,correct\n" + "".join(f"{c},{int(r)}\n" for c, r in zip(confidence, correct)))
    status, *_, data = handlers.calibrate("csv", str(path), "normalised", 10, "equal-width")
    assert "Uploaded predictions" in status and data["kind"] == "binary" and data["all"]["n"] == 200
    expected = cal.calibration_metrics(cal.predictions_from_confidence(confidence, correct))
    assert data["all"]["metrics"]["ece"]["value"] == pytest.approx(expected.ece)
    assert data["temperature_scaling"]["temperature"] > 1  # over-confident: soften


@pytest.mark.parametrize("args, message", [
    (("csv", None, "normalised", 10, "equal-width"), "Upload a predictions CSV first"),
    (("built-in", None, "normalised", 10, "equal-width"), "No model is loaded"),
    (("elsewhere", None, "normalised", 10, "equal-width"), "source must be"),
])
def test_missing_inputs_are_friendly_errors(stub_context, tmp_path, args, message):
    with pytest.raises(gr.Error, match=message):
        calibration_tab.CalibrationHandlers(stub_context(None, tmp_path)).calibrate(*args)


def test_a_bad_csv_reaches_the_user_with_the_row(stub_context, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("confidence,correct\n0.4,1\n2,0\n")
    handlers = calibration_tab.CalibrationHandlers(stub_context(None, tmp_path))
    with pytest.raises(gr.Error, match="Row 2: confidence = 2 is outside"):
        handlers.calibrate("csv", str(path), "normalised", 10, "equal-width")


def test_stop_cancels_a_running_scoring(stub_context, tiny_loaded, tmp_path, monkeypatch):
    handlers = calibration_tab.CalibrationHandlers(stub_context(tiny_loaded, tmp_path))
    started, finished = threading.Event(), {}
    real_score = cal.score_questions

    def slow_score(*args, **kwargs):
        started.set()
        kwargs["cancel"].wait(10)  # hold the first batch until Stop is pressed
        return real_score(*args, **kwargs)

    monkeypatch.setattr(cal, "score_questions", slow_score)
    worker = threading.Thread(target=lambda: finished.update(
        outputs=handlers.calibrate("built-in", None, "normalised", 10, "equal-width")))
    worker.start()
    assert started.wait(10)
    assert handlers.stop() == "⏹ Stopping after the current batch…"
    worker.join(30)
    status, *_, data = finished["outputs"]
    assert status.startswith("⏹ Scoring cancelled after 0 of") and data["empty"]
    assert not (tmp_path / "calibration").exists()


def test_a_stop_after_the_run_ended_says_nothing_is_running(handlers):
    handlers.calibrate("built-in", None, "normalised", 10, "equal-width")
    assert handlers.stop() == "Nothing is running."
    handlers.run_self_consistency(4, 2, 1.0)
    assert handlers.stop() == "Nothing is running."


def test_self_consistency_compares_two_confidences_on_the_same_questions(handlers):
    summary, figure, rows, table, data = handlers.run_self_consistency(4, 2, 1.0)
    assert len(data["questions"]) == 4 and all(len(a) == 2 for a in data["answers"])
    assert [row[0] for row in rows] == ["letter probability", "self-consistency (2 samples)"]
    assert len(table) == 4 and isinstance(figure, go.Figure) and "4 questions × 2 sampled answers" in summary
    assert set(data["comparison"]) == {"letter probability", "self-consistency (2 samples)"}
    assert all(0 <= c <= 1 for c in data["self_consistency_confidence"])


@pytest.mark.parametrize("public, most", [(False, LIMITS.self_consistency_samples),
                                          (True, PUBLIC_LIMITS.self_consistency_samples)])
def test_self_consistency_samples_are_capped_by_the_servers_limits(stub_context, tiny_loaded, tmp_path, public,
                                                                   most):
    run = calibration_tab.CalibrationHandlers(stub_context(tiny_loaded, tmp_path, public)).run_self_consistency
    with pytest.raises(gr.Error, match=f"Samples per question must be a whole number in 2..{most}, got {most + 1}"):
        run(4, most + 1, 1.0)
    assert PUBLIC_LIMITS.self_consistency_samples < LIMITS.self_consistency_samples


def test_self_consistency_subset_spans_every_category():
    subset = calibration_tab.self_consistency_subset(cal.load_questions(), 16)
    assert len(subset) == 16 and {q.split for q in subset} == {"test"} and len({q.id for q in subset}) == 16
    assert Counter(q.category for q in subset) == {c: 4 for c in ("geography", "chemistry", "arithmetic", "vocabulary")}
    assert Counter(q.answer for q in subset) == {letter: 4 for letter in "ABCD"}
    assert len({q.id for q in calibration_tab.self_consistency_subset(cal.load_questions(), 64)}) == 64


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def test_reliability_figure_titles_axes_and_puts_exact_numbers_in_the_hover():
    bins = cal.reliability_bins([0.95, 0.91, 0.55, 0.52, 0.51], [True, False, True, False, False], 10)
    figure = figures.reliability_figure([("before", bins), ("after", bins)], "Reliability")
    assert figure.layout.xaxis.title.text == "confidence" and figure.layout.yaxis.title.text == "accuracy"
    assert figure.layout.xaxis2.title.text == "confidence"
    bars = [t for t in figure.data if isinstance(t, go.Bar) and t.name.startswith("accuracy")]
    assert len(bars) == 2 and list(bars[0].y) == pytest.approx([1 / 3, 0.5]) and list(bars[0].marker.color) == [3, 2]
    assert "3 items" in bars[0].hovertext[0] and "mean confidence 0.5267" in bars[0].hovertext[0]
    assert "over-confident" in bars[0].hovertext[1]
    gap = next(t for t in figure.data if t.name == "gap to confidence")
    assert gap.base[1] == pytest.approx(0.5) and gap.y[1] == pytest.approx(0.43)
    assert figure.layout.coloraxis.colorbar.title.text == "items"
    assert sum(bool(t.showlegend) for t in figure.data) == 4  # one legend entry per kind, not per panel
    assert figure.layout.font.size >= 12


def test_confidence_histogram_counts_right_and_wrong():
    confidence = np.array([0.12, 0.14, 0.9, 0.95, 0.97])
    correct = np.array([False, True, True, True, False])
    figure = figures.confidence_histogram(confidence, correct, "Confidence", n_bins=10)
    right, wrong = figure.data
    assert right.name == "right" and wrong.name == "wrong"
    assert right.y[1] == 1 and wrong.y[1] == 1 and right.y[9] == 2 and wrong.y[9] == 1
    assert "2 right, 1 wrong (66.7% right)" in right.hovertext[9]
    assert figure.layout.xaxis.title.text == "confidence" and figure.layout.yaxis.title.text == "predictions"

"""Calibration tab: score the built-in multiple-choice questions with the loaded model (or upload any
classifier's predictions), draw reliability diagrams, measure ECE/MCE/Brier/NLL with bootstrap CIs and
the noise floor, and fix the model's confidence with temperature scaling. Handlers are thin adapters
over playground.calibration and playground.figures.calibration."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from playground import calibration as cal
from playground.engine import EngineTokenSource
from playground.engine.calibration import engine_scores
from playground.figures import calibration as figures
from playground.figures.style import empty_figure
from playground.limits import shown, whole_number_in
from playground.sessions import MAX_SESSIONS
from playground.ui.common import StopSwitches, explanation, page_key
from playground.ui.context import AppContext
from playground.ui.engine import engine_or_local
from playground.ui.errors import user_errors

EXPLANATION = r"""
### What you are seeing: is the model as sure as it sounds?
We ask the loaded model 512 multiple-choice questions (geography, chemistry, arithmetic, word meaning;
written and checked by this project) and read its probability for each answer letter A–D at the answer
position. Its **confidence** is the largest of the four (renormalised over the options), and it is
**right** when that letter is the key. A model is *calibrated* when, of all the answers it gives with
confidence 0.7, about 70% are right.

Group predictions into bins $B_1..B_M$ by confidence. The **reliability diagram** plots each bin's accuracy
against its mean confidence; the diagonal is perfect calibration. The **expected calibration error** is
the count-weighted gap: $\mathrm{ECE} = \sum_{m} \frac{|B_m|}{n}\,\bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr|$
(MCE is the largest gap). **Brier** $= \frac1n\sum_i \sum_k (p_{ik} - y_{ik})^2$ and **NLL**
$= -\frac1n\sum_i \log p_{i,y_i}$ score the probabilities themselves.

**Temperature scaling** divides the log-probabilities by one number, $p_k \propto \exp(\log p_k / T)$,
with $T$ fitted on the calibration half to minimise NLL and judged on the test half. $T > 1$ softens
an over-confident model; the chosen letter, and so the accuracy, never changes.

**Takeaway:** a confidence is only a promise; the reliability diagram checks it, and one fitted
number $T$ is often enough to make the promise honest.
"""

SOURCES = [("Built-in questions (loaded model)", "built-in"), ("Uploaded predictions CSV", "csv")]
CONFIDENCE_CHOICES = [("normalised over A–D", "normalised"), ("raw letter probability", "raw")]
EMPTY_MESSAGE = "Press “Score & calibrate” to score the questions (about a minute the first time, then cached)."
METRIC_LABELS = {"accuracy": "accuracy", "ece": "ECE", "mce": "MCE", "brier": "Brier score", "nll": "NLL (nats)"}
METRIC_HEADERS = ["metric", "value", "95% CI (bootstrap)"]
SCALING_HEADERS = ["metric (test half)", "before (T = 1)", "95% CI before", "after (fitted T)", "95% CI after"]
CATEGORY_HEADERS = ["category", "items", "accuracy", "mean confidence", "ECE"]
SELF_CONSISTENCY_HEADERS = ["id", "question", "key", "pick", "p(pick)", "sampled answers", "majority", "agreement"]
SELF_CONSISTENCY_WIDTHS = ["9%", "31%", "6%", "6%", "9%", "19%", "9%", "11%"]


# ---------------------------------------------------------------------------------------------
# Formatting (numbers -> tables and sentences; no math here)
# ---------------------------------------------------------------------------------------------


def _interval(report: cal.CalibrationReport, name: str) -> str:
    interval = report.intervals[name]
    return f"[{interval.low:.4f}, {interval.high:.4f}]"


def metrics_rows(report: cal.CalibrationReport) -> list[list[Any]]:
    rows = [[METRIC_LABELS[name], round(getattr(report.metrics, name), 4), _interval(report, name)]
            for name in cal.METRIC_NAMES]
    floor = report.noise_floor
    rows.append(["ECE noise floor (perfectly calibrated, same n)", round(floor.mean, 4),
                 f"95th percentile {floor.p95:.4f}"])
    return rows


def comparison_row(name: str, report: cal.CalibrationReport) -> list[Any]:
    """[name, accuracy, ECE, ECE CI, Brier, NLL]: one row of a side-by-side comparison."""
    m = report.metrics
    return [name, round(m.accuracy, 4), round(m.ece, 4), _interval(report, "ece"), round(m.brier, 4), round(m.nll, 4)]


def scaling_rows(scaling: cal.TemperatureScaling) -> list[list[Any]]:
    return [[METRIC_LABELS[name], round(getattr(scaling.before.metrics, name), 4), _interval(scaling.before, name),
             round(getattr(scaling.after.metrics, name), 4), _interval(scaling.after, name)]
            for name in cal.METRIC_NAMES]


def category_rows(rows: list[cal.CategoryRow]) -> list[list[Any]]:
    return [[r.category, r.n, round(r.accuracy, 4), round(r.mean_confidence, 4), round(r.ece, 4)] for r in rows]


def noise_verdict(report: cal.CalibrationReport) -> str:
    """Is the measured ECE more than sampling noise? Compared with the noise floor's 95th percentile."""
    ece, floor = report.metrics.ece, report.noise_floor
    if ece > floor.p95:
        return (f"ECE **{ece:.3f}** is above what a perfectly calibrated model would show on {report.metrics.n} items "
                f"(noise floor {floor.mean:.3f}, 95th percentile {floor.p95:.3f}): the miscalibration is real.")
    return (f"ECE **{ece:.3f}** is within the noise floor of a perfectly calibrated model on {report.metrics.n} items "
            f"(mean {floor.mean:.3f}, 95th percentile {floor.p95:.3f}): this set is too small to call it miscalibrated.")


def status_markdown(source_line: str, result: cal.CalibrationResult) -> str:
    overall = result.overall.metrics
    lines = [source_line,
             f"**{overall.n} predictions** · accuracy **{overall.accuracy:.1%}** · mean confidence "
             f"**{result.overall.confidence.mean():.1%}** · " + noise_verdict(result.overall)]
    if result.scaling is not None:
        fit = result.scaling.fit
        direction = "softens (over-confident)" if fit.temperature > 1 else "sharpens (under-confident)"
        lines.append(f"**Fitted temperature T = {fit.temperature:.3f}** on {result.scaling.calibration_size} "
                     f"calibration items ({direction}); test-half ECE **{result.scaling.before.metrics.ece:.3f} → "
                     f"{result.scaling.after.metrics.ece:.3f}**, NLL {result.scaling.before.metrics.nll:.3f} → "
                     f"{result.scaling.after.metrics.nll:.3f}.")
    if result.kind == "binary":
        lines.append("ℹ️ Only a confidence per item is known (no per-option probabilities): Brier and NLL are "
                     "binary (confidence vs right/wrong) and temperature scales the confidence's log-odds.")
    lines += [f"ℹ️ {note}" for note in result.notes]
    return "\n\n".join(lines)


def empty_outputs(message: str) -> tuple[Any, ...]:
    """The tab's outputs before a run (or after a cancelled one): the message, blank plots and tables."""
    blank = empty_figure(message)
    return (message, blank, blank, [], blank, [], [], {"empty": True, "message": message})


def result_outputs(source_line: str, result: cal.CalibrationResult, data: dict[str, Any]) -> tuple[Any, ...]:
    overall = result.overall
    title = f"Reliability diagram — all {overall.metrics.n} items ({result.binning}, {result.n_bins} bins)"
    reliability = figures.reliability_figure([(f"ECE {overall.metrics.ece:.3f}", overall.bins)], title)
    histogram = figures.confidence_histogram(overall.confidence, overall.correct,
                                             "Confidence of right and wrong answers")
    if result.scaling is None:
        scaling_plot, scaling_table = empty_figure("Temperature scaling needs both halves (see the notes above)."), []
    else:
        scaling = result.scaling
        scaling_plot = figures.reliability_figure(
            [(f"before: T = 1, ECE {scaling.before.metrics.ece:.3f}", scaling.before.bins),
             (f"after: T = {scaling.fit.temperature:.3f}, ECE {scaling.after.metrics.ece:.3f}", scaling.after.bins)],
            f"Test half ({scaling.before.metrics.n} items) before and after temperature scaling")
        scaling_table = scaling_rows(scaling)
    return (status_markdown(source_line, result), reliability, histogram, metrics_rows(overall), scaling_plot,
            scaling_table, category_rows(result.categories), data)


def self_consistency_subset(questions: tuple[cal.Question, ...], size: int) -> list[cal.Question]:
    """`size` test-half questions spread evenly over the categories and answer letters.

    The set is stored by category with the key cycling A-D, so taking every `step`-th question
    would repeat one letter; shifting the i-th pick by i mod 4 cycles the letters instead.
    """
    test = [q for q in questions if q.split == "test"]
    step = max(1, len(test) // size)
    return [test[min(i * step + i % 4, len(test) - 1)] for i in range(min(size, len(test)))]


def stale_outputs(n_bins: float, binning: str) -> tuple[Any, ...]:
    """The controls moved but nothing scored is at hand to redraw from: say so, leave the view as it is."""
    message = (f"⚠ The view below is out of date: it was not drawn with {int(n_bins)} {binning} bins and these "
               "settings. Press **Score & calibrate** to compute it.")
    return (message, *(gr.skip() for _ in range(7)))


@dataclass(frozen=True)
class Scored:
    """One visitor's scored predictions, kept so bins, binning and the confidence mode redraw without scoring
    again. `predictions` maps a confidence mode to its predictions (an upload has one, "uploaded")."""

    source: str  # "built-in" | "csv"
    predictions: dict[str, cal.Predictions]
    calibration: np.ndarray  # [n] bool: the calibration half
    source_line: str  # "... Confidence: {mode} letter probability." for built-in ones
    notes: tuple[str, ...] = ()
    model: tuple[str, str, str] | None = None  # (model key, quantization, device) that scored built-in ones
    file: str | None = None  # the uploaded CSV's path

    def for_mode(self, mode: str) -> cal.Predictions:
        return self.predictions.get(mode) or next(iter(self.predictions.values()))


def model_identity(loaded: Any) -> tuple[str, str, str]:
    return loaded.spec.key, loaded.precision.quantization, loaded.device


class NotScoredYet(LookupError):
    """The built-in questions' scores are not in the cache (redrawing would mean a minute of scoring)."""


def refuse_to_score() -> cal.QuestionScores:
    raise NotScoredYet


# ---------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------


class CalibrationHandlers:
    """The tab's event handlers as plain methods (the tab wires them; tests call them): one per context, holding
    each browser session's cancel event, which the Stop button sets, and its last scored predictions, which the
    bins, binning and confidence controls redraw from."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.stops = StopSwitches()
        # per browser session, the last run's predictions; bounded like the sessions themselves (~40 kB each)
        self.scored: OrderedDict[str, Scored] = OrderedDict()

    def built_in_scored(self, request: gr.Request | None, progress: gr.Progress | None) -> Scored:
        """The built-in questions scored by the engine when one is set, else by this visitor's model: from the
        cache, else scored now with progress (with `progress=None`, a cache miss raises NotScoredYet instead of
        scoring)."""
        return engine_or_local(self.ctx, lambda engine: self.engine_scored(engine, request, progress),
                               lambda: self.local_scored(request, progress))

    def engine_scored(self, engine: EngineTokenSource, request: gr.Request | None,
                      progress: gr.Progress | None) -> Scored:
        questions = cal.load_questions()

        def score() -> cal.QuestionScores:
            assert progress is not None
            with self.stops.running(request) as cancel:
                return engine_scores(engine, questions, cancel=cancel,
                                     progress=lambda done, total: progress((done, total), unit="questions",
                                                                           desc="Scoring on the engine"))

        scores, from_cache = cal.cached_scores(self.ctx.settings.cache_dir, engine.key, "engine", "remote",
                                               questions, score if progress is not None else refuse_to_score)
        origin = "from the cache" if from_cache else f"scored now in {scores.seconds:.1f} s"
        source_line = (f"**The engine** {engine.client.url} serving **{engine.client.model()}** on the built-in "
                       f"{len(questions)} questions (exact letter log-probabilities from echoed prompts), {origin}. "
                       "Confidence: {mode} letter probability.")
        predictions = {mode: cal.predictions_from_scores(scores, questions, mode) for mode in cal.CONFIDENCE_MODES}
        return Scored("built-in", predictions, cal.calibration_split(questions), source_line,
                      model=(engine.key, "engine", "remote"))

    def local_scored(self, request: gr.Request | None, progress: gr.Progress | None) -> Scored:
        loaded = self.ctx.model()
        questions = cal.load_questions()

        def score() -> cal.QuestionScores:
            assert progress is not None
            progress((0, len(questions)), desc="Scoring questions", unit="questions")
            with self.stops.running(request) as cancel:
                return cal.score_questions(loaded.model, loaded.tokenizer, questions, lock=loaded.lock, cancel=cancel,
                                           progress=lambda done, total: progress((done, total), unit="questions",
                                                                                 desc="Scoring questions"))

        scores, from_cache = cal.cached_scores(self.ctx.settings.cache_dir, loaded.spec.key,
                                               loaded.precision.quantization, loaded.device, questions,
                                               score if progress is not None else refuse_to_score)
        origin = (f"from the cache (scored earlier in {scores.seconds:.0f} s)" if from_cache else
                  f"scored now in {scores.seconds:.1f} s ({len(questions) / scores.seconds:.1f} questions/s, "
                  f"batches of {scores.batch_size}, {scores.prefix_tokens} shared prompt tokens computed once)")
        source_line = (f"**{loaded.spec.label}** ({loaded.precision.label}, {loaded.device}) on the built-in "
                       f"{len(questions)} questions, {origin}. Confidence: {{mode}} letter probability.")
        predictions = {mode: cal.predictions_from_scores(scores, questions, mode) for mode in cal.CONFIDENCE_MODES}
        return Scored("built-in", predictions, cal.calibration_split(questions), source_line,
                      model=model_identity(loaded))

    def render(self, scored: Scored, mode: str, n_bins: float, binning: str) -> tuple[Any, ...]:
        """Bins, metrics and temperature scaling of stored predictions (~0.2 s for 512 items: no model call)."""
        result = cal.calibrate(scored.for_mode(mode), scored.calibration, int(n_bins), binning, scored.notes)
        built_in = scored.source == "built-in"
        data = {"source": scored.source, "confidence": mode if built_in else "uploaded", **cal.result_json(result)}
        return result_outputs(scored.source_line.format(mode=mode), result, data)

    @user_errors
    def calibrate(self, source: str, csv_file: str | None, mode: str, n_bins: float, binning: str,
                  request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        if source == "csv":
            if not csv_file:
                raise cal.CalibrationInputError("Upload a predictions CSV first, or pick the built-in questions. "
                                                + cal.CSV_HELP)
            uploaded = cal.predictions_from_csv(csv_file)
            scored = Scored("csv", {"uploaded": uploaded.predictions}, uploaded.calibration,
                            f"**Uploaded predictions** ({len(uploaded.predictions)} rows).", uploaded.notes,
                            file=csv_file)
        elif source == "built-in":
            if mode not in cal.CONFIDENCE_MODES:
                raise cal.CalibrationInputError(f"confidence mode must be one of {cal.CONFIDENCE_MODES}, "
                                                f"got {shown(mode)}")
            try:
                scored = self.built_in_scored(request, progress)
            except cal.ScoringCancelled as cancelled:
                return empty_outputs(f"⏹ {cancelled}")
        else:
            raise cal.CalibrationInputError(f"source must be 'built-in' or 'csv', got {shown(source)}")
        self.remember(request, scored)
        return self.render(scored, mode, n_bins, binning)

    def remember(self, request: gr.Request | None, scored: Scored) -> None:
        key = page_key(request)
        self.scored[key] = scored
        self.scored.move_to_end(key)
        while len(self.scored) > MAX_SESSIONS:
            self.scored.popitem(last=False)

    def stored(self, request: gr.Request | None, source: str, csv_file: str | None) -> Scored | None:
        """This visitor's last predictions from `source`, if they still belong to the model it uses now (or to
        the CSV it shows now)."""
        scored = self.scored.get(page_key(request))
        if scored is None or scored.source != source or (source == "csv" and scored.file != csv_file):
            return None
        if source == "built-in" and scored.model not in self.scorer_identities():
            return None
        return scored

    def scorer_identities(self) -> list[tuple[str, str, str]]:
        """Who may have scored the built-in questions now: the engine (when set) and this visitor's model."""
        identities = [(self.ctx.engine.key, "engine", "remote")] if self.ctx.engine is not None else []
        if self.ctx.models.active() is not None:
            identities.append(model_identity(self.ctx.model()))
        return identities

    @user_errors
    def redraw(self, source: str, csv_file: str | None, mode: str, n_bins: float, binning: str,
               request: gr.Request = None) -> tuple[Any, ...]:
        """Bins, binning or the confidence mode moved: redraw from this visitor's stored predictions, or from the
        cached scores of the built-in questions; never score (a minute): without them, mark the view out of date."""
        if source == "built-in" and not self.scorer_identities():
            return stale_outputs(n_bins, binning)
        scored = self.stored(request, source, csv_file)
        if scored is None:
            if source != "built-in":
                return stale_outputs(n_bins, binning)
            try:
                scored = self.built_in_scored(request, None)
            except NotScoredYet:
                return stale_outputs(n_bins, binning)
            self.remember(request, scored)
        return self.render(scored, mode, n_bins, binning)

    def stop(self, request: gr.Request = None) -> str:
        return "⏹ Stopping after the current batch…" if self.stops.stop(request) else "Nothing is running."

    @user_errors
    def run_self_consistency(self, size: float, samples: float, temperature: float,
                             request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        samples = whole_number_in("Samples per question", samples, 2, self.ctx.limits.self_consistency_samples)
        size = whole_number_in("questions", size, 4, self.ctx.limits.self_consistency_questions)
        loaded = self.ctx.model()
        subset = self_consistency_subset(cal.load_questions(), int(size))
        letter = cal.predictions_from_scores(cal.score_questions(loaded.model, loaded.tokenizer, subset,
                                                                 lock=loaded.lock), subset)
        progress((0, len(subset)), desc="Sampling answers", unit="questions")
        try:
            with self.stops.running(request) as cancel:
                consistency = cal.self_consistency(
                    loaded.model, loaded.tokenizer, subset, int(samples), float(temperature),
                    eos_token_ids=loaded.eos_token_ids, lock=loaded.lock, cancel=cancel,
                    progress=lambda done, total: progress((done, total), desc="Sampling answers", unit="questions"))
        except cal.ScoringCancelled as cancelled:
            blank = empty_figure(f"⏹ {cancelled}")
            return f"⏹ {cancelled}", blank, [], [], {"empty": True, "message": str(cancelled)}
        # Both as (confidence, right/wrong) so every metric means the same thing for the two columns.
        compared = {"letter probability": cal.predictions_from_confidence(letter.confidence, letter.correct),
                    f"self-consistency ({int(samples)} samples)": cal.predictions_from_confidence(
                        consistency.confidence, consistency.correct)}
        n_bins = 5  # a subset of tens of questions: with more bins most would hold one or two items
        reports = {name: cal.calibration_report(predictions, n_bins) for name, predictions in compared.items()}
        figure = figures.reliability_figure(
            [(f"{name}: ECE {report.metrics.ece:.3f}", report.bins) for name, report in reports.items()],
            f"Two confidences on the same {len(subset)} test questions ({n_bins} equal-width bins)")
        rows = [comparison_row(name, report) for name, report in reports.items()]
        letter_pick = letter.probs.argmax(axis=1)
        table = [[q.id, q.question, q.answer, cal.LETTERS[pick], round(float(conf), 4),
                  " ".join(a or "–" for a in answers), majority or "–", round(float(agreement), 4)]
                 for q, pick, conf, answers, majority, agreement in zip(
                     subset, letter_pick, letter.confidence, consistency.answers, consistency.majority,
                     consistency.confidence)]
        summary = (f"{len(subset)} questions × {int(samples)} sampled answers at T = {float(temperature):g} "
                   f"(max 6 new tokens each; “–” = no letter found). Self-consistency confidence = share of "
                   f"samples agreeing with the majority letter.")
        data = {"questions": [q.id for q in subset], "samples": int(samples), "temperature": float(temperature),
                "answers": [list(a) for a in consistency.answers], "majority": list(consistency.majority),
                "self_consistency_confidence": consistency.confidence.tolist(),
                "self_consistency_correct": consistency.correct.tolist(),
                "letter_confidence": letter.confidence.tolist(), "letter_correct": letter.correct.tolist(),
                "comparison": {name: cal.report_json(report) for name, report in reports.items()}}
        return summary, figure, rows, table, data


def create_calibration_tab(ctx: AppContext) -> dict[str, Any]:
    handlers = CalibrationHandlers(ctx)
    explanation(EXPLANATION)
    with gr.Row():
        source = gr.Radio(SOURCES, value="built-in", label="Predictions from")
        mode = gr.Radio(CONFIDENCE_CHOICES, value="normalised", label="Confidence (built-in questions)",
                        info="raw = the letter's share of the whole vocabulary, not renormalised")
        n_bins = gr.Slider(2, 30, value=10, step=1, label="Bins")
        binning = gr.Radio(list(cal.BINNINGS), value="equal-width", label="Binning",
                           info="equal-mass: each bin holds the same number of items")
    with gr.Accordion("Upload predictions (any classifier)", open=False):
        gr.Markdown(cal.CSV_HELP + f" At most {cal.MAX_CSV_ROWS:,} rows are used.")
        csv_file = gr.File(label="Predictions CSV", file_types=[".csv"], type="filepath", elem_id="calibration-csv")
    with gr.Row():
        run = gr.Button("Score & calibrate", variant="primary", scale=3)
        stop_button = gr.Button("Stop", variant="stop", scale=1)
    status = gr.Markdown(EMPTY_MESSAGE, elem_id="calibration-status")
    with gr.Row():
        reliability_plot = gr.Plot(label="Reliability diagram", elem_id="calibration-reliability")
        histogram_plot = gr.Plot(label="Confidence histogram", elem_id="calibration-histogram")
    metrics_table = gr.Dataframe(headers=METRIC_HEADERS, label="Metrics on all items", interactive=False,
                                 elem_id="calibration-metrics")
    gr.Markdown("### Temperature scaling: fitted on the calibration half, judged on the test half")
    scaling_plot = gr.Plot(label="Before and after", elem_id="calibration-scaling")
    scaling_table = gr.Dataframe(headers=SCALING_HEADERS, label="Test half before / after", interactive=False,
                                 elem_id="calibration-scaling-table")
    category_table = gr.Dataframe(headers=CATEGORY_HEADERS, label="Per category", interactive=False,
                                  elem_id="calibration-categories")
    with gr.Accordion("calibrate JSON (raw numbers)", open=False):
        result_json = gr.JSON(label="calibrate")

    with gr.Accordion("Self-consistency: confidence from agreeing samples", open=False):
        gr.Markdown("Instead of reading probabilities, sample several short answers and count how often they agree "
                    "with the most common letter. Slow (one generation per sample), so it runs on a subset of the "
                    "test half, side by side with the letter-probability confidence on the same questions.")
        with gr.Row():
            sc_size = gr.Slider(4, ctx.limits.self_consistency_questions, value=16, step=1, label="Questions")
            sc_samples = gr.Slider(2, ctx.limits.self_consistency_samples, value=8, step=1,
                                   label="Samples per question")
            sc_temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.1, label="Sampling temperature")
            sc_run = gr.Button("Sample answers", scale=0, min_width=180)
        sc_status = gr.Markdown()
        sc_plot = gr.Plot(label="Letter probability vs self-consistency", elem_id="calibration-self-consistency")
        sc_summary = gr.Dataframe(headers=["confidence", "accuracy", "ECE", "95% CI (ECE)", "Brier (binary)",
                                           "NLL (binary)"], label="Comparison", interactive=False)
        sc_table = gr.Dataframe(headers=SELF_CONSISTENCY_HEADERS, label="Per question (pick and p(pick): the letter-"
                                "probability answer)", interactive=False, wrap=True,
                                column_widths=SELF_CONSISTENCY_WIDTHS)
        with gr.Accordion("self_consistency JSON (raw numbers)", open=False):
            sc_json = gr.JSON(label="self_consistency")

    outputs = [status, reliability_plot, histogram_plot, metrics_table, scaling_plot, scaling_table, category_table,
               result_json]
    run.click(handlers.calibrate, [source, csv_file, mode, n_bins, binning], outputs, api_name="calibrate")
    # the controls redraw from stored confidences at once (mouse, arrow keys, a typed number)
    gr.on([mode.input, n_bins.input, binning.input], handlers.redraw, [source, csv_file, mode, n_bins, binning], outputs,
          api_name="recalibrate", trigger_mode="always_last", show_progress="hidden")
    stop_button.click(handlers.stop, None, status, api_name="stop_calibration", queue=False)
    sc_run.click(handlers.run_self_consistency, [sc_size, sc_samples, sc_temperature],
                 [sc_status, sc_plot, sc_summary, sc_table, sc_json], api_name="self_consistency")
    return {"source": source, "mode": mode, "n_bins": n_bins, "binning": binning, "csv_file": csv_file, "run": run,
            "stop": stop_button, "status": status, "reliability_plot": reliability_plot,
            "histogram_plot": histogram_plot, "metrics_table": metrics_table, "scaling_plot": scaling_plot,
            "scaling_table": scaling_table, "category_table": category_table, "result_json": result_json,
            "sc_size": sc_size, "sc_samples": sc_samples, "sc_temperature": sc_temperature, "sc_run": sc_run,
            "sc_status": sc_status, "sc_plot": sc_plot, "sc_summary": sc_summary, "sc_table": sc_table,
            "sc_json": sc_json}

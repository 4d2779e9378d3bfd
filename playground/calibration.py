"""Calibration: is the model as sure as it sounds?

Four steps, each a plain function over numbers:

1. Score multiple-choice questions with the loaded model: one forward per question (batched, left
   padded, the shared prompt prefix computed once), reading the probabilities of the option letters
   A-D at the answer position. `cached_scores` keeps them on disk per (model, quantization, device,
   dataset), so a second visit is instant.
2. Turn scores (or any classifier's uploaded predictions) into `Predictions`: a confidence per item
   and whether the prediction was right.
3. Measure calibration: reliability bins, ECE, MCE, Brier score, NLL, bootstrap 95% intervals, and
   the ECE a perfectly calibrated model with the same confidences would still show (noise floor).
4. Fix it: fit one temperature T on the calibration half (minimum NLL) and apply it to the test half.

Tiny worked example (4 predictions, 2 equal-width bins):

    >>> p = predictions_from_confidence([0.9, 0.8, 0.3, 0.2], [True, False, False, False])
    >>> round(calibration_metrics(p, n_bins=2).ece, 3)  # bins: [0.5, 1]: conf .85 acc .5; [0, .5): .25 vs 0
    0.3
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from playground.generation import encode_prompt, generate_text
from playground.limits import LIMITS, shown
from playground.sampling_pipeline import SamplingSettings

LETTERS = "ABCD"
QUESTIONS_PATH = Path(__file__).resolve().parents[1] / "assets" / "calibration" / "questions.json"
SYSTEM_PROMPT = "Answer multiple-choice questions with a single letter: A, B, C or D."
PROMPT_VERSION = 1  # bump when the prompt changes: it is part of the score cache key
BINNINGS = ("equal-width", "equal-mass")
CONFIDENCE_MODES = ("normalised", "raw")
BOOTSTRAP_RESAMPLES = 1000
NOISE_FLOOR_SIMULATIONS = 1000
TEMPERATURE_BOUNDS = (0.05, 20.0)
MAX_CSV_ROWS = LIMITS.csv_rows
PROBABILITY_FLOOR = 1e-12  # log(0) guard for NLL and temperature scaling


class CalibrationInputError(ValueError):
    """Bad input (a setting, a CSV, a question file); the message says what and where."""


class ScoringCancelled(RuntimeError):
    """The user stopped scoring; nothing was cached."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"Scoring cancelled after {done} of {total} questions; nothing was cached.")
        self.done = done
        self.total = total


# ---------------------------------------------------------------------------------------------
# The question set
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    split: str  # calibration | test
    question: str
    options: tuple[str, ...]  # 4 options, shown as A-D
    answer: str  # the correct letter

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)


def load_questions(path: Path = QUESTIONS_PATH) -> tuple[Question, ...]:
    """The shipped question set (assets/calibration/questions.json, built by build_questions.py)."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))["questions"]
        questions = tuple(Question(r["id"], r["category"], r["split"], r["question"], tuple(r["options"]),
                                   r["answer"]) for r in records)
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise CalibrationInputError(f"Cannot read the question set {path}: {error}") from error
    for question in questions:
        if len(question.options) != len(LETTERS) or question.answer not in LETTERS:
            raise CalibrationInputError(f"Question {question.id} needs 4 options and an answer in A-D.")
    return questions


def question_messages(question: Question) -> list[dict[str, str]]:
    """The chat the model sees: our short system prompt, then the question with lettered options."""
    body = "\n".join([question.question, *(f"{letter}. {option}" for letter, option in zip(LETTERS, question.options))])
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": body}]


def dataset_hash(questions: Sequence[Question]) -> str:
    """sha256 of the questions and the prompt: any change to either invalidates cached scores."""
    payload = json.dumps({"prompt": [PROMPT_VERSION, SYSTEM_PROMPT], "questions": [asdict(q) for q in questions]},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def letter_token_ids(tokenizer: Any) -> list[int]:
    """The token id of each bare letter A-D (what the model emits first after the assistant header)."""
    ids = []
    for letter in LETTERS:
        encoded = tokenizer.encode(letter, add_special_tokens=False)
        if len(encoded) != 1:
            raise CalibrationInputError(f"This tokenizer splits the letter {letter!r} into {len(encoded)} tokens; "
                                        "letter scoring needs one token per option letter.")
        ids.append(int(encoded[0]))
    return ids


# ---------------------------------------------------------------------------------------------
# Scoring with the model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionScores:
    """log p(letter) at the answer position, over the model's whole vocabulary."""

    ids: tuple[str, ...]
    letter_log_probs: np.ndarray  # [n_questions, 4] float64
    seconds: float = 0.0
    batch_size: int = 0
    prefix_tokens: int = 0  # tokens shared by every prompt, computed once

    def normalised_probabilities(self) -> np.ndarray:
        """Letter probabilities renormalised over the four options: [n, 4], rows sum to 1."""
        shifted = self.letter_log_probs - self.letter_log_probs.max(axis=1, keepdims=True)
        weights = np.exp(shifted)
        return weights / weights.sum(axis=1, keepdims=True)

    def raw_probabilities(self) -> np.ndarray:
        """The letters' share of the full next-token distribution: [n, 4], rows sum to <= 1."""
        return np.exp(self.letter_log_probs)


def _common_prefix_length(sequences: Sequence[list[int]]) -> int:
    """Length of the token prefix every sequence shares, leaving at least one token in each."""
    shortest = min(len(seq) for seq in sequences)
    length = 0
    while length < shortest - 1 and all(seq[length] == sequences[0][length] for seq in sequences):
        length += 1
    return length


def _expanded_cache(prefix_cache: Any, batch: int, config: Any) -> Any:
    """A fresh DynamicCache holding the prefix's keys/values for `batch` rows (views, no copies)."""
    from transformers import DynamicCache

    pairs = [(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1))
             for layer in prefix_cache.layers]  # each [batch, kv_heads, prefix_len, head_dim]
    return DynamicCache(pairs, config=config)


def score_questions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Question],
    batch_size: int = 16,
    lock: Any = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> QuestionScores:
    """Score every question with one forward each, `batch_size` questions per forward.

    The prompts share a token prefix (system prompt, chat header); it runs once and its KV cache is
    reused by every batch. The rest is left padded, so the answer position is the last column of every
    row; the attention mask hides the padding and position ids continue from the prefix, so each row
    computes exactly what a lone forward on its prompt would (up to float rounding; a dynamically
    quantized int8 model shares one activation scale per forward, so its rows shift slightly).
    """
    if not questions:
        raise CalibrationInputError("There are no questions to score.")
    if batch_size < 1:
        raise CalibrationInputError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    letters = torch.tensor(letter_token_ids(tokenizer))
    prompts = [encode_prompt(tokenizer, question_messages(q))[0].tolist() for q in questions]
    prefix_length = _common_prefix_length(prompts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    guard = lock if lock is not None else threading.RLock()
    # Sorting by length keeps padding small; results go back to question order at the end.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    log_probs = np.zeros((len(questions), len(LETTERS)))
    with torch.inference_mode():
        with guard:
            prefix_ids = torch.tensor([prompts[0][:prefix_length]], device=device)  # [1, prefix]
            prefix_cache = model(input_ids=prefix_ids, use_cache=True).past_key_values if prefix_length else None
        for start in range(0, len(order), batch_size):
            if cancel is not None and cancel.is_set():
                raise ScoringCancelled(start, len(order))
            rows = order[start:start + batch_size]
            suffixes = [prompts[i][prefix_length:] for i in rows]
            width = max(len(s) for s in suffixes)
            input_ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in suffixes], device=device)  # [b, width]
            suffix_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device)
            attention_mask = torch.cat([suffix_mask.new_ones(len(rows), prefix_length), suffix_mask], dim=1)
            position_ids = (prefix_length + suffix_mask.cumsum(-1) - 1).clamp(min=prefix_length)  # [b, width]
            with guard:
                past = _expanded_cache(prefix_cache, len(rows), model.config) if prefix_cache is not None else None
                # logits_to_keep=1: only the answer position goes through the 49k-wide output layer.
                logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               past_key_values=past, use_cache=past is not None, logits_to_keep=1).logits[:, -1]
            batch_log_probs = logits.float().log_softmax(dim=-1)[:, letters.to(logits.device)]  # [b, 4]
            log_probs[rows] = batch_log_probs.double().cpu().numpy()
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
    return QuestionScores(tuple(q.id for q in questions), log_probs, time.perf_counter() - started,
                          batch_size, prefix_length)


def _cache_file(cache_dir: Path, model_key: str, quantization: str, device: str, digest: str) -> Path:
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)
    return Path(cache_dir) / "calibration" / f"{safe_model}--{quantization}--{device}--{digest[:16]}.json"


def cached_scores(
    cache_dir: Path,
    model_key: str,
    quantization: str,
    device: str,
    questions: Sequence[Question],
    compute: Callable[[], QuestionScores],
) -> tuple[QuestionScores, bool]:
    """Scores from the JSON cache when present and intact, else `compute()` and write them.

    Returns (scores, came_from_cache). The key is (model, quantization, device, dataset hash);
    the file is written to a temporary name and renamed, so an interrupted write is never read.
    """
    digest = dataset_hash(questions)
    path = _cache_file(cache_dir, model_key, quantization, device, digest)
    ids = tuple(q.id for q in questions)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        log_probs = np.asarray(stored["letter_log_probs"], dtype=np.float64)
        if stored["dataset_hash"] == digest and tuple(stored["ids"]) == ids and log_probs.shape == (len(ids), 4):
            return QuestionScores(ids, log_probs, float(stored["seconds"]), int(stored["batch_size"]),
                                  int(stored["prefix_tokens"])), True
    except (OSError, KeyError, TypeError, ValueError):
        pass  # missing or damaged: score again
    scores = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model_key, "quantization": quantization, "device": device, "dataset_hash": digest,
               "ids": list(scores.ids), "letter_log_probs": scores.letter_log_probs.tolist(),
               "seconds": scores.seconds, "batch_size": scores.batch_size, "prefix_tokens": scores.prefix_tokens}
    # A name of this writer's own: two visitors or processes scoring the same file at once never mix their writes.
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    partial.write_text(json.dumps(payload), encoding="utf-8")
    partial.replace(path)
    return scores, False


# ---------------------------------------------------------------------------------------------
# Predictions: what every metric takes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predictions:
    """n predictions. `probs`/`labels` are present when per-class probabilities are known
    (multiclass Brier, NLL and temperature scaling); otherwise only confidence + correctness."""

    confidence: np.ndarray  # [n] float64 in [0, 1]
    correct: np.ndarray  # [n] bool
    probs: np.ndarray | None = None  # [n, k] float64, rows sum to 1
    labels: np.ndarray | None = None  # [n] int
    categories: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.confidence)

    @property
    def is_multiclass(self) -> bool:
        return self.probs is not None

    def subset(self, index: np.ndarray) -> Predictions:
        """The predictions at `index` (a boolean mask or integer indices; repeats allowed)."""
        return Predictions(
            self.confidence[index], self.correct[index],
            None if self.probs is None else self.probs[index],
            None if self.labels is None else self.labels[index],
            None if self.categories is None else tuple(np.asarray(self.categories, dtype=object)[index]),
        )


def predictions_from_probabilities(probs: Any, labels: Any, categories: Sequence[str] | None = None) -> Predictions:
    """Per-class probabilities [n, k] and true labels [n]: confidence = max prob, correct = argmax == label."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probs.argmax(axis=1)  # ties go to the first class, as in torch.argmax
    return Predictions(probs.max(axis=1), predicted == labels, probs, labels,
                       tuple(categories) if categories is not None else None)


def predictions_from_confidence(confidence: Any, correct: Any, categories: Sequence[str] | None = None) -> Predictions:
    """A confidence in [0, 1] per prediction and whether it was right."""
    return Predictions(np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool),
                       categories=tuple(categories) if categories is not None else None)


def predictions_from_scores(scores: QuestionScores, questions: Sequence[Question], mode: str = "normalised") -> Predictions:
    """Model scores -> predictions. normalised: softmax over the 4 letters (multiclass);
    raw: each letter's share of the full vocabulary (confidence = max raw letter probability)."""
    if mode not in CONFIDENCE_MODES:
        raise CalibrationInputError(f"confidence mode must be one of {CONFIDENCE_MODES}, got {shown(mode)}")
    labels = np.array([q.answer_index for q in questions])
    categories = [q.category for q in questions]
    if mode == "normalised":
        return predictions_from_probabilities(scores.normalised_probabilities(), labels, categories)
    raw = scores.raw_probabilities()
    return predictions_from_confidence(raw.max(axis=1), raw.argmax(axis=1) == labels, categories)


def calibration_split(questions: Sequence[Question]) -> np.ndarray:
    """[n] bool: True for the calibration half of the question set, False for the test half."""
    return np.array([q.split == "calibration" for q in questions])


def random_split(n: int, seed: int = 0) -> np.ndarray:
    """[n] bool: a seeded random half (floor(n/2) rows) for calibration, the rest for testing."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return mask


# ---------------------------------------------------------------------------------------------
# Uploaded predictions (CSV)
# ---------------------------------------------------------------------------------------------

CSV_HELP = ("Expected columns: either `confidence` (0-1) and `correct` (1/0 or true/false), or `label` and one "
            "`prob_<class>` column per class (probabilities, each row summing to 1; `label` is a class name "
            "or a 0-based index). Optional: `category`, `split` (calibration/test).")
_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


@dataclass(frozen=True)
class UploadedPredictions:
    predictions: Predictions
    calibration: np.ndarray  # [n] bool: rows used to fit the temperature
    notes: tuple[str, ...]


def _cut(name: str, limit: int = 60) -> str:
    """A column name as a message shows it: a header cell may be megabytes long."""
    return name if len(name) <= limit else name[:limit - 3] + "..."


def _numeric_column(frame: Any, column: str, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """A column as float64, with the first empty / non-numeric / out-of-range row named in the error."""
    import pandas as pd

    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    for row, (text, value) in enumerate(zip(frame[column], values), start=1):
        if math.isnan(value):
            what = shown(text.strip()) if text.strip() else "empty"
            raise CalibrationInputError(f"Row {row}: column '{_cut(column)}' is {what}, not a number in "
                                        f"[{low:g}, {high:g}].")
        if not low <= value <= high:
            raise CalibrationInputError(f"Row {row}: {_cut(column)} = {value:g} is outside [{low:g}, {high:g}].")
    return values


def _boolean_column(frame: Any, column: str) -> np.ndarray:
    values = []
    for row, text in enumerate(frame[column], start=1):
        key = text.strip().lower()
        if key not in _TRUE | _FALSE:
            raise CalibrationInputError(f"Row {row}: {column} = {shown(text)}; use 1/0, true/false or yes/no.")
        values.append(key in _TRUE)
    return np.array(values, dtype=bool)


def _labels_column(frame: Any, classes: list[str]) -> np.ndarray:
    labels = []
    for row, text in enumerate(frame["label"], start=1):
        name = text.strip()
        if name in classes:
            labels.append(classes.index(name))
        elif name.isdigit() and int(name) < len(classes):
            labels.append(int(name))
        else:
            raise CalibrationInputError(f"Row {row}: label {shown(name)} is not one of the classes "
                                        f"{shown(classes, 200)} (or an index 0-{len(classes) - 1}).")
    return np.array(labels, dtype=np.int64)


def _check_header(path: str | Path) -> None:
    """Refuse a CSV with more than `csv_columns` columns from its first line, before pandas parses it all."""
    import csv

    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as file:
            header = file.readline(4 * 2**20)  # a header line longer than 4 MiB has far too many columns anyway
    except OSError as error:
        raise CalibrationInputError(f"Cannot read the CSV: {shown(str(error), 200)}") from None
    columns = len(next(csv.reader([header]), []))
    if columns > LIMITS.csv_columns:
        raise CalibrationInputError(f"The CSV has {columns:,} columns; at most {LIMITS.csv_columns:,} are accepted. "
                                    + CSV_HELP)


def predictions_from_csv(path: str | Path, max_rows: int = MAX_CSV_ROWS) -> UploadedPredictions:
    """Read an uploaded predictions CSV (see CSV_HELP). Bad files raise CalibrationInputError naming
    the row and column; files longer than max_rows are cut with a note."""
    import pandas as pd

    _check_header(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as error:
        raise CalibrationInputError("The CSV file is empty. " + CSV_HELP) from error
    except UnicodeDecodeError as error:
        raise CalibrationInputError(f"The CSV is not UTF-8 text (byte {error.object[error.start]:#04x} at byte "
                                    f"{error.start:,} does not decode): save it as UTF-8 (\"CSV UTF-8\") and upload "
                                    "it again.") from None
    except (pd.errors.ParserError, OSError) as error:
        raise CalibrationInputError(f"Cannot read the CSV: {shown(str(error), 200)}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    notes = []
    if len(frame) == 0:
        raise CalibrationInputError("The CSV has a header but no data rows.")
    if len(frame) > max_rows:
        notes.append(f"The file has {len(frame)} rows; only the first {max_rows} are used.")
        frame = frame.iloc[:max_rows]
    prob_columns = [c for c in frame.columns if c.startswith("prob_")]
    if len(prob_columns) > LIMITS.csv_classes:
        raise CalibrationInputError(f"The CSV has {len(prob_columns):,} prob_ columns; at most {LIMITS.csv_classes} "
                                    "classes are accepted.")
    categories = tuple(frame["category"].str.strip()) if "category" in frame.columns else None
    if {"confidence", "correct"} <= set(frame.columns):
        predictions = predictions_from_confidence(_numeric_column(frame, "confidence"),
                                                  _boolean_column(frame, "correct"), categories)
    elif "label" in frame.columns and len(prob_columns) >= 2:
        probs = np.stack([_numeric_column(frame, c) for c in prob_columns], axis=1)  # [n, k]
        sums = probs.sum(axis=1)
        worst = int(np.abs(sums - 1).argmax())
        if abs(sums[worst] - 1) > 0.01:
            raise CalibrationInputError(f"Row {worst + 1}: the probabilities sum to {sums[worst]:.4g}, not 1 (±0.01).")
        labels = _labels_column(frame, [c.removeprefix("prob_") for c in prob_columns])
        predictions = predictions_from_probabilities(probs / sums[:, None], labels, categories)
    else:
        raise CalibrationInputError(f"The CSV has columns {shown(list(frame.columns), 200)}. " + CSV_HELP)
    if "split" in frame.columns:
        split = frame["split"].str.strip().str.lower()
        if not split.isin(["calibration", "test"]).all():
            raise CalibrationInputError("Column 'split' may only contain 'calibration' or 'test'.")
        calibration = split.to_numpy() == "calibration"
    else:
        calibration = random_split(len(frame))
        notes.append("No 'split' column: a seeded random half of the rows fits the temperature, the rest tests it.")
    return UploadedPredictions(predictions, calibration, tuple(notes))


# ---------------------------------------------------------------------------------------------
# Reliability bins and metrics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float  # bin range (equal-mass: the smallest and largest confidence inside)
    upper: float
    count: int
    mean_confidence: float | None  # None for an empty bin
    accuracy: float | None

    @property
    def gap(self) -> float | None:
        """mean confidence - accuracy: > 0 means over-confident in this bin."""
        return None if self.count == 0 else self.mean_confidence - self.accuracy  # type: ignore[operator]


def _bin_index(confidence: np.ndarray, n_bins: int, binning: str) -> tuple[np.ndarray, np.ndarray]:
    """Which bin each prediction falls in: ([n] int, edges [n_bins + 1] for equal-width or empty).

    Equal-width bins are [edge_i, edge_i+1), the last one closed at 1 (torchmetrics puts exactly 1.0 in an
    extra bin of its own; we keep M bins). The edges are torchmetrics' own, torch.linspace(0, 1, M + 1): its
    rounding puts the third of ten at 0.30000000000000004 (a confidence of exactly 0.3 falls in the bin below)
    and the seventh at exactly 0.7 (numpy's linspace: 0.7000000000000001), so a confidence on an edge lands
    where torchmetrics puts it. Equal-mass bins hold floor(n/M) or ceil(n/M) predictions each, in confidence
    order.

    >>> _bin_index(np.array([0.25, 0.3, 0.5, 0.7, 1.0]), 10, "equal-width")[0].tolist()
    [2, 2, 5, 7, 9]
    """
    if binning == "equal-width":
        edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64).numpy()
        return np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1), edges
    index = np.empty(len(confidence), dtype=np.int64)
    for bin_number, members in enumerate(np.array_split(np.argsort(confidence, kind="stable"), n_bins)):
        index[members] = bin_number
    return index, np.empty(0)


def _check_binning(n_bins: int, binning: str) -> None:
    if binning not in BINNINGS:
        raise CalibrationInputError(f"binning must be one of {BINNINGS}, got {shown(binning)}")
    if not isinstance(n_bins, (int, np.integer)) or not 1 <= n_bins <= 100:
        raise CalibrationInputError(f"the number of bins must be a whole number in 1..100, got {shown(n_bins)}")


def _bin_sums(confidence: np.ndarray, correct: np.ndarray, n_bins: int, binning: str) -> tuple[np.ndarray, ...]:
    """Per-bin (count, confidence sum, correct count), each [n_bins], plus the bin index [n]."""
    index, _ = _bin_index(confidence, n_bins, binning)
    counts = np.bincount(index, minlength=n_bins).astype(np.float64)
    confidence_sums = np.bincount(index, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    return counts, confidence_sums, correct_sums, index


def reliability_bins(confidence: Any, correct: Any, n_bins: int = 10, binning: str = "equal-width") -> list[ReliabilityBin]:
    """Accuracy vs mean confidence per bin (equal-width bins may be empty; equal-mass bins never are
    unless there are fewer predictions than bins)."""
    _check_binning(n_bins, binning)
    confidence = np.asarray(confidence, dtype=np.float64)
    counts, confidence_sums, correct_sums, index = _bin_sums(confidence, np.asarray(correct, dtype=bool), n_bins, binning)
    bins = []
    for b in range(n_bins):
        count = int(counts[b])
        if binning == "equal-width":
            lower, upper = b / n_bins, (b + 1) / n_bins
        else:
            members = confidence[index == b]
            lower, upper = (float(members.min()), float(members.max())) if count else (math.nan, math.nan)
        if count == 0 and binning == "equal-mass":
            continue
        bins.append(ReliabilityBin(lower, upper, count, confidence_sums[b] / count if count else None,
                                   correct_sums[b] / count if count else None))
    return bins


def _calibration_errors(confidence: np.ndarray, correct: np.ndarray, n_bins: int, binning: str) -> tuple[float, float]:
    """(ECE, MCE): count-weighted mean and max over non-empty bins of |accuracy - mean confidence|."""
    counts, confidence_sums, correct_sums, _ = _bin_sums(confidence, correct, n_bins, binning)
    filled = counts > 0
    gaps = np.abs(correct_sums[filled] - confidence_sums[filled]) / counts[filled]
    return float((gaps * counts[filled]).sum() / counts.sum()), float(gaps.max())


def brier_score(predictions: Predictions) -> float:
    """Multiclass: mean over items of sum_k (p_k - [k = label])^2 (0..2). Confidence only: mean
    (confidence - correct)^2 (0..1)."""
    if predictions.probs is not None:
        one_hot = np.eye(predictions.probs.shape[1])[predictions.labels]
        return float(((predictions.probs - one_hot) ** 2).sum(axis=1).mean())
    return float(((predictions.confidence - predictions.correct) ** 2).mean())


def negative_log_likelihood(predictions: Predictions) -> float:
    """Multiclass: mean -log p(label). Confidence only: mean binary cross-entropy of confidence vs
    correct. Probabilities are floored at 1e-12 so a confident mistake costs ~27.6 nats, not infinity."""
    if predictions.probs is not None:
        chosen = predictions.probs[np.arange(len(predictions)), predictions.labels]
        return float(-np.log(np.maximum(chosen, PROBABILITY_FLOOR)).mean())
    p = np.clip(predictions.confidence, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return float(-np.where(predictions.correct, np.log(p), np.log1p(-p)).mean())


METRIC_NAMES = ("accuracy", "ece", "mce", "brier", "nll")


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    ece: float  # expected calibration error: sum_b |B_b|/n * |acc(B_b) - conf(B_b)|
    mce: float  # maximum calibration error: max_b |acc(B_b) - conf(B_b)|
    brier: float
    nll: float
    n: int


def calibration_metrics(predictions: Predictions, n_bins: int = 10, binning: str = "equal-width") -> Metrics:
    _check_binning(n_bins, binning)
    if len(predictions) == 0:
        raise CalibrationInputError("There are no predictions to measure.")
    ece, mce = _calibration_errors(predictions.confidence, predictions.correct, n_bins, binning)
    return Metrics(float(predictions.correct.mean()), ece, mce, brier_score(predictions),
                   negative_log_likelihood(predictions), len(predictions))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def bootstrap_intervals(predictions: Predictions, n_bins: int = 10, binning: str = "equal-width",
                        resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                        seed: int = 0) -> dict[str, Interval]:
    """Percentile bootstrap intervals for every metric: resample the n predictions with replacement
    `resamples` times (seeded) and take the middle `level` of each metric's distribution."""
    rng = np.random.default_rng(seed)
    n = len(predictions)
    bare = replace(predictions, categories=None)  # categories play no part in the metrics
    samples = np.array([_metric_values(calibration_metrics(bare.subset(rng.integers(0, n, n)), n_bins, binning))
                        for _ in range(resamples)])  # [resamples, 5]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return {name: Interval(float(lo), float(hi)) for name, lo, hi in zip(METRIC_NAMES, low, high)}


def _metric_values(metrics: Metrics) -> tuple[float, ...]:
    return tuple(getattr(metrics, name) for name in METRIC_NAMES)


@dataclass(frozen=True)
class NoiseFloor:
    """ECE of a perfectly calibrated model with these confidences: each prediction is right with
    probability equal to its confidence, so any ECE it shows is sampling noise from n items."""

    mean: float
    p95: float
    simulations: int


def ece_noise_floor(confidence: Any, n_bins: int = 10, binning: str = "equal-width",
                    simulations: int = NOISE_FLOOR_SIMULATIONS, seed: int = 0) -> NoiseFloor:
    _check_binning(n_bins, binning)
    confidence = np.asarray(confidence, dtype=np.float64)
    index, _ = _bin_index(confidence, n_bins, binning)  # bins depend on confidences only: fixed
    one_hot = np.eye(n_bins)[index]  # [n, bins]
    counts = one_hot.sum(axis=0)
    confidence_sums = confidence @ one_hot  # [bins]
    outcomes = np.random.default_rng(seed).random((simulations, len(confidence))) < confidence  # [sims, n]
    correct_sums = outcomes.astype(np.float64) @ one_hot  # [sims, bins]
    eces = np.abs(correct_sums - confidence_sums).sum(axis=1) / counts.sum()  # [sims]
    return NoiseFloor(float(eces.mean()), float(np.percentile(eces, 95)), simulations)


# ---------------------------------------------------------------------------------------------
# Temperature scaling
# ---------------------------------------------------------------------------------------------


def _logits(predictions: Predictions) -> np.ndarray:
    """What temperature divides: log-probabilities [n, k] (multiclass) or the confidence's log-odds [n]."""
    if predictions.probs is not None:
        return np.log(np.maximum(predictions.probs, PROBABILITY_FLOOR))
    p = np.clip(predictions.confidence, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(p) - np.log1p(-p)


def apply_temperature(predictions: Predictions, temperature: float) -> Predictions:
    """Multiclass: softmax(log p / T). Confidence only: sigmoid(logit(confidence) / T), the binary
    analogue. T > 1 softens, T < 1 sharpens; argmax (and so accuracy) never changes."""
    if not temperature > 0:
        raise CalibrationInputError(f"temperature must be > 0, got {temperature}")
    scaled = _logits(predictions) / temperature
    if predictions.probs is not None:
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        probs = np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True)
        return replace(predictions, probs=probs, confidence=probs.max(axis=1))
    return replace(predictions, confidence=1 / (1 + np.exp(-scaled)))


def _nll_at(predictions: Predictions, logits: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    if predictions.probs is not None:
        peak = scaled.max(axis=1)
        log_normaliser = peak + np.log(np.exp(scaled - peak[:, None]).sum(axis=1))
        return float((log_normaliser - scaled[np.arange(len(scaled)), predictions.labels]).mean())
    signed = np.where(predictions.correct, scaled, -scaled)
    return float(np.logaddexp(0, -signed).mean())  # -log sigmoid(signed)


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float  # on the data it was fitted on, at T = 1
    nll_after: float  # at the fitted T
    at_bound: bool  # T hit the search range: NLL was still falling (e.g. all predictions right)
    kind: str  # multiclass | binary


def fit_temperature(predictions: Predictions, bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
                    tolerance: float = 1e-7) -> TemperatureFit:
    """T minimising NLL, by golden-section search over log T.

    NLL is convex in 1/T (a log-sum-exp of a linear function minus a linear term), so it has one
    minimum and golden-section search finds it; a minimum outside `bounds` is reported at the bound.
    """
    if len(predictions) == 0:
        raise CalibrationInputError("Temperature scaling needs at least one prediction.")
    logits = _logits(predictions)

    def loss(log_t: float) -> float:
        return _nll_at(predictions, logits, math.exp(log_t))

    low, high = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > tolerance:
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    log_t = (low + high) / 2
    at_bound = min(abs(log_t - math.log(bounds[0])), abs(log_t - math.log(bounds[1]))) < 1e-3
    return TemperatureFit(math.exp(log_t), loss(0.0), loss(log_t), at_bound,
                          "multiclass" if predictions.is_multiclass else "binary")


# ---------------------------------------------------------------------------------------------
# Reports: everything a view shows, as plain numbers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationReport:
    bins: list[ReliabilityBin]
    metrics: Metrics
    intervals: dict[str, Interval]
    noise_floor: NoiseFloor
    confidence: np.ndarray = field(repr=False)  # [n], for the histogram
    correct: np.ndarray = field(repr=False)  # [n] bool


def calibration_report(predictions: Predictions, n_bins: int = 10, binning: str = "equal-width",
                       resamples: int = BOOTSTRAP_RESAMPLES) -> CalibrationReport:
    return CalibrationReport(
        reliability_bins(predictions.confidence, predictions.correct, n_bins, binning),
        calibration_metrics(predictions, n_bins, binning),
        bootstrap_intervals(predictions, n_bins, binning, resamples),
        ece_noise_floor(predictions.confidence, n_bins, binning),
        predictions.confidence, predictions.correct,
    )


@dataclass(frozen=True)
class TemperatureScaling:
    fit: TemperatureFit  # fitted on the calibration half
    before: CalibrationReport  # test half, T = 1
    after: CalibrationReport  # test half, fitted T
    calibration_size: int


def temperature_scaling(predictions: Predictions, calibration: np.ndarray, n_bins: int = 10,
                        binning: str = "equal-width", resamples: int = BOOTSTRAP_RESAMPLES) -> TemperatureScaling:
    """Fit T on predictions[calibration], then report the other rows before and after applying it."""
    calibration = np.asarray(calibration, dtype=bool)
    if calibration.sum() < 2 or (~calibration).sum() < 1:
        raise CalibrationInputError(f"Temperature scaling needs at least 2 calibration rows and 1 test row; "
                                    f"got {int(calibration.sum())} and {int((~calibration).sum())}.")
    fit = fit_temperature(predictions.subset(calibration))
    test = predictions.subset(~calibration)
    return TemperatureScaling(fit, calibration_report(test, n_bins, binning, resamples),
                              calibration_report(apply_temperature(test, fit.temperature), n_bins, binning, resamples),
                              int(calibration.sum()))


@dataclass(frozen=True)
class CategoryRow:
    category: str
    n: int
    accuracy: float
    mean_confidence: float
    ece: float


def category_table(predictions: Predictions, n_bins: int = 10, binning: str = "equal-width") -> list[CategoryRow]:
    """Accuracy, mean confidence and ECE within each category (bins are per category)."""
    if predictions.categories is None:
        return []
    names = np.asarray(predictions.categories, dtype=object)
    rows = []
    for name in sorted(set(predictions.categories)):
        part = predictions.subset(names == name)
        ece, _ = _calibration_errors(part.confidence, part.correct, n_bins, binning)
        rows.append(CategoryRow(name, len(part), float(part.correct.mean()), float(part.confidence.mean()), ece))
    return rows


def report_json(report: CalibrationReport) -> dict[str, Any]:
    """A report as JSON-ready numbers: bins, metrics with 95% CIs, noise floor."""
    metrics = {name: {"value": getattr(report.metrics, name), "ci95": [report.intervals[name].low,
                                                                       report.intervals[name].high]}
               for name in METRIC_NAMES}
    return {"n": report.metrics.n,
            "bins": [{"lower": b.lower, "upper": b.upper, "count": b.count, "mean_confidence": b.mean_confidence,
                      "accuracy": b.accuracy} for b in report.bins],
            "metrics": metrics,
            "noise_floor_ece": asdict(report.noise_floor)}


@dataclass(frozen=True)
class CalibrationResult:
    """Everything the tab shows for one set of predictions."""

    overall: CalibrationReport  # all predictions
    scaling: TemperatureScaling | None  # None when a half is too small (see notes)
    categories: list[CategoryRow]
    kind: str  # multiclass (per-option probabilities) | binary (confidence + correct only)
    n_bins: int
    binning: str
    notes: tuple[str, ...] = ()


def calibrate(predictions: Predictions, calibration: np.ndarray, n_bins: int = 10, binning: str = "equal-width",
              notes: Sequence[str] = (), resamples: int = BOOTSTRAP_RESAMPLES) -> CalibrationResult:
    """Measure all predictions, fit T on the calibration rows and compare the test rows before/after."""
    notes = list(notes)
    try:
        scaling = temperature_scaling(predictions, calibration, n_bins, binning, resamples)
    except CalibrationInputError as error:
        scaling = None
        notes.append(f"Temperature scaling skipped: {error}")
    if scaling is not None and scaling.fit.at_bound:
        notes.append(f"The fitted temperature stopped at the search bound ({scaling.fit.temperature:.3g}): NLL on the "
                     "calibration half keeps falling beyond it (e.g. all right: sharpen forever; near-chance "
                     "accuracy: flatten to uniform).")
    return CalibrationResult(calibration_report(predictions, n_bins, binning, resamples), scaling,
                             category_table(predictions, n_bins, binning),
                             "multiclass" if predictions.is_multiclass else "binary", n_bins, binning, tuple(notes))


def result_json(result: CalibrationResult) -> dict[str, Any]:
    """The `calibrate` API's numbers: bins, metrics with 95% CIs, noise floor, temperature, categories,
    and each item's confidence and correctness."""
    scaling = result.scaling
    return {
        "kind": result.kind,
        "n_bins": result.n_bins,
        "binning": result.binning,
        "all": report_json(result.overall),
        "temperature_scaling": None if scaling is None else {
            "temperature": scaling.fit.temperature, "kind": scaling.fit.kind, "at_bound": scaling.fit.at_bound,
            "calibration_size": scaling.calibration_size,
            "calibration_nll_before": scaling.fit.nll_before, "calibration_nll_after": scaling.fit.nll_after,
            "test_before": report_json(scaling.before), "test_after": report_json(scaling.after)},
        "categories": [asdict(row) for row in result.categories],
        "notes": list(result.notes),
        # Per item, so any metric can be recomputed (or another tool's compared) from the export.
        "items": {"confidence": result.overall.confidence.tolist(), "correct": result.overall.correct.tolist()},
    }


# ---------------------------------------------------------------------------------------------
# Self-consistency: confidence from agreement between sampled answers
# ---------------------------------------------------------------------------------------------

_ANSWER_LETTER = re.compile(r"\b([ABCD])\b")


def parse_answer_letter(text: str) -> str | None:
    """The first standalone letter A-D in a generated answer ("C", "C. Paris", "The answer is C")."""
    match = _ANSWER_LETTER.search(text)
    return match.group(1) if match else None


@dataclass(frozen=True)
class SelfConsistency:
    ids: tuple[str, ...]
    answers: tuple[tuple[str | None, ...], ...]  # [n_questions][n_samples] parsed letters (None: no letter)
    majority: tuple[str | None, ...]  # most frequent letter (ties: alphabetical first); None if no letters
    confidence: np.ndarray  # [n] share of samples that agree with the majority
    correct: np.ndarray  # [n] bool: majority == key


def self_consistency(model: Any, tokenizer: Any, questions: Sequence[Question], samples: int = 8,
                     temperature: float = 1.0, seed: int = 0, eos_token_ids: Sequence[int] = (), lock: Any = None,
                     progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
                     max_new_tokens: int = 6) -> SelfConsistency:
    """Sample `samples` short answers per question through the app's generation loop (seeded, so a
    run can be replayed) and measure how often they agree with the most common letter."""
    if samples < 1:
        raise CalibrationInputError(f"samples must be >= 1, got {samples}")
    answers = []
    for number, question in enumerate(questions):
        ids = encode_prompt(tokenizer, question_messages(question))
        drawn = []
        for sample in range(samples):
            if cancel is not None and cancel.is_set():
                raise ScoringCancelled(number, len(questions))
            settings = SamplingSettings(temperature=temperature, seed=seed + 1000 * number + sample)
            result = generate_text(model, tokenizer, ids, settings, max_new_tokens, eos_token_ids, lock=lock)
            drawn.append(parse_answer_letter(result.text))
        answers.append(tuple(drawn))
        if progress is not None:
            progress(number + 1, len(questions))
    return self_consistency_from_answers(questions, answers)


def self_consistency_from_answers(questions: Sequence[Question],
                                  answers: Sequence[Sequence[str | None]]) -> SelfConsistency:
    majority, confidence = [], []
    for drawn in answers:
        letters = [a for a in drawn if a is not None]
        top = max(sorted(set(letters)), key=letters.count) if letters else None
        majority.append(top)
        confidence.append(letters.count(top) / len(drawn) if top else 0.0)
    correct = np.array([m == q.answer for m, q in zip(majority, questions)])
    return SelfConsistency(tuple(q.id for q in questions), tuple(tuple(a) for a in answers), tuple(majority),
                           np.array(confidence), correct)

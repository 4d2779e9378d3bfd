"""The Calibration tab's endpoints through gradio_client: the built-in set on the real model, an
uploaded CSV, a bad CSV, self-consistency. Numbers are re-checked against torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

pytestmark = pytest.mark.slow

JSON_OUTPUT = 7  # /calibrate returns: status, reliability, histogram, metrics, scaling plot, scaling table, categories, JSON


def check_report(report: dict, n: int) -> None:
    assert report["n"] == n and sum(b["count"] for b in report["bins"]) == n
    for metric in report["metrics"].values():
        low, high = metric["ci95"]
        assert low <= metric["value"] + 1e-12 and metric["value"] <= high + 1e-12
    # ECE is the count-weighted gap of the returned bins.
    gaps = sum(b["count"] * abs(b["accuracy"] - b["mean_confidence"]) for b in report["bins"] if b["count"])
    assert report["metrics"]["ece"]["value"] == pytest.approx(gaps / n, abs=1e-9)


def test_calibrate_the_built_in_questions(client):
    outputs = client.predict("built-in", None, "normalised", 10, "equal-width", api_name="/calibrate")
    data = outputs[JSON_OUTPUT]
    n = 512
    assert data["source"] == "built-in" and data["kind"] == "multiclass" and len(data["all"]["bins"]) == 10
    check_report(data["all"], n)
    scaling = data["temperature_scaling"]
    assert scaling["calibration_size"] == n // 2 and 0.05 <= scaling["temperature"] <= 20
    assert scaling["calibration_nll_after"] <= scaling["calibration_nll_before"]
    check_report(scaling["test_before"], n // 2)
    check_report(scaling["test_after"], n // 2)
    assert scaling["test_after"]["metrics"]["accuracy"]["value"] == scaling["test_before"]["metrics"]["accuracy"]["value"]
    # torchmetrics on the exported items gives the same ECE and MCE.
    confidence = torch.tensor(data["items"]["confidence"], dtype=torch.float64)
    correct = torch.tensor(data["items"]["correct"]).long()
    assert data["all"]["metrics"]["ece"]["value"] == pytest.approx(binary_calibration_error(confidence, correct, 10).item(), abs=1e-6)
    assert data["all"]["metrics"]["mce"]["value"] == pytest.approx(
        binary_calibration_error(confidence, correct, 10, norm="max").item(), abs=1e-6)
    assert data["all"]["noise_floor_ece"]["mean"] < data["all"]["noise_floor_ece"]["p95"] < 0.1
    assert {row["category"] for row in data["categories"]} == {"arithmetic", "chemistry", "geography", "vocabulary"}


def test_calibrate_an_uploaded_probability_csv(client, tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (300, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 3, 300)
    path = tmp_path / "predictions.csv"
    path.write_text("label,prob_a,prob_b,prob_c\n" + "".join(
        f"{'abc'[y]},{float(p[0])!r},{float(p[1])!r},{float(p[2])!r}\n" for y, p in zip(labels, probs)))
    outputs = client.predict("csv", handle_file(str(path)), "normalised", 15, "equal-width", api_name="/calibrate")
    data = outputs[JSON_OUTPUT]
    assert data["source"] == "csv" and data["kind"] == "multiclass"
    check_report(data["all"], 300)
    reference = multiclass_calibration_error(torch.tensor(probs), torch.tensor(labels), 3, n_bins=15).item()
    assert data["all"]["metrics"]["ece"]["value"] == pytest.approx(reference, abs=1e-6)
    assert data["temperature_scaling"]["temperature"] > 1  # random logits are over-confident
    assert "random half" in " ".join(data["notes"])


def test_a_bad_csv_is_a_clear_error(client, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("confidence,correct\n0.5,1\nnan,0\n")
    with pytest.raises(Exception, match="Row 2: column 'confidence' is 'nan'"):
        client.predict("csv", handle_file(str(path)), "normalised", 10, "equal-width", api_name="/calibrate")


def test_self_consistency_on_a_few_questions(client):
    summary, _figure, rows, table, data = client.predict(4, 3, 1.0, api_name="/self_consistency")
    assert len(data["questions"]) == 4 and all(len(answers) == 3 for answers in data["answers"])
    assert all(0 <= c <= 1 for c in data["self_consistency_confidence"])
    assert set(data["comparison"]) == {"letter probability", "self-consistency (3 samples)"}
    assert len(table["data"]) == 4 and "4 questions × 3 sampled answers" in summary

"""Chromium drives the Calibration tab: score the built-in questions, rebin, upload a CSV (good and bad)."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_calibration_tab_end_to_end(page, open_tab):
    tab = open_tab("calibration")
    # it opens on the prepared example's cached result, labelled as such
    page.wait_for_selector("#pg-example-note-calibration >> text=cached result from", timeout=30_000)

    tab.get_by_role("button", name="Score & calibrate").click()
    page.wait_for_selector("#calibration-status >> text=512 predictions", timeout=600_000)
    for element in ("calibration-reliability", "calibration-histogram", "calibration-scaling"):
        page.wait_for_selector(f"#{element} .js-plotly-plot", timeout=30_000)
    status = page.inner_text("#calibration-status")
    assert "Fitted temperature T =" in status and "noise floor" in status
    assert "ECE" in page.inner_text("#calibration-metrics") and "geography" in page.inner_text("#calibration-categories")

    # Rebinning redraws at once from the stored scores, without pressing the button; a re-run reads the cache.
    tab.get_by_label("equal-mass").check()
    page.wait_for_selector("#calibration-reliability >> text=equal-mass, 10 bins", timeout=120_000)
    tab.get_by_role("button", name="Score & calibrate").click()
    page.wait_for_selector("#calibration-status >> text=from the cache", timeout=120_000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "calibration.png"), full_page=True)
    assert page.console_errors == []


def uploaded(page, name: str) -> None:
    """Wait until the File component previews `name` after its upload. The preview splits the name into
    stem and extension (`bad` `.csv`), so a text match only catches the short-lived "uploading" line."""
    page.locator(f"#calibration-csv td.filename[aria-label='{name}']").wait_for(timeout=30_000)


def test_uploaded_csv_and_a_bad_one(page, open_tab, tmp_path):
    tab = open_tab("calibration")
    good = tmp_path / "good.csv"
    good.write_text("confidence,correct\n" + "".join(f"{0.5 + i / 200},{int(i % 3 != 0)}\n" for i in range(100)))
    bad = tmp_path / "bad.csv"
    bad.write_text("confidence,correct\n0.4,1\n1.7,0\n")
    tab.get_by_text("Upload predictions (any classifier)").click()
    tab.get_by_label("Uploaded predictions CSV").check()

    page.locator("#calibration-csv input[type=file]").set_input_files(str(good))
    uploaded(page, "good.csv")
    tab.get_by_role("button", name="Score & calibrate").click()
    page.wait_for_selector("#calibration-status >> text=100 predictions", timeout=120_000)
    assert "Uploaded predictions" in page.inner_text("#calibration-status")

    page.locator("#calibration-csv button[aria-label='Clear']").first.click()
    page.locator("#calibration-csv input[type=file]").set_input_files(str(bad))
    uploaded(page, "bad.csv")
    tab.get_by_role("button", name="Score & calibrate").click()
    page.wait_for_selector("text=Row 2: confidence = 1.7 is outside [0, 1]", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "calibration-csv-error.png"), full_page=False)

"""Chromium drives the Inside tab: the lens heatmap is drawn, a head switched off changes the distribution, the
attribution with its completeness check is shown. Screenshot: docs/screenshots/inside.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "inside.png"


def test_inside_tab_end_to_end(page, open_tab):
    tab = open_tab("inside")
    page.get_by_role("button", name="Show the logit lens").click()
    page.wait_for_selector("#inside-lens-status >> text=Next token", timeout=120_000)
    for element in ("inside-lens", "inside-curves"):
        page.wait_for_selector(f"#{element} .js-plotly-plot", timeout=30_000)
    assert "Paris" in page.inner_text("#inside-lens-status")

    tab.get_by_label("Heads to switch off (layer.head, * = all heads of a layer)").fill("0.*, 1.*, 2.*")
    page.get_by_role("button", name="Switch off and compare").click()
    page.wait_for_selector("#inside-ablation-status >> text=KL(before", timeout=120_000)
    status = page.inner_text("#inside-ablation-status")
    kl = float(status.split("KL(before ‖ after) = ")[1].split()[0])
    assert kl > 0.01, status
    page.wait_for_selector("#inside-ablation .js-plotly-plot", timeout=30_000)

    page.get_by_role("button", name="Explain this token").click()
    page.wait_for_selector("#inside-attribution-status >> text=Completeness", timeout=240_000)
    assert "Spearman" in page.inner_text("#inside-attribution-status")
    page.wait_for_selector("#inside-attribution .js-plotly-plot", timeout=30_000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "inside.png"), full_page=True)
    page.locator("#tab-inside").screenshot(path=str(SCREENSHOT))
    assert page.console_errors == []

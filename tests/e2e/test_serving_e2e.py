"""Chromium drives the Serving tab on the real model: a deep link measures a short batching curve and every
chart draws; the prepared example shows its cached charts at once (the README's screenshot of the tab)."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS
from test_workshop_e2e import WAIT, first_example, open_link, shoot_tab

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CHARTS = ("serving-batching", "serving-kv", "serving-schedule", "serving-paged")


def test_serving_tab_measures_and_draws_its_charts(page, app_url):
    open_link(page, app_url, "tab=serving&batch_sizes=1%2C2%2C4&decode_steps=2", "serving")
    page.wait_for_selector("#serving-status >> text=Measured on", timeout=WAIT)
    for chart in CHARTS:
        page.wait_for_selector(f"#{chart} .js-plotly-plot", timeout=30_000)
    assert "Simulation" in page.inner_text("#serving-schedule")
    assert "Block table" in page.inner_text("#serving-paged")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serving.png"), full_page=True)
    assert page.console_errors == []


def test_serving_example_shows_cached_charts(page, app_url):
    open_link(page, app_url, f"tab=serving&example={first_example('serving')}", "serving")
    for chart in CHARTS:
        page.wait_for_selector(f"#{chart} .js-plotly-plot", timeout=30_000)
    shoot_tab(page, "serving", ARTIFACTS / "serving-example.png")
    assert page.console_errors == []

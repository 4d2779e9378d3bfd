"""The Speculative decoding tab in Chromium: run prompt lookup, see the coloured text, the race and the charts."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def open_tab(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=60_000)
    page.get_by_role("tab", name="Speculative decoding").click()
    return page.locator("#tab-speculative")


def test_speculative_tab_runs_and_shows_every_view(page, app_url):
    tab = open_tab(page, app_url)
    tab.get_by_text("Here is a product notice.").first.click()  # the copy-heavy example picks prompt lookup
    expect(tab.get_by_label("n-gram prompt lookup (no model)")).to_be_checked()  # waits for the example to apply
    tab.locator("#spec-run").click()
    page.wait_for_selector("#spec-summary >> text=Measured speed-up", timeout=300_000)
    assert tab.locator("#spec-text .spec-accepted").count() > 0
    assert "identical tokens" in tab.locator("#spec-summary").inner_text()
    page.wait_for_function("document.querySelectorAll('#tab-speculative .js-plotly-plot').length >= 4",
                           timeout=30_000)
    table = tab.locator("#spec-step-table")
    assert "outcome" in table.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "speculative.png"), full_page=True)
    assert page.console_errors == []


def test_stop_ends_a_run_midway(page, app_url):
    tab = open_tab(page, app_url)
    tab.get_by_label("target with some layers skipped (self-draft)").check()
    tab.locator("#spec-max-tokens input[type=number]").fill("400")  # minutes of work on a CPU
    tab.locator("#spec-max-tokens input[type=number]").press("Enter")
    tab.locator("#spec-run").click()
    page.wait_for_selector("#spec-summary >> text=Speculating… step", timeout=120_000)
    tab.locator("#spec-stop").click()
    page.wait_for_timeout(3000)
    steps_after_stop = tab.locator("#spec-text .spec-step").count()
    page.wait_for_timeout(5000)
    assert tab.locator("#spec-text .spec-step").count() == steps_after_stop  # nothing runs on
    assert "Measured speed-up" not in tab.locator("#spec-summary").inner_text()
    assert page.console_errors == []

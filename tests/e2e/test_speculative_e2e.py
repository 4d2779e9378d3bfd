"""The Speculative decoding tab in Chromium: run prompt lookup, see the coloured text, the race and the charts."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS
from playground.ui.examples import example_values

COPY_PROMPT = example_values("speculative", "lookup")["prompt"]  # the copy-heavy prepared example

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_speculative_tab_runs_and_shows_every_view(page, open_tab):
    tab = open_tab("speculative")
    tab.get_by_label("Prompt (sent as a chat message)").fill(COPY_PROMPT)
    tab.get_by_label("n-gram prompt lookup (no model)").check()
    tab.locator("#spec-run").click()
    # the tab opened on the cached int4 example, whose summary also has "Measured speed-up": wait for this run's
    page.wait_for_function("(s => s.includes('Measured speed-up') && !s.includes('int4 copy'))"
                           "(document.querySelector('#spec-summary').innerText)", timeout=300_000)
    assert tab.locator("#spec-text .spec-accepted").count() > 0
    assert "identical tokens" in tab.locator("#spec-summary").inner_text()
    page.wait_for_function("document.querySelectorAll('#tab-speculative .js-plotly-plot').length >= 4",
                           timeout=30_000)
    table = tab.locator("#spec-step-table")
    assert "outcome" in table.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "speculative.png"), full_page=True)
    assert page.console_errors == []


def test_stop_ends_a_run_midway(page, open_tab):
    tab = open_tab("speculative")
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

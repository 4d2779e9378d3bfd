"""Chromium drives the Sampling tab on the real model: the stage chart, a slider move, draws,
a step-through generation, clicking a token and forcing an alternative. Saves artifacts/sampling.png."""

from __future__ import annotations

import re

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WAIT = 120_000


def test_sampling_tab_end_to_end(page, open_tab):
    tab = open_tab("sampling")

    page.get_by_role("button", name="Show next-token distribution").click()
    stats = page.locator("#sampling-stats")
    stats.get_by_text("Entropy").wait_for(timeout=WAIT)
    page.locator("#sampling-stages .js-plotly-plot").wait_for(timeout=WAIT)
    assert "·Paris" in page.locator("#sampling-stages").inner_text()  # the model knows the capital
    assert "T=0.8" in page.locator("#sampling-stages").inner_text()

    # Moving the temperature slider to 0 redraws from the cached logits: greedy, final entropy 0.
    page.get_by_label("range slider for Temperature T (0 = greedy)").fill("0")
    page.wait_for_function("document.querySelector('#sampling-stats').innerText.includes('→ 0.00 bits')",
                           timeout=WAIT)
    assert "greedy" in stats.inner_text() and "0 = greedy" in page.locator("#sampling-stages").inner_text()
    page.get_by_label("range slider for Temperature T (0 = greedy)").fill("1.2")
    page.wait_for_function("document.querySelector('#sampling-stages').innerText.includes('T=1.2')", timeout=WAIT)

    # The draws at T=0 (one possible token, nothing to test) may still be on screen when T=1.2 is: the
    # moves' own redraws arrive after their stage charts. Wait for the T=1.2 draws, with their χ² test.
    page.get_by_role("button", name="Draw", exact=True).click()
    page.wait_for_function("(t => t.includes('1,000 draws') && t.includes('χ²'))"
                           "(document.querySelector('#sampling-samples').innerText)", timeout=WAIT)

    page.get_by_label("number input for New tokens").fill("8")
    page.get_by_label("number input for New tokens").press("Enter")
    page.get_by_role("button", name="Generate step by step").click()
    tokens = page.locator("#sampling-trace-text .token")
    tokens.nth(7).wait_for(timeout=WAIT)
    greedy = page.locator("#sampling-greedy-text .token")
    greedy.nth(7).wait_for(timeout=WAIT)  # the greedy run streams after the sampled one
    assert tokens.count() == 8 and greedy.count() == 8

    # Clicking the third token selects step 2; forcing an alternative there rewrites the rest.
    tokens.nth(2).click()
    page.wait_for_function("document.querySelector('#sampling-step-plot').innerText.includes('Step 2:')",
                           timeout=WAIT)
    assert page.get_by_label("number input for Step").input_value() == "2"
    page.get_by_role("button", name="Force this token and continue").click()
    page.wait_for_function("document.querySelector('#sampling-step-plot').innerText.includes('forced')",
                           timeout=WAIT)
    assert re.search(r"Step 2: forced", page.locator("#sampling-step-plot").inner_text())
    assert "forced token" in page.locator("#sampling-trace-plot").inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "sampling.png"))
    assert page.console_errors == []

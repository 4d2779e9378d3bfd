"""Chromium drives the Attention tab: the mask explorer, the real weights, picking a query token."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_attention_tab_end_to_end(page, open_tab):
    tab = open_tab("attention")

    # Mask explorer: the default causal mask over the text, then a sliding window with its own slider.
    page.wait_for_selector("#attention-mask-plot .js-plotly-plot", timeout=30_000)
    assert "n(n+1)/2" in page.inner_text("#attention-mask-note")
    tab.get_by_label("Mask pattern").click()
    page.get_by_role("option", name="Sliding window (width W)").click()
    page.wait_for_selector("#attention-mask-note >> text=n·W", timeout=30_000)
    assert tab.get_by_label("Window W (tokens each query sees)").first.is_visible()

    # Real weights: heatmap, grid, story, and the checks printed under them.
    page.get_by_role("button", name="Show attention").click()
    page.wait_for_selector("#attention-status >> text=tokens", timeout=120_000)
    for element in ("attention-heatmap", "attention-row", "attention-grid", "attention-story"):
        page.wait_for_selector(f"#{element} .js-plotly-plot", timeout=30_000)
    status = page.inner_text("#attention-status")
    assert "every row sums to 1" in status and "KV head 0 ← query heads 0, 1, 2" in status

    # Clicking a token chip makes it the query of the bar chart.
    page.locator("#attention-chips [role=button]").nth(3).click()
    page.wait_for_selector("#attention-row >> text=What token 3", timeout=30_000)
    page.locator("#attention-chips [role=button]").nth(6).click()  # tokens after the query stay clickable
    page.wait_for_selector("#attention-row >> text=What token 6", timeout=30_000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "attention.png"), full_page=True)
    assert page.console_errors == []

"""The Model & quantization tab in Chromium: the card, the block diagram and the memory calculator render."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_model_tab_renders_card_and_plots(page, open_tab):
    tab = open_tab("quantization")
    tab.get_by_role("button", name="Describe the loaded model").click()
    page.wait_for_selector("#tab-quantization >> text=query heads / KV heads", timeout=60_000)
    page.wait_for_selector("#tab-quantization .js-plotly-plot", timeout=30_000)
    tab.get_by_text("Memory calculator: does it fit?").click()
    tab.get_by_role("button", name="Calculate").click()
    page.wait_for_function("document.querySelectorAll('#tab-quantization .js-plotly-plot').length >= 3", timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "quantization.png"), full_page=True)
    assert page.console_errors == []

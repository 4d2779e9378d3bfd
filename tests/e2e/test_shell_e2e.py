"""Chromium opens the app, sees the header and every tab, switches tabs without console errors."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS
from playground.ui.tabs import all_tabs

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_every_tab_opens_without_console_errors(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=60_000)
    assert "SmolLM2-135M-Instruct" in page.inner_text("#pg-status")
    for info in all_tabs():
        page.get_by_role("tab", name=info.label).click()
        page.wait_for_selector(f"#tab-{info.key}", state="visible", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name=all_tabs()[0].label).click()
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
    assert page.console_errors == []

"""Chromium: "A copied link keeps presenter mode and the theme" (docs/presenting.md). The link is built in the
page (playground/ui/viewtools.py's script), so only a browser can keep this sentence."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WAIT = 180_000


@pytest.mark.parametrize("query, kept, dropped", [
    ("presenter=1&__theme=dark", ("presenter=1", "__theme=dark"), ()),
    ("", (), ("presenter=", "__theme=")),
])
def test_a_copied_link_keeps_presenter_mode_and_the_theme(page, app_url, query, kept, dropped):
    page.goto(f"{app_url}?tab=attention&run=0&{query}")
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT)
    page.locator("#tab-attention").wait_for(state="visible", timeout=WAIT)
    page.locator("#pg-copy-link-attention").click()
    page.wait_for_function("document.querySelector('#pg-link-attention textarea').value.startsWith('http')",
                           timeout=WAIT)
    link = page.locator("#pg-link-attention textarea").input_value()
    assert "tab=attention" in link
    assert all(part in link for part in kept), link
    assert not any(part in link for part in dropped), link

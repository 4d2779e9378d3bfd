"""Chromium: a copied link keeps the theme, and presenter mode and the theme survive a reload (docs/presenting.md). The link is built in the
page (playground/ui/viewtools.py's script), so only a browser can keep this sentence."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WAIT = 180_000


@pytest.mark.parametrize("query, kept, dropped", [
    ("__theme=dark", ("__theme=dark",), ("presenter=",)),
    ("", (), ("presenter=", "__theme=")),
])
def test_a_copied_link_keeps_the_theme(page, app_url, query, kept, dropped):
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


def test_presenter_mode_and_the_theme_stay_in_the_address_bar_across_a_reload(page, app_url):
    """Presenter mode hides the copy-link row (it would push the figure down): the address bar is the link."""
    page.goto(f"{app_url}?tab=attention&run=0&presenter=1&__theme=dark")
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT)
    page.reload()
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT)
    page.wait_for_function("document.body.classList.contains('pg-presenter')", timeout=WAIT)
    assert "presenter=1" in page.url and "__theme=dark" in page.url
    assert not page.locator("#pg-copy-link-attention").is_visible()

"""Chromium on the real model: a deep link opens a tab, fills it and runs it; "copy link to this view"
gives a link that restores the view; plotly's toolbar saves a PNG; the HTML export downloads. Presenter mode on
every tab is tests/e2e/test_page_audit.py's.

`make screenshots` writes the README's screenshots here (PLAYGROUND_SCREENSHOTS=docs/screenshots: normal mode,
light theme, one <tab>.png per tab, each showing its first prepared example).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WAIT = 180_000
TAB_KEYS = ("tokenization", "attention", "sampling", "speculative", "rag", "lora", "calibration", "quantization",
            "serving")
SHOT_HEIGHT = 2200  # px of each tab in a screenshot: the top of the tab, where its example shows

# Idle when no status tracker in the tab is pending or generating and no progress bar runs.
TAB_IDLE_JS = """(key) => {
  const tab = document.getElementById('tab-' + key);
  if (!tab || tab.offsetParent === null) return false;
  return tab.querySelectorAll('.pending, .generating, .eta-bar, .progress-bar').length === 0;
}"""


def goto(page, url: str) -> None:
    """Navigate; leaving a page aborts its open event streams, which Chromium logs as errors: those
    (and only those) are not counted against the app."""
    before = list(page.console_errors)
    page.goto(url)
    page.console_errors[:] = before


def open_link(page, app_url: str, query: str, key: str, before_waiting: Callable[[], None] = lambda: None) -> None:
    """Open `?<query>`, call `before_waiting`, and wait until the tab is shown and all its work (the pressed
    button) is done."""
    goto(page, app_url + "?" + query)
    before_waiting()
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT)
    page.locator(f"#tab-{key}").wait_for(state="visible", timeout=WAIT)
    if "example=" in query:  # the example's note appears with its cached outputs
        page.wait_for_function("(key) => document.getElementById('pg-example-note-' + key)?.innerText"
                               "?.includes('Example')", arg=key, timeout=WAIT)
    else:
        page.wait_for_timeout(1500)  # the link's run button is pressed after the inputs arrive
    for _ in range(2):  # idle twice, apart: a chained event (an input's .change) may start after the first
        page.wait_for_function(TAB_IDLE_JS, arg=key, timeout=WAIT)
        page.wait_for_timeout(600)


def first_example(key: str) -> str:
    from playground.ui.examples import load_example_file

    return load_example_file(key).examples[0].name


def shoot_tab(page, key: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    box = page.locator(f"#tab-{key}").bounding_box()
    top = page.locator("#pg-tabs").bounding_box()["y"]
    page.screenshot(path=str(path), full_page=True,
                    clip={"x": 0, "y": top, "width": page.viewport_size["width"],
                          "height": min(box["y"] + box["height"] - top, SHOT_HEIGHT)})


def test_deep_link_fills_the_inputs_and_runs_the_tab(page, app_url):
    open_link(page, app_url, "tab=sampling&prompt=The+capital+of+France+is&temperature=0.3&top_k=7", "sampling")
    assert page.get_by_label("number input for Temperature T (0 = greedy)").input_value() == "0.3"
    assert page.get_by_label("Top-k (0 = off)").input_value() == "7"
    assert "T=0.3" in page.locator("#sampling-stages").inner_text()  # the link pressed "Show"
    assert "·Paris" in page.locator("#sampling-stages").inner_text()

    page.locator("#pg-copy-link-sampling").click()
    link_box = page.locator("#pg-link-sampling textarea")
    page.wait_for_function("document.querySelector('#pg-link-sampling textarea').value.startsWith('http')",
                           timeout=WAIT)
    link = link_box.input_value()
    assert "tab=sampling" in link and "temperature=0.3" in link and "top_k=7" in link
    assert "prompt=The+capital+of+France+is" in link

    # The copied link restores the view in a fresh page (another temperature first, to see it change).
    open_link(page, app_url, "tab=attention", "attention")
    goto(page, link)
    page.wait_for_function("document.querySelector('#sampling-stages')?.innerText?.includes('T=0.3')",
                           timeout=WAIT)
    assert page.get_by_label("Top-k (0 = off)").input_value() == "7"
    assert page.console_errors == []


def test_a_bad_link_warns_and_keeps_the_good_values(page, app_url):
    """The warning is looked for as the page loads: on a loaded machine the page's own waits (the model's
    status, the tab) can outlast a toast."""
    open_link(page, app_url, "tab=sampling&temperature=hot&top_p=0.5&run=0", "sampling",
              lambda: page.get_by_text("temperature: not a number").wait_for(timeout=WAIT))
    assert page.get_by_label("number input for Top-p (1 = off)").input_value() == "0.5"


def test_plotly_toolbar_saves_a_png(page, app_url):
    open_link(page, app_url, "tab=sampling&run=1", "sampling")
    page.locator("#sampling-stages .js-plotly-plot").hover()
    with page.expect_download() as download:
        page.locator("#sampling-stages .modebar-btn[data-title='Download plot as a PNG']").click()
    content = Path(download.value.path()).read_bytes()
    assert content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) > 10_000


def test_export_panel_downloads_a_standalone_html(page, app_url):
    open_link(page, app_url, "tab=sampling&run=1", "sampling")
    page.locator("#pg-export-sampling").get_by_text("Export: plots as HTML").click()
    page.locator("#pg-export-html-sampling").click()
    link = page.locator("#pg-export-file-sampling a[download]")
    link.wait_for(timeout=WAIT)
    with page.expect_download() as download:
        link.click()
    html = Path(download.value.path()).read_text(encoding="utf-8")
    assert html.lower().startswith("<!doctype html>") and "Paris" in html


@pytest.mark.skipif(not os.environ.get("PLAYGROUND_SCREENSHOTS"),
                    reason="retakes the README's screenshots: `make screenshots` (the page audit walks every tab)")
def test_readme_screenshots(page, app_url):
    """One screenshot per tab, normal mode, light theme, each tab showing its first prepared example."""
    folder = Path(os.environ["PLAYGROUND_SCREENSHOTS"])
    folder = folder if folder.is_absolute() else ROOT / folder
    for key in TAB_KEYS:
        open_link(page, app_url, f"tab={key}&example={first_example(key)}", key)
        shoot_tab(page, key, folder / f"{key}.png")
        assert (folder / f"{key}.png").stat().st_size > 20_000

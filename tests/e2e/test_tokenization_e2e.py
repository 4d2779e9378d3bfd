"""Chromium drives the Tokenization tab: chips for several tokenizers, a selected token's details, the
chat template, the BPE explorer, an unavailable tokenizer, and a 100k-character text that must not freeze."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# Playwright's fill() types a 100k-character text slowly; set it the way a paste does.
SET_TEXT = ("([text]) => { const box = document.querySelector('#tokenization-text textarea'); box.value = text; "
            "box.dispatchEvent(new Event('input', {bubbles: true})); }")


def test_tokenization_tab_end_to_end(page, open_tab):
    open_tab("tokenization")

    # The tab opens full: chips per tokenizer, counts, the alignment plot, the chat template, the BPE step.
    page.wait_for_selector("#tokenization-chips .pgt-t", timeout=60_000)
    chips = page.inner_text("#tokenization-chips")
    assert "Loaded model: SmolLM2-135M-Instruct" in chips and "MiniLM WordPiece" in chips and "UTF-8 bytes" in chips
    page.wait_for_selector("#tokenization-alignment .js-plotly-plot", timeout=30_000)
    page.wait_for_selector("#tokenization-chat-chips .pgt-special", timeout=60_000)
    assert "the template costs" in page.inner_text("#tokenization-chat-summary")
    page.wait_for_selector("#tokenization-bpe-step-view .pgt-new", timeout=120_000)
    assert "✓ Our Python replay" in page.inner_text("#tokenization-bpe-summary")

    # Selecting a token pins its id, bytes and span.
    first = page.locator("#tokenization-chips .pgt-t[tabindex]").first
    assert "id " in first.get_attribute("title")
    first.click()
    details = page.inner_text("#tokenization-chips .pgt-detail")
    assert details.startswith("token #0 · id ") and "bytes:" in details and "characters 0–" in details

    # An example with special tokens typed as text: dark chips.
    page.locator("#tab-tokenization").get_by_role("combobox", name="Example").click()
    page.get_by_role("option", name="Special tokens typed as text").click()
    page.wait_for_selector("#tokenization-chips .pgt-special", timeout=60_000)

    # A tokenizer that cannot load here says why; the others still render.
    page.get_by_label("More tokenizers").fill("someone/not-cached-anywhere")
    page.locator("#tokenization-run").click()
    page.wait_for_selector("#tokenization-chips .pgt-error >> text=offline", timeout=60_000)
    assert page.locator("#tokenization-chips .pgt-row").count() == 3
    page.get_by_label("More tokenizers").fill("")

    # A 100k-character text: exact counts, a capped chip view with a note, a page that still answers.
    text = ("Paris is the capital of France. Токенизатор 🤗 12345\n" * 2000)[:100_000]
    page.evaluate(SET_TEXT, [text])
    page.locator("#tokenization-run").click()
    page.wait_for_selector("#tokenization-chips >> text=The text has 100,000 characters", timeout=120_000)
    assert "100000" in page.inner_text("#tokenization-counts")
    assert page.locator("#tokenization-chips .pgt-t[tabindex]").count() < 3000
    assert page.evaluate("1 + 1") == 2  # the page still answers (a frozen one would time out)

    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate(SET_TEXT, ["Tokenizers split naïve text, code and emoji 🤗 into pieces: unbelievable!"])
    page.locator("#tokenization-run").click()
    page.wait_for_selector("#tokenization-chips >> text=unbelievable", timeout=60_000)
    page.wait_for_function("!document.querySelector('#tokenization-chips').innerText.includes('100,000 characters')")
    page.locator("#tab-tokenization").screenshot(path=str(ARTIFACTS / "tokenization.png"))
    assert page.console_errors == []


# The counts table's scrolling container, and every element of the table that is wider than its box (gradio's
# hidden measuring row, aria-hidden and collapsed, left out): [tag, class, scrollWidth, clientWidth].
CONTAINER = """() => { const box = document.querySelector('#tokenization-counts .virtual-table-viewport');
    return box && [box.scrollWidth, box.clientWidth]; }"""
OVERFLOWING = """() => [...document.querySelectorAll('#tokenization-counts, #tokenization-counts *')]
    .filter((el) => !el.closest('[aria-hidden="true"]') && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
    .map((el) => [el.tagName, el.className.toString().slice(0, 40), el.scrollWidth, el.clientWidth])"""


def test_the_counts_table_fits_at_1400_px_with_headers_in_words(page, app_url):
    """Issue 23: the tokenizer comparison's counts table scrolled sideways at 1400 px (1270 px in a 1214 px box)."""
    assert page.viewport_size == {"width": 1400, "height": 1000}
    page.goto(app_url)  # Tokenization is the tab the app opens on (no click: a busy page can stall one)
    page.wait_for_selector("#tab-tokenization", state="visible", timeout=300_000)
    # (a text selector finds gradio's hidden measuring row first, which never becomes visible)
    page.wait_for_function("() => { const text = document.querySelector('#tokenization-counts').innerText; "
                           "return text.includes('Loaded model') && text.includes('UTF-8 bytes'); }", timeout=300_000)
    scroll_width, client_width = page.evaluate(CONTAINER)  # 1270 in 1214 px before
    assert 0 < scroll_width <= client_width
    assert page.evaluate(OVERFLOWING) == []
    headers = [text.strip() for text in page.locator("#tokenization-counts thead th").all_inner_texts()]
    assert "tokenizer" in headers and not any("_" in header for header in headers)
    assert page.console_errors == []

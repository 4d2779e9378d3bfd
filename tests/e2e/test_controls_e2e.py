"""Chromium moves each view control by keyboard (arrow keys, typed numbers, typed text) and checks that its view
follows at once, without pressing the tab's button (issue 23: Enter, arrow keys and typed values used to leave
the view on the old value). One app server for the module (the session's `app_url`). Saves
artifacts/controls-<tab>.png."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WAIT = 120_000


def contains(page, selector: str, text: str, timeout: int = WAIT) -> None:
    """Wait until the element's text contains `text` (the view re-rendered)."""
    page.wait_for_function("([selector, text]) => (document.querySelector(selector)?.innerText || '').includes(text)",
                           arg=[selector, text], timeout=timeout)


def press(page, label: str, key: str, times: int = 1) -> None:
    """Focus a slider's range input and press a key on it (what a keyboard user does)."""
    slider = page.get_by_label(f"range slider for {label}")
    slider.focus()
    for _ in range(times):
        slider.press(key)


def open_on_its_example(page, open_tab, key: str) -> None:
    """Open a tab and wait for its first prepared example's cached result (what every visitor sees first)."""
    open_tab(key)
    contains(page, f"#pg-example-note-{key}", "cached result from")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"controls-{name}.png"), full_page=False)


def test_attention_opens_on_a_cached_example_and_its_controls_follow_the_keyboard(page, open_tab):
    open_tab("attention")
    # opens on the cached example (prompt, layer 2, mean over heads), labelled as cached, ranges from the model
    contains(page, "#attention-status", "layer 2")
    contains(page, "#pg-example-note-attention", "cached result from")
    assert page.get_by_label("range slider for Layer").get_attribute("max") == "29"  # 30 layers, not 0-63
    page.wait_for_function("() => document.querySelector('[aria-label=\"number input for Query token position\"]')"
                           "?.value === '18'", timeout=30_000)  # the chart's token (not 0)
    assert page.get_by_label("range slider for Query token position").get_attribute("max") == "18"

    press(page, "Layer", "ArrowRight")
    contains(page, "#attention-status", "layer 3")
    contains(page, "#attention-grid", "All heads of layer 3")  # the follow-up, chained after the heatmap's paint
    number = page.get_by_label("number input for Layer")
    number.fill("7")  # typed, no Enter, no mouse release
    contains(page, "#attention-status", "layer 7")

    head = page.locator("#tab-attention").get_by_role("combobox", name="Head")
    head.focus()
    head.press("ArrowDown")  # opens the list
    page.get_by_role("option", name="head 0 (KV 0)").wait_for()
    for _ in range(4):  # walks down it
        head.press("ArrowDown")
    head.press("Enter")
    page.wait_for_function("(box) => box.value.startsWith('head ')", arg=head.element_handle(), timeout=WAIT)
    picked = head.input_value()  # e.g. "head 4 (KV 1)"
    contains(page, "#attention-status", picked.split(" (")[0] + ".")

    press(page, "Query token position", "ArrowLeft", 2)
    contains(page, "#attention-row", "What token 16")

    press(page, "Context length (tokens)", "ArrowRight")
    contains(page, "#attention-kv-note", "8,448 tokens")
    shot(page, "attention")
    assert page.console_errors == []


def test_calibration_bins_and_binning_follow_the_arrow_keys(page, open_tab):
    open_on_its_example(page, open_tab, "calibration")
    contains(page, "#calibration-reliability", "10 bins")

    def redrawn_or_marked(binning: str, bins: int) -> None:
        """Redrawn from the scores cached on disk, or (never scored on this machine) marked out of date: never
        stale."""
        page.wait_for_function("([drawn, marked]) => "
                               "document.querySelector('#calibration-reliability').innerText.includes(drawn) || "
                               "document.querySelector('#calibration-status').innerText.includes(marked)",
                               arg=[f"({binning}, {bins} bins)", f"{bins} {binning} bins"], timeout=WAIT)

    press(page, "Bins", "ArrowRight")
    redrawn_or_marked("equal-width", 11)
    # gradio 6 names each radio input on its own, so arrow keys do not move within the group: a keyboard user
    # tabs to the next choice and presses Space
    page.locator("#tab-calibration").get_by_label("equal-width", exact=True).focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    redrawn_or_marked("equal-mass", 11)
    shot(page, "calibration")
    assert page.console_errors == []


def test_tokenization_follows_typing_in_the_tokens_and_the_bpe_explorer(page, open_tab):
    open_tab("tokenization")
    page.wait_for_selector("#tokenization-bpe-step-view .pgt-new", timeout=WAIT)
    box = page.locator("#tokenization-text textarea")
    box.fill("")
    box.press_sequentially("naïve zebras", delay=30)
    contains(page, "#tokenization-chips", "zebras")
    contains(page, "#tokenization-bpe-summary", "Your text: 13 bytes")  # ï is two bytes: the typed text's, not the default's
    shot(page, "tokenization")
    assert page.console_errors == []


def test_sampling_settings_follow_the_arrow_keys(page, open_tab):
    open_on_its_example(page, open_tab, "sampling")
    contains(page, "#sampling-stages", "T=0.8")
    press(page, "Temperature T (0 = greedy)", "ArrowRight")
    contains(page, "#sampling-stages", "T=0.85")
    contains(page, "#sampling-samples", "draws vs the math")  # the end of the chain after the stage chart's paint
    for label, key, shown in (("Top-p (1 = off)", "ArrowLeft", "p={}"), ("Min-p (0 = off)", "ArrowRight", "min-p {}")):
        press(page, label, key)
        value = float(page.get_by_label(f"range slider for {label}").input_value())
        contains(page, "#sampling-stages", shown.format(f"{value:g}"))
    top_k = page.get_by_label("Top-k (0 = off)")  # a number box: arrow up
    top_k.focus()
    top_k.press("ArrowUp")
    contains(page, "#sampling-stages", f"k={top_k.input_value()}")
    assert page.console_errors == []


def test_speculative_step_follows_the_arrow_keys(page, open_tab):
    open_on_its_example(page, open_tab, "speculative")
    page.wait_for_selector("#spec-text .spec-step[data-step='1'][style*=outline]", timeout=WAIT)
    press(page, "Step to inspect (or hover the tokens above)", "ArrowRight")
    page.wait_for_selector("#spec-text .spec-step[data-step='2'][style*=outline]", timeout=WAIT)
    assert page.console_errors == []


def test_rag_pasted_text_becomes_the_corpus_with_chunks_that_suit_it(page, open_tab):
    open_on_its_example(page, open_tab, "rag")
    pasted = page.locator("#tab-rag").get_by_label("…or paste text")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.evaluate("(text) => navigator.clipboard.writeText(text)",
                  "A kettle boils water. Descale it every four weeks with vinegar. " * 30)  # ~1,900 characters
    pasted.focus()
    page.keyboard.press("Control+V")  # a real paste (gradio's textbox fires `change` for it, not `input`)
    contains(page, "#rag-stats", "Using your text")
    assert page.locator("#tab-rag").get_by_label("Your files and pasted text").is_checked()
    assert page.locator("#tab-rag").get_by_label("Chunk size (in units)").input_value() == "150"
    assert "cannot carry your text" in page.inner_text("#rag-stats")
    shot(page, "rag")
    assert page.console_errors == []


def test_inside_lens_position_and_sampling_follow_the_arrow_keys(page, open_tab):
    open_on_its_example(page, open_tab, "inside")
    contains(page, "#inside-curves", "After token 8 ")
    press(page, "Position for the curves (the last one after each run)", "ArrowLeft")
    contains(page, "#inside-curves", "After token 7 ")
    press(page, "temperature (0 = greedy)", "ArrowLeft")  # 1.0 -> 0.95: the lens's sampling marks are redrawn
    contains(page, "#inside-lens-status", "T=0.95")
    assert "After token 7 " in page.inner_text("#inside-curves")  # the chosen position is kept
    shot(page, "inside")
    assert page.console_errors == []

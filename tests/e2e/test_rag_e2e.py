"""Chromium on the RAG tab: retrieve on the Python reference, see the table and the figures, answer,
and upload a binary file renamed .txt (refused with a message, nothing breaks)."""

from __future__ import annotations

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_rag_tab_retrieves_answers_and_refuses_a_binary_upload(page, open_tab, tmp_path):
    tab = open_tab("rag")
    tab.get_by_role("button", name="Retrieve", exact=True).click()
    # The first retrieval embeds the corpus (or loads it from the disk cache).
    page.wait_for_selector("#rag-summary >> text=BM25 query terms", timeout=600_000)
    assert page.locator("#rag-results [role=row]").count() == 1 + 5  # header + top 5
    for plot in ("#rag-bars", "#rag-distribution", "#rag-map"):
        page.wait_for_selector(f"{plot} .js-plotly-plot", timeout=30_000)
    assert "break" in page.inner_text("#rag-results")  # the default question is about break + finally

    tab.get_by_role("button", name="Answer", exact=True).click()
    page.wait_for_selector("#rag-answer >> text=finish:", timeout=300_000)
    assert "<|im_start|>assistant" in page.locator("#rag-prompt textarea").input_value()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "rag.png"), full_page=True)

    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    page.locator("#rag-files input[type=file]").set_input_files(str(binary))
    page.wait_for_selector("text=photo.txt: this looks like a binary file", timeout=30_000)
    assert page.console_errors == []

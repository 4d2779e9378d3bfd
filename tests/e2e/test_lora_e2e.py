"""Chromium drives the LoRA tab: the why-LoRA panel from the real model, a short run that survives a
page reload (the page re-attaches to the running job), and before/after answers."""

from __future__ import annotations

import re

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

LONG = 600_000  # ms: a training step on a busy 2-core machine can take many seconds


def test_train_reload_reattach_and_compare(page, open_tab):
    tab = open_tab("lora")
    page.wait_for_selector("#lora-budget-table >> text=LoRA trains", timeout=LONG)
    assert "460,800" in page.inner_text("#lora-budget-table")  # r = 8 on q_proj and v_proj of SmolLM2-135M
    page.wait_for_selector("#lora-dataset-report >> text=270 train / 30 eval", timeout=LONG)
    for name, value in (("Steps (1–2000)", "3"), ("Eval every n steps", "3"), ("Batch size", "2"),
                        ("Max sequence length (tokens)", "64")):
        tab.get_by_role("spinbutton", name=name).fill(value)
    page.click("#lora-train")
    page.wait_for_selector("#lora-progress >> text=/Step [1-3] \\/ 3/", timeout=LONG)
    job_id = re.search(r"job (\S+)", page.inner_text("#lora-progress")).group(1)

    assert page.console_errors == [], page.console_errors
    page.reload()  # mid-run: the page must find the same job again
    # Reloading aborts the old page's open stream, which gradio logs as console errors; count from here.
    page.console_errors.clear()
    open_tab("lora")
    page.wait_for_selector(f"#lora-progress >> text=job {job_id}", timeout=LONG)
    page.wait_for_selector("#lora-progress >> text=completed", timeout=LONG)
    page.wait_for_selector("#lora-loss-plot .js-plotly-plot", timeout=60_000)
    assert "as PEFT reports" in page.inner_text("#lora-stats")

    page.get_by_role("button", name="Compare before / after").click()
    page.wait_for_selector("#lora-answers >> text=before (base)", timeout=60_000)
    page.wait_for_selector("#lora-shift-plot >> text=KL after", timeout=LONG)
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "lora.png"))
    assert page.console_errors == [], page.console_errors

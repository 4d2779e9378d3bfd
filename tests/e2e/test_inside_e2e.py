"""Chromium drives the Inside tab: the lens heatmap is drawn, a head switched off changes the distribution, the
attribution with its completeness check is shown. Screenshot: docs/screenshots/inside.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "inside.png"


def click_cell(page, plot: str, layer: int, head: int) -> None:
    """Click the centre of a heatmap cell: category index -> pixel through plotly's own axes."""
    x, y = page.evaluate("""([selector, layer, head]) => {
        const gd = document.querySelector(selector + ' .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        return [box.left + xa._offset + xa.c2p(head), box.top + ya._offset + ya.c2p(layer)];
    }""", [plot, layer, head])
    page.mouse.click(x, y)


def test_inside_tab_end_to_end(page, open_tab):
    tab = open_tab("inside")
    page.get_by_role("button", name="Show the logit lens").click()
    page.wait_for_selector("#inside-lens-status >> text=Next token", timeout=120_000)
    for element in ("inside-lens", "inside-curves"):
        page.wait_for_selector(f"#{element} .js-plotly-plot", timeout=30_000)
    assert "Paris" in page.inner_text("#inside-lens-status")

    tab.get_by_label("Heads to switch off (layer.head, * = all heads of a layer)").fill("0.*, 1.*, 2.*")
    page.get_by_role("button", name="Switch off and compare").click()
    page.wait_for_selector("#inside-ablation-status >> text=KL(before", timeout=120_000)
    status = page.inner_text("#inside-ablation-status")
    kl = float(status.split("KL(before ‖ after) = ")[1].split()[0])
    assert kl > 0.01, status
    page.wait_for_selector("#inside-ablation .js-plotly-plot", timeout=30_000)

    # a click on the head-importance map adds that head to the heads to switch off (issue 19)
    tab.get_by_label("Heads to switch off (layer.head, * = all heads of a layer)").fill("0.1")
    page.get_by_role("button", name="Map every head's importance").click()
    page.wait_for_selector("#inside-importance-status >> text=batched forwards", timeout=240_000)
    for _ in range(2):  # a second click on the same cell adds nothing
        click_cell(page, "#inside-importance", layer=3, head=2)
    page.wait_for_function("document.querySelector('#inside-heads textarea, #inside-heads input').value === "
                           "'0.1, 3.2'", timeout=10_000)
    page.get_by_role("button", name="Switch off and compare").click()
    page.wait_for_selector("#inside-ablation-status >> text=L3H2", timeout=120_000)

    page.get_by_role("button", name="Explain this token").click()
    page.wait_for_selector("#inside-attribution-status >> text=Completeness", timeout=240_000)
    assert "Spearman" in page.inner_text("#inside-attribution-status")
    page.wait_for_selector("#inside-attribution .js-plotly-plot", timeout=30_000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "inside.png"), full_page=True)
    page.locator("#tab-inside").screenshot(path=str(SCREENSHOT))
    assert page.console_errors == []

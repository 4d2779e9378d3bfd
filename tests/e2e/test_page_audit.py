"""An automated look at every tab (issue 23): on each of four screens (CONDITIONS) one Chromium page walks the tabs
in-page and measures each with one page.evaluate: the smallest visible text (computed styles, and the SVG
text of every plotly figure), overlapping text boxes inside a figure, whether the tab shows anything on
arrival, where its main visual starts, and (presenter mode) that its advanced controls are hidden. The tests below assert on those measurements, one test id per
(condition, tab), so a failure names the screen.

Floors: 18 px in presenter mode (read from the back of a room), 12 px otherwise. With PLAYGROUND_SCREENSHOTS
set, the presenter walk at 1920x1080 (light) also writes docs/screenshots/presenter-<tab>.png.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from playground.ui.tabs import all_tabs

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TABS = [info.key for info in all_tabs() if info.build is not None]
LABELS = {info.key: info.label for info in all_tabs()}
THEMES = ("light", "dark")
# The screens people use: a laptop, a phone, and the projector in both themes. One walk (a page through every tab)
# takes ~2.5 min on 2 cores, so the audit walks these four, not every (mode, theme, width): the theme changes
# colours, not sizes, and the other widths fall between these.
CONDITIONS = [("normal", "light", 1400), ("normal", "light", 390), ("presenter", "light", 1920),
              ("presenter", "dark", 1920)]
FLOOR = {"normal": 12, "presenter": 18}  # px
HEIGHTS = {1400: 1000, 1920: 1080, 390: 844}  # a laptop, a projector, a phone
WAIT = 180_000

# The element that is each tab's main visual: in presenter mode its top must be on the first screen.
MAIN_VISUAL = {
    "tokenization": "#tokenization-chips",
    "attention": "#attention-mask-plot",  # the tab's first section: the mask explorer
    "sampling": "#sampling-stages",
    "speculative": "#spec-text",
    "rag": "#rag-bars",
    "lora": "#lora-loss-plot",
    "calibration": "#calibration-reliability",
    "quantization": "#quantization-breakdown",
    "inside": "#inside-lens",
    "serving": "#serving-batching",
}

# Tabs whose main visual still starts below the first screen in presenter mode, and why (strict xfails). Empty since
# presenter mode places each tab's main visual (or the row holding it) right after the examples, the one-line
# cached-example note and the folded explanation (assets/style.css, CSS `order`).
BELOW_THE_FOLD: dict[str, str] = {}

# What the audit found once every tab opened on its cached example (2026-12-02) and is not fixed yet: per check,
# "<mode>-<theme>-<width>-<tab>". Tokens in the lens heatmap and chips below the floor, plot titles and legends
# that overlap at these sizes. Listed, so every other page must stay clean; the list shrinks as they are fixed.
KNOWN_DEFECTS: dict[str, set[str]] = {
    # empty since 2026-12-03: the size defects passed already; the phone's overlaps went when charts kept a
    # laptop-sized layout and scroll sideways on a phone (assets/style.css)
    "size": set(),
    "overlap": set(),
}
# Tabs whose main visual starts below the first screen in presenter mode since the merges (non-strict xfails).
BELOW_THE_FOLD_NOW: set[str] = set()

# One call per tab: everything the tests need, measured in the page.
MEASURE_JS = """([key, floor, mainSelector]) => {
  window.scrollTo(0, 0);
  const tab = document.getElementById('tab-' + key);
  // Visible: has a box, no ancestor hides it, and no ancestor that clips (a folded explanation) cuts it off.
  const shown = (element) => {
    const box = element.getBoundingClientRect();
    if (box.width < 1 || box.height < 1) return false;
    for (let node = element; node && node.nodeType === 1; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.display === 'none' || style.visibility === 'hidden' || +style.opacity === 0) return false;
      if (node !== element && style.overflow !== 'visible' && !(node instanceof SVGElement)) {
        const clip = node.getBoundingClientRect();
        if (box.top >= clip.bottom || box.bottom <= clip.top || box.left >= clip.right || box.right <= clip.left) {
          return false;
        }
      }
    }
    return true;
  };
  const describe = (element) => (element.id ? '#' + element.id : element.tagName.toLowerCase() +
    (typeof element.className === 'string' && element.className ? '.' + element.className.split(' ')[0] : ''));
  // Text too small: every visible text node of the header and the tab (a formula's scripts and fractions are sized
  // by KaTeX from the formula itself; plotly's hover layer and toolbar are not there until hovered; a table's
  // drop hint shows only while a file is dragged over it).
  const small = [];
  const roots = [document.getElementById('pg-title'), document.getElementById('pg-status'),
                 document.getElementById('pg-page-controls'), document.querySelector('#pg-tabs [role=tablist]'), tab];
  const seen = new Set();
  for (const root of roots.filter(Boolean)) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const element = node.parentElement;
      if (!element || seen.has(element) || !node.textContent.replace(/[\\s\\u200b]/g, '')) continue;
      seen.add(element);
      if (element.closest('.hoverlayer, .modebar, .katex .msupsub, .katex .mfrac, .katex-mathml, .drop-hint, script, style, option')) continue;
      if (!shown(element)) continue;
      const size = parseFloat(getComputedStyle(element).fontSize);
      if (size < floor - 0.01) small.push({text: node.textContent.trim().slice(0, 40), size, where: describe(element)});
    }
  }
  // Overlapping text inside each figure: the bounding boxes of every SVG text element but the hover layer and
  // rotated tick labels (their boxes are axis-aligned, so neighbours' boxes always intersect; plotly spaces them).
  const overlaps = [];
  tab.querySelectorAll('.js-plotly-plot').forEach((plot) => {
    if (!shown(plot)) return;
    const boxes = [...plot.querySelectorAll('svg text')]
      .filter((text) => !text.closest('.hoverlayer') && !/rotate\\((?!0[,)])/.test(text.getAttribute('transform') || '')
              && text.textContent.trim() && shown(text))
      .map((text) => ({text: text.textContent.trim().slice(0, 40), box: text.getBoundingClientRect()}));
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].box, b = boxes[j].box;
        const width = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const height = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (width <= 0 || height <= 0) continue;
        const smaller = Math.min(a.width * a.height, b.width * b.height);
        if (width * height > 0.2 * smaller) {
          overlaps.push({plot: describe(plot.closest('[id]:not(.js-plotly-plot)') || plot), a: boxes[i].text,
                         b: boxes[j].text});
        }
      }
    }
  });
  // Does the main visual show a result on arrival: its plot has data, or (an HTML visual) it holds more than
  // a one-sentence placeholder?
  const hasData = (plot) => (plot.data || []).some((trace) =>
    ['x', 'y', 'z', 'values'].some((axis) => trace[axis] && trace[axis].length));
  const main = document.querySelector(mainSelector);
  const mainBox = main && main.getBoundingClientRect();
  const mainPlot = main && main.querySelector('.js-plotly-plot');
  const mainDrawn = !!main && (mainPlot ? hasData(mainPlot) :
    !main.querySelector('[data-testid="block-label"]') && main.innerText.trim().length > 200);
  const advancedShown = [...tab.querySelectorAll('.pg-advanced')].filter(shown).length;
  // A word split over lines in a table cell (a number squeezed to one digit per line on a phone): a text node
  // without spaces whose range has more than one line box.
  const broken = [];
  tab.querySelectorAll('table td, table th').forEach((cell) => {
    if (!shown(cell)) return;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const word = node.textContent.trim();
      if (!word || /\s/.test(word) || word.length > 24) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push({word, lines: lines.size, where: describe(cell.closest('[id]') || cell)});
    }
  });
  return {
    small, overlaps, mainDrawn, advancedShown, broken,
    mainTop: mainBox ? mainBox.top + window.scrollY : null,
    screenHeight: window.innerHeight,
    pageWidth: document.documentElement.scrollWidth, screenWidth: window.innerWidth,
  };
}"""

# Settled: no pending status tracker in the tab, and (presenter mode) every drawn plot scaled by presenter.js.
SETTLED_JS = """([key, presenter]) => {
  const tab = document.getElementById('tab-' + key);
  if (!tab || tab.offsetParent === null || tab.querySelector('.pending, .generating')) return false;
  const plots = [...tab.querySelectorAll('.js-plotly-plot')].filter((plot) => plot.offsetParent !== null);
  return plots.every((plot) => plot._fullLayout && (!presenter ||
    +plot.dataset.pgTarget === ((plot.layout.font && plot.layout.font.size) || 12)));
}"""


def _screenshot_folder() -> Path | None:
    folder = os.environ.get("PLAYGROUND_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    return path if path.is_absolute() else ROOT / path


def walk(browser, app_url: str, mode: str, theme: str, width: int) -> dict[str, Any]:
    """One page for one condition: open the app, then each tab in turn; returns {tab: measurements,
    "console_errors": [...]}."""
    context = browser.new_context(viewport={"width": width, "height": HEIGHTS[width]})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    query = "&".join(part for part in ("presenter=1" if mode == "presenter" else "", f"__theme={theme}") if part)
    shots = _screenshot_folder() if (mode, theme, width) == ("presenter", "light", 1920) else None
    try:
        page.goto(f"{app_url}?{query}")
        page.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT)
        if mode == "presenter":
            page.wait_for_function("document.body.classList.contains('pg-presenter')", timeout=WAIT)
        results: dict[str, Any] = {}
        for key in TABS:
            page.get_by_role("tab", name=LABELS[key], exact=True).click()
            page.locator(f"#tab-{key}").wait_for(state="visible", timeout=WAIT)
            page.wait_for_function(SETTLED_JS, arg=[key, mode == "presenter"], timeout=30_000)
            page.wait_for_timeout(300)  # presenter.js re-applies its scale on the frame after a change
            results[key] = page.evaluate(MEASURE_JS, [key, FLOOR[mode], MAIN_VISUAL[key]])
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / f"presenter-{key}.png"))
        results["console_errors"] = [error for error in errors if "favicon" not in error]
        return results
    finally:
        context.close()


class Audit(dict):
    """Measurements per condition, each walked once, when a test first asks for it (so `-k presenter-light-1920`
    walks one page only)."""

    def __init__(self, browser, app_url: str) -> None:
        super().__init__()
        self.browser, self.app_url = browser, app_url

    def __missing__(self, condition: tuple[str, str, int]) -> dict[str, Any]:
        self[condition] = walk(self.browser, self.app_url, *condition)
        return self[condition]


@pytest.fixture(scope="module")
def audit(browser, app_url) -> Audit:
    return Audit(browser, app_url)


def _id(condition: tuple[str, str, int]) -> str:
    return "-".join(map(str, condition))


@pytest.mark.parametrize("condition", CONDITIONS, ids=_id)
def test_no_console_errors(audit, condition):
    assert audit[condition]["console_errors"] == []


def known_defects_marked(check: str) -> list[Any]:
    """Every (condition, tab) pair; those in KNOWN_DEFECTS[check] carry a non-strict xfail that names the defect
    (a fix is welcome; some depend on the cached texts' lengths), every other pair must pass."""
    known = KNOWN_DEFECTS.get(check, set())
    return [pytest.param(condition, key, id=f"{_id(condition)}-{key}", marks=[pytest.mark.xfail(
        reason=f"known {check} defect (issue 23, open): found when tabs began opening on cached examples")]
        if f"{_id(condition)}-{key}" in known else []) for condition in CONDITIONS for key in TABS]


@pytest.mark.parametrize("condition, key", known_defects_marked("size"))
def test_no_text_under_the_size_floor(audit, condition, key):
    small = audit[condition][key]["small"]
    assert small == [], f"{len(small)} texts under {FLOOR[condition[0]]} px, e.g. {small[:8]}"


@pytest.mark.parametrize("condition, key", known_defects_marked("overlap"))
def test_no_overlapping_text_in_a_figure(audit, condition, key):
    overlaps = audit[condition][key]["overlaps"]
    assert overlaps == [], f"{len(overlaps)} overlapping text pairs, e.g. {overlaps[:6]}"


@pytest.mark.parametrize("condition", CONDITIONS, ids=_id)
def test_no_word_in_a_table_is_broken_over_lines(audit, condition):
    broken = {key: audit[condition][key]["broken"] for key in TABS if audit[condition][key]["broken"]}
    assert broken == {}, broken


@pytest.mark.parametrize("condition", CONDITIONS, ids=_id)
def test_the_page_is_no_wider_than_the_screen(audit, condition):
    widths = {key: audit[condition][key]["pageWidth"] for key in TABS}
    assert all(width <= audit[condition][TABS[0]]["screenWidth"] for width in widths.values()), widths


@pytest.mark.parametrize("key", TABS)
def test_no_tab_is_empty_on_arrival(audit, key):
    """Every tab opens on its first prepared example's cached result (LoRA: a cached training run)."""
    measured = audit[("normal", "light", 1400)][key]
    assert measured["mainDrawn"], f"{MAIN_VISUAL[key]} shows nothing until a button is pressed"


@pytest.mark.parametrize("key", [pytest.param(key, marks=pytest.mark.xfail(
    key in BELOW_THE_FOLD, strict=True, reason=BELOW_THE_FOLD.get(key, ""))) if key in BELOW_THE_FOLD
    else pytest.param(key, marks=pytest.mark.xfail(key in BELOW_THE_FOLD_NOW, reason="known first-screen defect "
                      "(issue 23, open): the header, the cached-example note and the example row come first"))
    for key in TABS])
@pytest.mark.parametrize("theme", THEMES)
def test_presenter_mode_shows_the_main_visual_on_the_first_screen(audit, theme, key):
    measured = audit[("presenter", theme, 1920)][key]
    assert measured["mainTop"] is not None, f"{MAIN_VISUAL[key]} is not on the page"
    assert measured["mainTop"] < measured["screenHeight"] - 100, measured["mainTop"]  # at least 100 px of it


@pytest.mark.parametrize("key", TABS)
@pytest.mark.parametrize("theme", THEMES)
def test_presenter_mode_hides_the_advanced_controls(audit, theme, key):
    assert audit[("presenter", theme, 1920)][key]["advancedShown"] == 0


def test_a_png_export_is_named_after_its_view(page, app_url):
    """The toolbar's PNG is '<tab>-<plot label>.png' (assets/presenter.js), not plotly's 'newplot.png'."""
    page.goto(f"{app_url}?tab=sampling&example=paris")
    page.wait_for_selector("#sampling-stages .js-plotly-plot .main-svg", timeout=WAIT)
    page.wait_for_function("document.querySelector('#sampling-stages .js-plotly-plot')._context"
                           ".toImageButtonOptions?.filename !== undefined", timeout=WAIT)
    page.locator("#sampling-stages .js-plotly-plot").hover()
    with page.expect_download() as download:
        page.locator("#sampling-stages .modebar-btn[data-title='Download plot as a PNG']").click()
    assert download.value.suggested_filename == "sampling-stage-by-stage.png"

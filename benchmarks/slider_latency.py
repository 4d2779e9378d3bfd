"""Slider latency in Chromium (issue 22, "a slider feels instant"): from a key press on a view control to the
frame that shows the new data, target under 250 ms.

The app is started on loopback with the embedded model (as tests/conftest.py's `app_url` does) and driven by
Debian's Chromium through Playwright, as a visitor with a keyboard: focus a control, press an arrow key (or pick
a head from the dropdown with the arrow keys and Enter). The page measures itself: a capturing `keydown` listener
notes `performance.now()` when the key arrives, every animation frame checks whether the control's target view
shows the new value (the stage chart's panel title "T=0.85", the heatmap's "Layer 3,", ...), and the clock stops
in a macrotask after the first frame that does (the frame is painted). Each move starts on a
quiet page (the previous move's other views finished) and moves alternate direction, so the value stays in range.
Before the timed moves, one untimed move per control fills the server's caches (the prompt's logits, the forward).

`python -m benchmarks.slider_latency [--moves 12] [--only temperature,layer]` prints p50 / p95 per control with
the date, machine and load average; `run()` gives rows for `benchmarks.run` (ours = p50 or p95 in ms, baseline =
the 250 ms target, so a ratio under 1 meets it). Without Chromium or Playwright it says so and returns no rows.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
from dataclasses import dataclass
from typing import Any, Callable

from benchmarks.common import print_table, row

TARGET_MS = 250.0
WAIT_MS = 300_000
QUIET_MS = 600  # a move starts once the page has not changed for this long (the last move's views all drawn)

# Installed before a key press: resolves with the milliseconds from the key's arrival to the painted frame that
# shows the view's new state. `check` is a JS expression over `root`, the view's element, looked up again at every
# animation frame (gradio re-creates a block's element when it re-renders); what a frame's callback sees is what
# that frame paints, and the clock stops in a macrotask after it.
WATCH_JS = """([selector, check, timeout]) => {
  const test = new Function('root', 'return !!root && (' + check + ');');
  const shows = () => test(document.querySelector(selector));
  if (shows()) throw new Error('the view already shows the new value before the key press: ' + check);
  window.__sliderLatency = new Promise((resolve, reject) => {
    let started = null;
    document.addEventListener('keydown', () => { started = performance.now(); }, {capture: true, once: true});
    const deadline = performance.now() + timeout;
    const frame = () => {
      if (started !== null && shows()) { setTimeout(() => resolve(performance.now() - started), 0); return; }
      if (performance.now() > deadline) { reject(new Error('timed out waiting for ' + check)); return; }
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  });
}"""


# Resolves once nothing on the page has changed for `quiet` ms (or after `longest` ms).
QUIET_JS = """([quiet, longest]) => new Promise((resolve) => {
  let timer = setTimeout(done, quiet);
  const observer = new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(done, quiet); });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  const limit = setTimeout(done, longest);
  function done() { observer.disconnect(); clearTimeout(timer); clearTimeout(limit); resolve(); }
})"""


def settle(page: Any) -> None:
    """Wait until the page is quiet: the previous move's other views have arrived and been drawn."""
    page.evaluate(QUIET_JS, [QUIET_MS, WAIT_MS])


def text_check(pattern: str) -> str:
    """A JS check: one text node of the view (SVG included, no layout forced) matches the regex. Node by node:
    the view's whole textContent runs neighbours together ("T=0.85" then a tick label "49" reads "T=0.8549")."""
    return (f"(() => {{ const re = new RegExp({pattern!r}); "
            "const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT); "
            "while (walk.nextNode()) { if (re.test(walk.currentNode.data)) return true; } return false; })()")


def number(value: float) -> str:
    """As the figures print a setting (Python's `:g`)."""
    return f"{round(value, 6):g}"


@dataclass(frozen=True)
class Control:
    """One view control: where it lives, how a key moves it, and what its view shows for a value."""

    name: str
    tab: str
    label: str  # the accessible name of its range or number input ("range slider for Layer")
    view: str  # the CSS selector of the view that must show the new value
    check: Callable[[float], str]  # value -> JS check over `root`
    start_moves: int = 0  # untimed key presses before the timed ones (from 0 = off to a live value)
    up: str = "ArrowRight"
    down: str = "ArrowLeft"


CONTROLS = (
    Control("temperature", "sampling", "range slider for Temperature T (0 = greedy)", "#sampling-stages",
            lambda v: text_check(rf"T={re.escape(number(v))}(?![0-9])")),
    Control("top-k", "sampling", "Top-k (0 = off)", "#sampling-stages",
            lambda v: text_check(rf"k={int(v)}(?![0-9])"), start_moves=1, up="ArrowUp", down="ArrowDown"),
    Control("top-p", "sampling", "range slider for Top-p (1 = off)", "#sampling-stages",
            lambda v: text_check(rf"p={re.escape(number(v))}(?![0-9])")),
    Control("min-p", "sampling", "range slider for Min-p (0 = off)", "#sampling-stages",
            lambda v: text_check(rf"min-p {re.escape(number(v))}(?![0-9])"), start_moves=1),
    Control("attention layer", "attention", "range slider for Layer", "#attention-heatmap",
            lambda v: text_check(rf"Layer {int(v)},")),
    Control("attention query", "attention", "range slider for Query token position", "#attention-row",
            lambda v: text_check(rf"What token {int(v)} ")),
    Control("attention head", "attention", "", "#attention-heatmap",
            lambda v: text_check(rf"head {int(v)} \(reads")),
    Control("speculative step", "speculative", "range slider for Step to inspect (or hover the tokens above)",
            "#spec-text", lambda v: f"!!root.querySelector('.spec-step[data-step=\"{int(v)}\"][style*=outline]')"),
)


def conditions() -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores "
            f"({platform.processor() or platform.machine()}), load average {load}; Chromium (Playwright), "
            "app on loopback, embedded model")


def start_app() -> tuple[str, Any]:
    """The app on a free loopback port with the embedded model loaded (tests/conftest.py's app_url)."""
    import tempfile

    from benchmarks.common import model_manager
    from playground.ui import build_app, launch_options
    from playground.ui.queueing import configure_queue

    os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="slider-latency-"))
    manager = model_manager()
    manager.load()
    demo = configure_queue(build_app(manager.settings, manager), manager.settings)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                            **launch_options(manager.settings))
    return url.rstrip("/") + "/", demo


def open_tab(page: Any, url: str, tab: str) -> None:
    from playground.ui.tabs import all_tabs

    label = next(info.label for info in all_tabs() if info.key == tab)
    page.goto(url)
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT_MS)
    page.get_by_role("tab", name=label).click(timeout=WAIT_MS)
    page.locator(f"#tab-{tab}").wait_for(state="visible")
    page.wait_for_selector(f"#pg-example-note-{tab} >> text=cached result from", timeout=WAIT_MS)


def control_value(page: Any, control: Control) -> tuple[float, float, float, float]:
    """(value, step, minimum, maximum) of the control's input."""
    box = page.get_by_label(control.label, exact=True)
    values = box.evaluate("(el) => [el.value, el.step || '1', el.min || '-1e9', el.max || '1e9']")
    return tuple(float(value) for value in values)  # type: ignore[return-value]


def timed_key(page: Any, control: Control, check: str, press: Callable[[], None]) -> float:
    page.evaluate(WATCH_JS, [control.view, check, WAIT_MS])
    press()
    return float(page.evaluate("window.__sliderLatency"))


def move(page: Any, control: Control, upward: bool) -> float:
    """Press the control's key once (up or down) and return the milliseconds until its view shows the new value."""
    value, step, low, high = control_value(page, control)
    if upward and value + step > high + 1e-9 or not upward and value - step < low - 1e-9:
        upward = not upward
    new = value + step if upward else value - step
    box = page.get_by_label(control.label, exact=True)
    box.focus()
    return timed_key(page, control, control.check(new), lambda: box.press(control.up if upward else control.down))


def pick_head(page: Any, control: Control, head: int) -> float:
    """Pick `head` in the Head dropdown by keyboard (arrow keys through the list, Enter) and time from the Enter."""
    box = page.locator("#tab-attention").get_by_role("combobox", name="Head")
    box.focus()
    box.press("ArrowDown")  # opens the list, on its first entry ("mean over heads") or on the chosen head
    options = page.get_by_role("option")
    page.get_by_role("option", name=re.compile(rf"^head {head} ")).wait_for()
    for _ in range(options.count() + 1):
        # the keyboard's current option: the combobox's aria-activedescendant (gradio 6), else an `active` item
        active = box.evaluate("(el) => { const id = el.getAttribute('aria-activedescendant');"
                              " const item = (id && document.getElementById(id))"
                              " || document.querySelector('[role=listbox] li.active');"
                              " return item ? item.textContent : ''; }")
        if re.search(rf"head {head} ", active):
            break
        above = re.search(r"head (\d+) ", active)
        box.press("ArrowUp" if above and int(above.group(1)) > head else "ArrowDown")
    else:
        raise RuntimeError(f"the Head list never reached head {head} by keyboard (last: {active!r})")
    return timed_key(page, control, control.check(head), lambda: box.press("Enter"))


def measure(page: Any, control: Control, moves: int) -> list[float]:
    """The latencies of `moves` timed key presses (after one untimed warm-up move and the control's start moves)."""
    if control.name == "attention head":
        pick_head(page, control, 0)  # untimed, then alternate between heads 1 and 2
        times = []
        for index in range(moves):
            settle(page)
            times.append(pick_head(page, control, 1 + index % 2))
        return times
    for _ in range(control.start_moves + 1):  # untimed: onto a live value, caches filled
        move(page, control, upward=True)
        settle(page)
    times = []
    for index in range(moves):
        times.append(move(page, control, upward=index % 2 == 1))
        settle(page)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_all(moves: int, only: set[str] | None = None) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    from playground.ui import close_app

    url, demo = start_app()
    results: dict[str, list[float]] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)  # a shared, loaded machine: Playwright's 30 s is not enough
            opened = None
            for control in CONTROLS:
                if only and control.name not in only:
                    continue
                if control.tab != opened:
                    open_tab(page, url, control.tab)
                    opened = control.tab
                results[control.name] = times = measure(page, control, moves)
                print(f"{control.name}: " + " ".join(f"{t:.0f}" for t in times) + " ms", flush=True)
            browser.close()
    finally:
        close_app(demo)
    return results


def rows_from(results: dict[str, list[float]], when: str) -> list[dict[str, Any]]:
    rows = []
    for name, times in results.items():
        for label, fraction in (("p50", 0.5), ("p95", 0.95)):
            rows.append(row(f"slider latency, {name}, {label} (key -> painted view)", percentile(times, fraction),
                            TARGET_MS, "ms (baseline: the 250 ms target)", f"{when}; {len(times)} moves",
                            target="<= 1x"))
    return rows


def run(moves: int = 12) -> list[dict[str, Any]]:
    if shutil.which("chromium") is None:
        print("slider latency: not measured (Debian's chromium is not installed)")
        return []
    before = conditions()
    return rows_from(measure_all(moves), before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=12, help="timed key presses per control")
    parser.add_argument("--only", default="", help="comma-separated control names, e.g. temperature,attention layer")
    arguments = parser.parse_args()
    before = conditions()
    results = measure_all(arguments.moves, {name for name in arguments.only.split(",") if name} or None)
    print(f"\nSlider latency, key press -> painted view (target {TARGET_MS:.0f} ms)")
    print(f"  before: {before}\n  after:  {conditions()}")
    print(f"{'control':20} {'p50 ms':>8} {'p95 ms':>8} {'min':>6} {'max':>6}  n  all (ms)")
    for name, times in results.items():
        print(f"{name:20} {statistics.median(times):8.0f} {percentile(times, 0.95):8.0f} {min(times):6.0f} "
              f"{max(times):6.0f} {len(times):2}  {' '.join(f'{t:.0f}' for t in times)}")
    print()
    print_table(rows_from(results, before))


if __name__ == "__main__":
    main()

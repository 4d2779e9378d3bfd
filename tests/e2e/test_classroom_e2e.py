"""Two Chromium contexts on one shared server: the presenter starts a class, an attendee joins by the link,
follows a tab change and a slider move, explores on their own, snaps back, answers a poll that the presenter
reveals; the presenter reloads and ends the class. Saves workshop-presenter.png and workshop-attendee.png to
artifacts/ (or to PLAYGROUND_SCREENSHOTS: `make screenshots` retakes docs/screenshots/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import ARTIFACTS, PRESENTER_KEY, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WAIT = 120_000
TEMPERATURE = "number input for Temperature T (0 = greedy)"
# Counts the page's interval callbacks (gradio's Timer components are its only setInterval users).
COUNT_TICKS_JS = """(() => { window.pgTicks = 0; const every = window.setInterval;
  window.setInterval = (callback, ms, ...rest) => every(() => { window.pgTicks++; callback(); }, ms, ...rest); })()"""


@pytest.fixture
def open_app(browser):
    """Opens the app in a browser context of its own (a visitor's browser); every one is closed after the test,
    failed or not: a presenter's page left open keeps pushing its view into the next test's class."""
    contexts = []

    def open_page(url):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        context.add_init_script(COUNT_TICKS_JS)
        page = context.new_page()
        page.console_errors = []  # type: ignore[attr-defined]
        page.on("console",
                lambda message: page.console_errors.append(message.text) if message.type == "error" else None)
        page.goto(url)
        page.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT)
        page.get_by_text("Presenter & classroom").click()
        return page

    yield open_page
    for context in contexts:
        context.close()


def ticks_during(page, milliseconds: int = 3_500) -> int:
    """How many timer ticks the page runs in `milliseconds` (the class timers: report 0.5 s, follow 0.25 s, card 3 s)."""
    return page.evaluate("(ms) => new Promise((done) => { const start = window.pgTicks; "
                         "setTimeout(() => done(window.pgTicks - start), ms); })", milliseconds)


def ticks_arrive(page, count: int = 5, within_ms: int = 30_000) -> bool:
    """Whether the page runs `count` timer ticks within `within_ms`. A busy machine (CI runs two test workers)
    can starve the browser for seconds, so a fixed window undercounts; waiting for the ticks does not."""
    return page.evaluate("([count, ms]) => new Promise((done) => { const start = window.pgTicks; "
                         "const poll = window.setTimeout; const stop = Date.now() + ms; "
                         "const check = () => window.pgTicks - start >= count ? done(true) "
                         ": Date.now() > stop ? done(false) : poll(check, 100); check(); })", [count, within_ms])


def goes_quiet(page, within_ms: int = 30_000) -> bool:
    """Whether the page's timers stop within `within_ms`: a 3.5 s window without a tick."""
    for _ in range(max(1, within_ms // 3_500)):
        if ticks_during(page) == 0:
            return True
    return False


def selected_tab(page) -> str:
    return page.locator("[role=tab][aria-selected=true]").first.inner_text()


def test_an_attendee_follows_the_presenter_then_explores_then_snaps_back(open_app, classroom_app):
    url, _ = classroom_app
    presenter = open_app(url)
    presenter.locator("#pg-key input").fill(PRESENTER_KEY)
    presenter.get_by_role("button", name="I am the presenter").click()
    presenter.locator("#pg-role").get_by_text("You are the presenter").wait_for(timeout=WAIT)
    visitor = open_app(url)
    # outside a class no page runs a class timer (each tick costs the browser a pass over every component)
    assert ticks_during(presenter) == 0 and ticks_during(visitor) == 0
    presenter.locator("#pg-class-title input, #pg-class-title textarea").first.fill("Workshop")
    presenter.get_by_role("button", name="Start class").click()
    code = presenter.locator(".pg-class-code").inner_text(timeout=WAIT).strip()
    assert len(code) == 6 and PRESENTER_KEY not in presenter.url

    attendee = open_app(f"{url}?class={code}")
    attendee.locator("#pg-class-card").get_by_text("You are in").wait_for(timeout=WAIT)
    assert not attendee.get_by_role("button", name="Start class").is_visible()  # the presenter's controls only
    assert ticks_arrive(attendee) and ticks_arrive(presenter)  # in the class: following, reporting
    # after the card timer's first tick (3 s) too: the page joined as its visitor, not as a session its claim
    # of the visitor token left behind (a page-load race that stopped a joined page's timers)
    attendee.wait_for_timeout(3_500)
    assert ticks_arrive(attendee) and "You are in" in attendee.locator("#pg-class-card").inner_text()
    assert ticks_during(visitor) == 0  # a page that has not joined stays quiet

    # the presenter opens Sampling and moves the temperature: the attendee's page follows both
    presenter.get_by_role("tab", name="Sampling").click()
    presenter.get_by_label(TEMPERATURE).fill("1.3")
    presenter.get_by_label(TEMPERATURE).press("Enter")
    attendee.wait_for_function("document.querySelector('[role=tab][aria-selected=true]').innerText.includes('Sampling')",
                               timeout=WAIT)
    attendee.wait_for_function(
        f"document.querySelector('input[aria-label=\"{TEMPERATURE}\"]').value === '1.3'", timeout=WAIT)
    presenter.locator("#pg-class-card").get_by_text("1 joined").wait_for(timeout=WAIT)

    # the attendee explores on their own: the presenter's next tab does not move them
    attendee.locator("#pg-follow input").uncheck()
    presenter.get_by_role("tab", name="Attention").click()
    presenter.wait_for_timeout(5_000)
    assert "Sampling" in selected_tab(attendee)

    # one click snaps back to the presenter's view
    attendee.get_by_role("button", name="Snap back to the presenter").click()
    attendee.wait_for_function(
        "document.querySelector('[role=tab][aria-selected=true]').innerText.includes('Attention')", timeout=WAIT)
    # a poll: the attendee guesses, the presenter reveals the model's answer beside the room's
    presenter.get_by_role("button", name="Put to the room").click()
    # the attendee answers once the question reaches their page (its chart shows); before that, Send says
    # "No poll is open" (the presenter's forward pass can take seconds on a busy machine)
    attendee.locator("#pg-poll-plot").wait_for(state="visible", timeout=WAIT)
    attendee.locator("#pg-answer textarea, #pg-answer input").first.fill("Paris")
    attendee.get_by_role("button", name="Send", exact=True).click()
    attendee.locator("#pg-poll-note").get_by_text("is in").wait_for(timeout=WAIT)
    attendee.wait_for_timeout(4_000)  # the card timer (3 s) re-reads the poll: the confirmation stays
    assert "is in" in attendee.locator("#pg-poll-note").inner_text()
    presenter.get_by_role("button", name="Close & reveal").click()
    presenter.locator("#pg-poll-note").get_by_text("The model's top token").wait_for(timeout=WAIT)
    attendee.locator("#pg-poll-note").get_by_text("The model's top token").wait_for(timeout=WAIT)
    assert "Paris" in presenter.locator("#pg-poll-plot").inner_text()

    folder = Path(os.environ.get("PLAYGROUND_SCREENSHOTS") or ARTIFACTS)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    presenter.locator("#pg-classroom").screenshot(path=str(folder / "workshop-presenter.png"))
    attendee.locator("#pg-classroom").screenshot(path=str(folder / "workshop-attendee.png"))
    # the presenter reloads mid-class: the role and its controls come back without the key
    presenter.reload()
    presenter.wait_for_selector("#pg-status >> text=MB in memory", timeout=WAIT)
    presenter.get_by_text("Presenter & classroom").click()
    presenter.locator("#pg-role").get_by_text("You are the presenter").wait_for(timeout=WAIT)
    presenter.get_by_role("button", name="End class").click()
    presenter.locator("#pg-class-card").get_by_text("No class running").wait_for(timeout=WAIT)
    # the attendee's card timer (3 s) learns that the class ended, then every class timer stops
    assert goes_quiet(presenter) and goes_quiet(attendee)
    assert presenter.console_errors == [] and attendee.console_errors == [] and visitor.console_errors == []

"""The classroom panel's handlers on a page of their own, called as gradio calls them for a page (its request in
the context variable).

A page's first events run side by side: its claim of the browser's visitor token (build_app's first load event)
may come after the other page-load handlers, or after a quick click. What those do for the visitor must land on
the visitor's session, or a class joined from a link is lost at the next card tick (the page's timers stop) and a
presenter's role is gone after a reload.

Every page in a class re-reads the card and the poll every CARD_SECONDS: a tick sends only what changed since
the page's last tick drew it."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import gradio as gr
from gradio.context import LocalContext

from playground.config import Settings
from playground.runtime import ModelManager
from playground.ui.classroom_panel import ClassroomHandlers, create_classroom_panel, wire_classroom
from playground.ui.context import AppContext

KEY = "page-identity-key"


@contextlib.contextmanager
def as_page(session_hash: str):
    """Handlers called as gradio calls them for the page `session_hash` (its request in the context variable)."""
    token = LocalContext.request.set(SimpleNamespace(session_hash=session_hash, client=None))
    try:
        yield
    finally:
        LocalContext.request.reset(token)


def classroom_page(tmp_path):
    """The classroom panel on a page of its own: its context, its page-load handler and its card timer's tick."""
    settings = Settings(cache_dir=tmp_path, preload=False, presenter_key=KEY)
    with gr.Blocks() as demo:
        ctx = AppContext(settings, ModelManager(settings), visitor=gr.BrowserState(""))
        panel = create_classroom_panel(ctx)
        with gr.Tabs() as tabs, gr.Tab("A tab"):
            gr.Markdown("a tab")
        wire_classroom(demo, panel, ctx, tabs, [])
    (load,) = [fn for fn in demo.fns.values() if any(event == "load" for _, event in fn.targets)]
    (card_tick,) = [fn for fn in demo.fns.values() if (panel.card_timer._id, "tick") in fn.targets]
    return ctx, load, card_tick


def test_a_class_joined_from_a_link_before_the_pages_claim_is_the_visitors(tmp_path):
    ctx, load, card_tick = classroom_page(tmp_path)
    assert load.inputs[0] is ctx.visitor  # the page sends its visitor token with the class code
    with as_page("presenter-page"):
        ctx.sessions.log_in("presenter-page", KEY)
        room = ctx.classroom.start("Workshop", "presenter-page")
    with as_page("page-1"):
        token = ctx.claim_page("")  # the attendee's browser was here before (a reload follows)
    with as_page("page-2"):
        *_, report, follow, card = load.fn(token, room.code)  # the page-load handler runs before the claim ...
        assert ctx.claim_page(token) == token  # ... which comes after it
        assert room.is_member(ctx.sessions.get("page-2").id)
        assert (report.active, follow.active, card.active) == (False, True, True)  # the page follows the class
        *_, report, follow, card, _ = card_tick.fn({})  # and its card timer's next tick keeps it so
        assert (report.active, follow.active, card.active) == (False, True, True)


def test_a_card_tick_sends_only_what_changed_since_the_pages_last_tick(tmp_path):
    from playground.ui.classroom_panel import ClassroomHandlers

    ctx, load, card_tick = classroom_page(tmp_path)
    with as_page("presenter-page"):
        ctx.sessions.log_in("presenter-page", KEY)
        room = ctx.classroom.start("Workshop", "presenter-page")
        room.open_poll("top_p_keeps", "Is ' the' kept?", truth={"answer": "yes", "token": " the", "prob": 0.2,
                                                                "rank": 2, "mass_before": 0.5})
    with as_page("another-page"):
        room.join(room.code, ctx.sessions.get("another-page").id)
    with as_page("attendee-page"):
        load.fn(ctx.claim_page(""), room.code)
        first = card_tick.fn({})  # a page's first tick (after a load or a reload) draws every part
        card, plot, payload, note, *timers, drawn = first
        assert isinstance(card, str) and plot.visible and payload["answers"] == 0 and note == ""
        assert [timer.active for timer in timers] == [False, True, True]
        # the same chart as every other reader of the poll draws (the Send and reveal answers, the API)
        assert plot.value == ClassroomHandlers(ctx, []).poll_view()[0].value
        again = card_tick.fn(drawn)
        assert all(isinstance(part, dict) and part.get("__type__") == "update" and len(part) == 1
                   for part in again[:-1]), again  # nothing changed: gr.skip() for every output
        assert again[-1] == drawn
    with as_page("another-page"):  # another member answers
        room.answer(ctx.sessions.get("another-page").id, "visitor-b", "yes")
    with as_page("attendee-page"):
        card, plot, payload, note, *timers, drawn_now = card_tick.fn(drawn)
        assert payload["answers"] == 1 and plot.visible  # the poll changed: its chart and numbers again ...
        assert card == gr.skip() and all(timer == gr.skip() for timer in timers)  # ... the rest did not
        assert drawn_now["poll"] != drawn["poll"] and drawn_now["card"] == drawn["card"]
        room.close_poll()
        room.reveal()
        _, plot, payload, note, *_ = card_tick.fn(drawn_now)
        assert payload["revealed"] and "The model says **yes**" in note
    ctx.classroom.end()
    with as_page("attendee-page"):
        card, *_, report, follow, card_timer, _ = card_tick.fn(drawn_now)
        assert "No class" in card and not (report.active or follow.active or card_timer.active)  # timers off


def test_a_presenter_who_reloads_the_page_gets_the_class_and_poll_controls_back(tmp_path):
    """The role survives a reload (the visitor token), and so must the controls that go with it: a presenter in
    front of a room who reloads must not have to enter the key again to end the class or put a poll."""
    ctx, load, _ = classroom_page(tmp_path)
    (class_admin,) = [block for block in load.outputs if getattr(block, "elem_id", None) == "pg-class-admin"]
    (poll_admin,) = [block for block in load.outputs if getattr(block, "elem_id", None) == "pg-poll-admin"]
    rows = [load.outputs.index(class_admin), load.outputs.index(poll_admin)]

    def controls_shown(page: str, token: str) -> list[bool]:
        with as_page(page):
            outputs = load.fn(token, "")
        return [outputs[index].visible for index in rows]

    with as_page("page-1"):
        token = ctx.claim_page("")
        ctx.sessions.log_in("page-1", KEY)
    assert controls_shown("page-2", token) == [True, True]  # the presenter's reload
    with as_page("page-3"):
        visitor = ctx.claim_page("")
    assert controls_shown("page-4", visitor) == [False, False]  # a visitor's


def test_a_reloaded_page_shows_whether_its_member_follows_and_joining_again_follows(tmp_path):
    """The server keeps whether a member follows the presenter; a reload must show that, not the box's default
    (a ticked box on a page the server treats as exploring never follows), and joining from the link again follows."""
    ctx, load, _ = classroom_page(tmp_path)
    (follow_box,) = [block for block in load.outputs if getattr(block, "elem_id", None) == "pg-follow"]
    follow_at = load.outputs.index(follow_box)
    with as_page("presenter-page"):
        ctx.sessions.log_in("presenter-page", KEY)
        room = ctx.classroom.start("Workshop", "presenter-page")
    with as_page("page-1"):
        token = ctx.claim_page("")
        load.fn(token, room.code)
        ClassroomHandlers(ctx, []).set_follow(False)  # the member unticks Follow, then reloads
        member = ctx.sessions.get("page-1").id
    with as_page("page-2"):
        assert load.fn(token, "")[follow_at] is False and not room.is_following(member)
    with as_page("page-3"):  # opens the class link again
        assert load.fn(token, room.code)[follow_at] is True and room.is_following(member)

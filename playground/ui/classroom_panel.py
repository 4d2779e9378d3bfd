"""The presenter and the classroom, above the tabs: the presenter key, a class the room joins, following
the presenter's view, and polls (api: presenter_login, start_class, end_class, join_class, open_poll,
answer_poll, reveal_poll, poll_results, export_poll).

Handlers are methods of `ClassroomHandlers` (plain functions over the AppContext, callable from tests);
`create_classroom_panel` builds the components and `wire_classroom` connects them once the tabs exist
(following needs every tab's linkable inputs).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import html
import inspect
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gradio as gr
import segno
from gradio.context import LocalContext

from playground import polls
from playground.classroom import POLL_KINDS, Answer, ClassError, Classroom
from playground.figures.classroom import next_token_poll_figure, yes_no_poll_figure
from playground.figures.style import empty_figure
from playground.sampling import compute_prompt_logits
from playground.ui.access import current_session, current_session_id, require_presenter, visitor_id
from playground.ui.context import AppContext
from playground.ui.deeplinks import build_query, resolve_query
from playground.ui.errors import user_errors
from playground.ui.export import rows_to_csv, write_export
from playground.ui.viewtools import PRESS_RUN_JS, TabLinks, link_updates

# A follower's page asks for the presenter's view in a long poll of up to FOLLOW_WAIT_SECONDS, which a push
# answers at once. Its timer ticks every FOLLOW_SECONDS and drops a tick while an ask is under way, so the next
# ask follows an answer within FOLLOW_SECONDS: a push in that gap waits for it. The ask rate stays one per
# wait (a page outside a class, or not following, waits as well instead of answering at once).
FOLLOW_SECONDS = 0.25
FOLLOW_WAIT_SECONDS = 1.2
REPORT_SECONDS = 0.5  # how often the presenter's page reports its tab and inputs (one page: cheap)
CARD_SECONDS = 3.0  # how often a page re-reads the class card and the poll
POLL_KIND_CHOICES = [(label, kind) for kind, label in POLL_KINDS.items()]


def join_url(code: str) -> str:
    """The join link for the room, built from the address this page was opened at (proxies included)."""
    request = LocalContext.request.get(None)
    headers = getattr(request, "headers", None) or {}
    host = headers.get("x-forwarded-host") or headers.get("host") or "127.0.0.1:7860"
    scheme = headers.get("x-forwarded-proto") or "http"
    return f"{scheme}://{host}/?{urllib.parse.urlencode({'class': code})}"


def class_card(room: Classroom | None, presenter: bool, member: bool) -> str:
    """The class line: code, join link and QR for the presenter; the class name for an attendee."""
    if room is None:
        return ('<div class="pg-class">No class running.' +
                (" Start one to get a join link for the room." if presenter else "") + "</div>")
    if presenter:
        url = join_url(room.code)
        qr = segno.make(url, error="m").svg_data_uri(scale=5, border=2)
        return (f'<div class="pg-class pg-class-presenter"><img class="pg-class-qr" src="{qr}" '
                f'alt="QR code of the join link"><div><b>{html.escape(room.title)}</b> · code '
                f'<span class="pg-class-code">{html.escape(room.code)}</span><br>Join: '
                f'<a href="{html.escape(url)}">{html.escape(url)}</a><br>'
                f'{room.connected()} connected · {len(room.members)} joined</div></div>')
    if member:
        return (f'<div class="pg-class">You are in <b>{html.escape(room.title)}</b> '
                f'({room.connected()} connected).</div>')
    return '<div class="pg-class">A class is running: enter its code to join.</div>'


def role_text(ctx: AppContext) -> str:
    if ctx.sessions.is_presenter(current_session_id()):
        return "**You are the presenter**: you may load models for everyone, publish adapters and run the class."
    if ctx.sessions.gate.has_key:
        return "You are a visitor. The presenter enters the presenter key here."
    return ("You are a visitor. This server has no presenter key (the operator sets one with --presenter-key).")


@dataclass
class ClassroomPanel:
    role: Any
    key: Any
    login: Any
    class_admin: Any  # rows only the presenter sees
    poll_admin: Any
    title: Any
    start: Any
    end: Any
    card: Any
    code: Any
    join: Any
    follow: Any
    snap: Any
    seen_version: Any
    current_tab: Any
    poll_kind: Any
    poll_prompt: Any
    poll_token: Any
    poll_parameter: Any
    open_poll: Any
    reveal: Any
    export: Any
    export_file: Any
    answer: Any
    send: Any
    poll_note: Any
    poll_plot: Any
    poll_json: Any
    presenter_timer: Any
    follow_timer: Any
    card_timer: Any
    run_target: Any
    card_drawn: Any  # gr.State: a digest of each part the card timer last drew on this page (card_tick)


class ClassroomHandlers:
    """Every classroom action, as plain methods over the app context (the panel wires them)."""

    def __init__(self, ctx: AppContext, links: Sequence[TabLinks]) -> None:
        self.ctx = ctx
        self.links = list(links)
        self.fields = {tab.key: tab.fields for tab in links}
        self._poll_probs: dict[tuple[str, int], tuple[Any, Any]] = {}

    # -- roles ---------------------------------------------------------------------------------
    def presenter_login(self, key: str) -> tuple[str, str]:
        """Enter the presenter key; the key box is cleared whatever happens."""
        self.ctx.sessions.log_in(current_session_id(), key or "")
        return role_text(self.ctx), ""

    # -- the class ------------------------------------------------------------------------------
    def start_class(self, title: str) -> str:
        require_presenter(self.ctx.sessions, "start a class")
        room = self.ctx.classroom.start(title or "Class", visitor_id(self.ctx.sessions))
        return class_card(room, True, False)

    def end_class(self) -> str:
        require_presenter(self.ctx.sessions, "end the class")
        self.ctx.classroom.end()
        return class_card(None, True, False)

    def join_class(self, code: str) -> tuple[str, bool]:
        room = self.ctx.classroom.require()
        room.join(code or "", visitor_id(self.ctx.sessions))
        return class_card(room, False, True), True

    def class_state(self) -> dict[str, Any]:
        room = self.ctx.classroom.current
        session = visitor_id(self.ctx.sessions)
        presenter = self.ctx.sessions.is_presenter(session)
        state: dict[str, Any] = {"running": room is not None, "presenter": presenter}
        if room is not None:
            state.update(title=room.title, member=room.is_member(session), connected=room.connected(),
                         joined=len(room.members), view=room.view.__dict__ if room.view else None)
            if presenter:
                state["code"] = room.code
                state["results"] = {"computed": room.results.computed, "shared": room.results.shared}
                state["waiting"] = room.waiting  # followers' long polls waiting for the next view
        return state

    # -- following ----------------------------------------------------------------------------
    def push_view(self, tab: str, *values: Any) -> None:
        """The presenter's page reports its tab and inputs; a change becomes the room's view."""
        room = self.ctx.classroom.current
        if room is None or not self.ctx.sessions.is_presenter(current_session_id()) or tab not in self.fields:
            return
        tab_values = self._values_of(tab, values)
        query = build_query(tab, self.fields[tab], tab_values)
        if room.view is None or (room.view.tab, room.view.query) != (tab, query):
            room.push_view(tab, query)

    def show_view(self, query: str) -> dict[str, Any]:
        """The presenter (or a script of theirs) shows a deep-link query to the room, e.g. '?tab=sampling&top_p=0.5'."""
        require_presenter(self.ctx.sessions, "show a view to the room")
        room = self.ctx.classroom.require()
        link = resolve_query(query or "", self.fields)
        if link.tab is None or link.problems:
            raise ClassError("Not a view of a tab: " + ("; ".join(link.problems) or "the query has no ?tab="))
        return room.push_view(link.tab, build_query(link.tab, self.fields[link.tab],
                                                    [link.values.get(f.name) for f in self.fields[link.tab]])).__dict__

    async def class_view(self, after_version: int = -1) -> dict[str, Any] | None:
        """The room's current view (tab, deep-link query, version) for a member: what a follower's page applies.
        With `after_version` (the version the caller already has), wait up to FOLLOW_WAIT_SECONDS for a newer
        one, as the page does."""
        room = self.ctx.classroom.require()
        session = visitor_id(self.ctx.sessions)
        if not room.is_member(session) and not self.ctx.sessions.is_presenter(session):
            raise ClassError("Join the class first (its code is on the presenter's screen).")
        room.seen(session)
        if after_version >= 0:
            await room.next_view(after_version, FOLLOW_WAIT_SECONDS)
        return room.view.__dict__ if room.view else None

    def _values_of(self, tab: str, values: Sequence[Any]) -> list[Any]:
        start = 0
        for links in self.links:
            if links.key == tab:
                return list(values[start:start + len(links.fields)])
            start += len(links.fields)
        return []

    async def follow_tick(self, follow: bool, seen_version: int) -> list[Any]:
        """A follower's page: the presenter's new view (tab, inputs, then its run button) as soon as it is
        pushed (waiting up to FOLLOW_WAIT_SECONDS), else nothing."""
        room = self.ctx.classroom.current
        session = visitor_id(self.ctx.sessions)
        unchanged = [seen_version, gr.skip(), "", *[gr.skip()] * sum(len(tab.fields) for tab in self.links)]
        if room is None or not room.is_member(session):
            # every page's timer ticks every FOLLOW_SECONDS: answering at once would make each page outside a
            # class ask several times a second
            await asyncio.sleep(FOLLOW_WAIT_SECONDS)
            return unchanged
        room.seen(session)
        # a member who unticked Follow waits as well (next_view knows it from set_follow) until Follow is ticked again
        view = await room.next_view(seen_version, FOLLOW_WAIT_SECONDS, session)
        if view is None or not follow:
            return unchanged
        link = resolve_query(view.query, self.fields)
        run_target = next((tab.run_elem_id or "" for tab in self.links if tab.key == link.tab), "")
        return [view.version, gr.Tabs(selected=link.tab), run_target, *link_updates(link, self.links)]

    def set_follow(self, follow: bool) -> None:
        """The page's Follow box changed: a long poll already waiting must not apply the next view."""
        room = self.ctx.classroom.current
        if room is not None:
            room.follow(visitor_id(self.ctx.sessions), bool(follow))

    # -- polls ----------------------------------------------------------------------------------
    def open_poll(self, kind: str, prompt: str, token: str, parameter: float) -> tuple[Any, dict[str, Any], str]:
        require_presenter(self.ctx.sessions, "put a poll to the room")
        room = self.ctx.classroom.require()
        if not (prompt or "").strip():
            raise ClassError("Give the poll a prompt: the text the model continues.")
        loaded = self.ctx.model()
        logits = compute_prompt_logits(loaded.model, loaded.tokenizer, prompt, False, loaded.lock).logits
        if kind == "next_token":
            probs = polls.probabilities(logits)
            truth = {"top": [t.as_dict() for t in polls.top_tokens(probs, loaded.tokenizer, 10)]}
            question = f"What token comes next after “{prompt.strip()[-60:]}”?"
        elif kind == "top_p_keeps":
            truth = polls.top_p_truth(logits, loaded.tokenizer, token, float(parameter))
            question = f"With top-p = {float(parameter):g}, is “{token}” kept after “{prompt.strip()[-60:]}”?"
        else:
            truth = polls.draft_truth(logits, loaded.tokenizer, token, float(parameter))
            question = (f"A draft proposes “{token}” (its probability q = {float(parameter):g}) after "
                        f"“{prompt.strip()[-60:]}”. Does the target accept it?")
        truth["model"] = loaded.spec.key
        poll = room.open_poll(kind, question, prompt, truth)
        # the page re-reads the poll every few seconds: keep its distribution, not one forward per read
        self._poll_probs = {(room.code, poll.id): (polls.probabilities(logits), loaded.tokenizer)}
        return self.poll_view()

    def answer_poll(self, text: str) -> str:
        room = self.ctx.classroom.require()
        session = current_session(self.ctx.sessions)
        if not room.is_member(session.id) and not self.ctx.sessions.is_presenter(session.id):
            raise ClassError("Join the class first (its code is on the presenter's screen).")
        return answer_note(room.answer(session.id, session.label, text or ""))

    def reveal_poll(self) -> tuple[Any, dict[str, Any], str]:
        require_presenter(self.ctx.sessions, "reveal the model's answer")
        self.ctx.classroom.require().reveal()
        return self.poll_view()

    def poll_results(self) -> dict[str, Any]:
        """The current poll's raw numbers (the API's view), with the line of text as `note`."""
        _, payload, note = self.poll_parts()
        return {**payload, "note": note}

    def poll_view(self) -> tuple[Any, dict[str, Any], str]:
        """The current poll: its chart, raw numbers and a line of text (the model's answer once revealed)."""
        draw, payload, note = self.poll_parts()
        return draw(), payload, note

    def poll_parts(self) -> tuple[Callable[[], Any], dict[str, Any], str]:
        """The current poll as (a function that draws its chart, raw numbers, a line of text). The numbers and
        the text decide the chart, so a page that has them needs no new chart (card_tick)."""
        room = self.ctx.classroom.current
        poll = room.poll if room else None
        if poll is None:
            return lambda: gr.Plot(empty_figure("No poll yet.", "Poll"), visible=False), {"poll": None}, ""
        tally = room.tally(poll)
        shown_truth = poll.truth if poll.revealed else None
        payload: dict[str, Any] = {"poll": poll.id, "kind": poll.kind, "question": poll.question,
                                   "open": poll.open, "revealed": poll.revealed, "answers": len(poll.answers),
                                   "tally": [{"answer": a, "count": c} for a, c in tally]}
        if poll.kind == "next_token":
            probs, tokenizer = self._poll_probs[(room.code, poll.id)]
            rows = polls.score_guesses(probs, tokenizer, tally)
            if poll.revealed:
                payload.update(guesses=rows, model_top=poll.truth["top"], room_rank=polls.room_rank(rows))
            else:
                payload["guesses"] = [{k: row[k] for k in ("guess", "count", "share")} for row in rows]
            figure = functools.partial(next_token_poll_figure, rows, poll.truth["top"], poll.revealed, poll.question)
            note = (f"The model's top token: “{poll.truth['top'][0]['text']}” "
                    f"(p = {poll.truth['top'][0]['prob']:.1%}); the room's favourite ranks "
                    f"{polls.room_rank(rows) or '–'} for the model." if poll.revealed and rows else "")
        else:
            figure = functools.partial(yes_no_poll_figure, tally, shown_truth, poll.question)
            if shown_truth:
                payload["truth"] = shown_truth
            note = (f"The model says **{shown_truth['answer']}**: p(“{shown_truth['token']}”) = "
                    f"{shown_truth['prob']:.2%}, rank {shown_truth['rank']}" +
                    (f", acceptance min(1, p/q) = {shown_truth['acceptance']:.1%}." if "acceptance" in shown_truth
                     else f"; the tokens ranked above it hold {shown_truth['mass_before']:.1%}.")
                    if shown_truth else "")
        own = poll.answers.get(visitor_id(self.ctx.sessions))
        if own is not None and not poll.revealed:
            note = answer_note(own)  # a member's page re-reads this every few seconds: keep their confirmation
        return lambda: gr.Plot(figure(), visible=True), payload, note

    def card_html(self) -> str:
        """The class card as the calling page sees it (presenter, member or visitor)."""
        room = self.ctx.classroom.current
        session = visitor_id(self.ctx.sessions)
        return class_card(room, self.ctx.sessions.is_presenter(session), bool(room and room.is_member(session)))

    def refresh(self) -> tuple[str, Any, dict[str, Any], str]:
        """What a page shows of the class: the class card and the current poll."""
        return (self.card_html(), *self.poll_view())

    def timers(self) -> tuple[Any, Any, Any]:
        """The page's three class timers (report, follow, card), each running only where it has work: the
        presenter's page reports its view while its class runs, a member's page follows, both re-read the card.
        Outside a class none runs: every tick costs the browser a pass over the app's hundreds of components
        (an idle page with them on kept a CPU core busy, 2026-12-02) and the server a request."""
        room = self.ctx.classroom.current
        session = visitor_id(self.ctx.sessions)
        presenting = room is not None and self.ctx.sessions.is_presenter(session)
        member = room is not None and room.is_member(session)
        return gr.Timer(active=presenting), gr.Timer(active=member), gr.Timer(active=presenting or member)

    def card_tick(self, drawn: dict[str, str] | None = None) -> tuple[Any, ...]:
        """The card timer's tick: the card, the poll and the timers (a class that ended turns them off), each
        only where it changed since this page's last tick drew it (`drawn`: a digest per part, kept in the page's
        state and returned last). Every page in a class ticks every CARD_SECONDS: a poll chart sent again
        unchanged cost the server 15-18 ms per page (the figure and its JSON, yes/no and next-token polls,
        2026-12-03; 0.25-0.3 s of CPU a second for a room of 50) and each page a chart redraw; 0.35 ms now."""
        draw, payload, note = self.poll_parts()
        timers = self.timers()
        parts = {"card": self.card_html(), "poll": (payload, note), "timers": tuple(t.active for t in timers)}
        fresh = {name: _digest(value) for name, value in parts.items()}
        changed = {name for name, value in fresh.items() if (drawn or {}).get(name) != value}
        card = parts["card"] if "card" in changed else gr.skip()
        poll = (draw(), payload, note) if "poll" in changed else (gr.skip(),) * 3
        return (card, *poll, *(timers if "timers" in changed else (gr.skip(),) * 3), fresh)

    def export_poll(self) -> str:
        require_presenter(self.ctx.sessions, "export the class's answers")
        header, rows = self.ctx.classroom.require().export_rows()
        return write_export(rows_to_csv(header, rows), "classroom-answers", "csv")


def answer_note(answer: Answer) -> str:
    """What a member sees under the poll once their answer counts."""
    return f"Your answer “{html.escape(answer.text)}” is in. You can change it until the poll closes."


def create_classroom_panel(ctx: AppContext) -> ClassroomPanel:
    with gr.Accordion("Presenter & classroom", open=False, elem_id="pg-classroom"):
        with gr.Row(equal_height=True):
            role = gr.Markdown(elem_id="pg-role")
            key = gr.Textbox(label="Presenter key", type="password", scale=1, min_width=200, elem_id="pg-key")
            login = gr.Button("I am the presenter", scale=0, min_width=160)
        with gr.Row(equal_height=True):
            card = gr.HTML(class_card(None, False, False), elem_id="pg-class-card")
        # the presenter's controls: shown to the presenter only (the server checks the role on every call anyway)
        with gr.Row(equal_height=True, visible=False, elem_id="pg-class-admin") as class_admin:
            title = gr.Textbox(label="Class name (shown to the room)", scale=2, elem_id="pg-class-title")
            start = gr.Button("Start class", scale=0, min_width=120)
            end = gr.Button("End class", scale=0, min_width=120, variant="stop")
        with gr.Row(equal_height=True, visible=False, elem_id="pg-poll-admin") as poll_admin:
            poll_kind = gr.Dropdown(POLL_KIND_CHOICES, value="next_token", label="Poll", scale=1)
            poll_prompt = gr.Textbox("The capital of France is", label="Prompt the model continues", scale=2)
            poll_token = gr.Textbox(" Paris", label="Token (top-p / draft polls)", scale=1)
            poll_parameter = gr.Number(0.9, label="top-p, or the draft's q", minimum=0.0, maximum=1.0, scale=0,
                                       min_width=140)
            open_poll = gr.Button("Put to the room", scale=0, min_width=140)
            reveal = gr.Button("Close & reveal", scale=0, min_width=140)
            export = gr.Button("Export answers (CSV)", scale=0, min_width=160)
        with gr.Row(equal_height=True):
            code = gr.Textbox(label="Class code", scale=1, min_width=120, elem_id="pg-class-code-input")
            join = gr.Button("Join", scale=0, min_width=90, elem_id="pg-join")
            follow = gr.Checkbox(True, label="Follow the presenter", scale=0, min_width=200, elem_id="pg-follow")
            snap = gr.Button("Snap back to the presenter", scale=0, min_width=200, elem_id="pg-snap")
        with gr.Row(equal_height=True):
            answer = gr.Textbox(label="Your answer (a token, or yes / no)", max_length=64, scale=2,
                                elem_id="pg-answer")
            send = gr.Button("Send", scale=0, min_width=90, elem_id="pg-send")
            poll_note = gr.Markdown(elem_id="pg-poll-note")
        poll_plot = gr.Plot(label="The room and the model", elem_id="pg-poll-plot", visible=False)
        with gr.Accordion("Poll as JSON", open=False):
            poll_json = gr.JSON(label="poll_results")
        export_file = gr.File(label="Answers (CSV)", visible=False, height=80)
    return ClassroomPanel(role, key, login, class_admin, poll_admin, title, start, end, card, code, join, follow, snap,
                          gr.State(0), gr.State(""), poll_kind, poll_prompt, poll_token, poll_parameter, open_poll,
                          reveal, export, export_file, answer, send, poll_note, poll_plot, poll_json,
                          gr.Timer(REPORT_SECONDS, active=False), gr.Timer(FOLLOW_SECONDS, active=False),
                          gr.Timer(CARD_SECONDS, active=False), gr.Textbox(visible=False), gr.State({}))


def _digest(value: Any) -> str:
    """A short key for a value, from its repr: equal values (numbers, text, lists, dicts), equal keys.

    >>> _digest({"poll": 1, "answers": 3}) == _digest({"poll": 1, "answers": 3}) != _digest({"poll": 1, "answers": 4})
    True
    """
    return hashlib.sha256(repr(value).encode("utf-8", "surrogatepass")).hexdigest()


def _request_digest(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """The inputs of a request as a short key (progress trackers and requests are per call: left out)."""
    return _digest([a for a in (*args, *kwargs.values()) if not isinstance(a, (gr.Progress, gr.Request))])


def shared_in_class(ctx: AppContext, tab: str, handler: Any) -> Any:
    """While a class runs, a tab's main action with the same inputs on the same model is computed once and
    its result shared (followers press the same button as the presenter). Outside a class: unchanged."""
    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        room = ctx.classroom.current
        if room is None:
            return handler(*args, **kwargs)
        try:
            model = id(ctx.model())
        except Exception:  # noqa: BLE001 - no model yet: the handler itself says so
            return handler(*args, **kwargs)
        key = (tab, model, _request_digest(args, kwargs))
        return room.results.get_or_compute(key, lambda: handler(*args, **kwargs))

    return wrapper


def share_main_actions(demo: gr.Blocks, ctx: AppContext, links: Sequence[TabLinks]) -> list[str]:
    """Wrap every tab's main button (the one a deep link presses) with `shared_in_class`; returns the tabs
    whose action was wrapped (a streaming action is left alone: it yields as it goes)."""
    wrapped = []
    for tab in links:
        if tab.run_button is None:
            continue
        for block_fn in demo.fns.values():
            triggered = any(target[0] == tab.run_button._id for target in block_fn.targets)
            if triggered and block_fn.fn is not None and not inspect.isgeneratorfunction(block_fn.fn):
                block_fn.fn = shared_in_class(ctx, tab.key, block_fn.fn)
                wrapped.append(tab.key)
    return wrapped


# The page-load handler's inputs (the visitor token, the class code) with the code read from the address.
READ_CLASS_JS = "(visitor, code) => [visitor, new URLSearchParams(window.location.search).get('class') || '']"


def wire_classroom(demo: gr.Blocks, panel: ClassroomPanel, ctx: AppContext, tabs: Any,
                   links: Sequence[TabLinks]) -> ClassroomHandlers:
    handlers = ClassroomHandlers(ctx, links)
    share_main_actions(demo, ctx, links)
    if links:
        panel.current_tab.value = links[0].key  # the page opens on the first tab; a click reports the next
    link_components = [component for tab in links for component in tab.components]
    poll_outputs = [panel.poll_plot, panel.poll_json, panel.poll_note]
    # Class bookkeeping touches no model: it skips the queue, so a room's check-ins never wait behind model jobs.
    private = {"api_visibility": "private", "show_progress": "hidden", "queue": False}

    timer_outputs = [panel.presenter_timer, panel.follow_timer, panel.card_timer]

    def presenter_rows() -> list[Any]:
        """The class and poll controls: shown on the presenter's page only (the server checks the role anyway)."""
        presenter = ctx.sessions.is_presenter(current_session_id())
        return [gr.Row(visible=presenter), gr.Row(visible=presenter)]

    def presenter_controls() -> list[Any]:
        """After a login: the controls, and the timers (the presenter's page runs them in a class)."""
        return [*presenter_rows(), *handlers.timers()]

    panel.login.click(user_errors(handlers.presenter_login), panel.key, [panel.role, panel.key],
                      api_name="presenter_login", concurrency_limit=None).then(
        presenter_controls, None, [panel.class_admin, panel.poll_admin, *timer_outputs], **private)
    # starting, ending or joining a class turns this page's timers on or off (whether the action worked or not)
    panel.start.click(user_errors(handlers.start_class), panel.title, panel.card, api_name="start_class").then(
        handlers.timers, None, timer_outputs, **private)
    panel.end.click(user_errors(handlers.end_class), None, panel.card, api_name="end_class").then(
        handlers.timers, None, timer_outputs, **private)
    panel.join.click(user_errors(handlers.join_class), panel.code, [panel.card, panel.follow], api_name="join_class",
                     queue=False).then(handlers.timers, None, timer_outputs, **private)
    gr.api(user_errors(handlers.class_state), api_name="class_state", queue=False)
    gr.api(user_errors(handlers.show_view), api_name="show_view")
    # an API client's calls go through the queue whatever `queue` says: its long polls wait on the event loop (no
    # thread), so none may wait for a worker behind the others (with the default limit, 50 followers' polls
    # queued up to 15 s)
    gr.api(user_errors(handlers.class_view), api_name="class_view", queue=False, concurrency_limit=None)
    panel.open_poll.click(user_errors(handlers.open_poll),
                          [panel.poll_kind, panel.poll_prompt, panel.poll_token, panel.poll_parameter], poll_outputs,
                          api_name="open_poll")
    panel.send.click(user_errors(handlers.answer_poll), panel.answer, panel.poll_note, api_name="answer_poll",
                     queue=False)
    panel.answer.submit(user_errors(handlers.answer_poll), panel.answer, panel.poll_note, api_visibility="private")
    panel.reveal.click(user_errors(handlers.reveal_poll), None, poll_outputs, api_name="reveal_poll")
    gr.api(user_errors(handlers.poll_results), api_name="poll_results", queue=False)
    panel.export.click(user_errors(handlers.export_poll), None, panel.export_file, api_name="export_poll").success(
        lambda: gr.File(visible=True), None, panel.export_file, **private)

    # following: the presenter's page reports its tab and inputs; a follower's page applies the room's view
    panel.presenter_timer.tick(handlers.push_view, [panel.current_tab, *link_components], None, **private)
    # a long poll: trigger_mode "once" drops a tick that arrives while the previous one still waits
    panel.follow_timer.tick(handlers.follow_tick, [panel.follow, panel.seen_version],
                            [panel.seen_version, tabs, panel.run_target, *link_components], trigger_mode="once",
                            **private).then(
        None, panel.run_target, panel.run_target, js=PRESS_RUN_JS, api_visibility="private", queue=False)
    panel.follow.change(handlers.set_follow, panel.follow, None, **private)
    panel.snap.click(lambda: (True, 0), None, [panel.follow, panel.seen_version], **private)
    panel.card_timer.tick(handlers.card_tick, panel.card_drawn,
                          [panel.card, *poll_outputs, *timer_outputs, panel.card_drawn], **private)

    def on_page_load(visitor: str, code: str) -> list[Any]:
        ctx.claim_page(visitor)  # before joining: the class is the visitor's, found again after a reload
        if code:
            try:
                handlers.join_class(code)
            except ClassError as error:
                gr.Warning(str(error))
        # what the server keeps for the visitor survives a reload, and the page shows it: whether a member
        # follows (not the box's default), the presenter's role and its controls
        room, session = ctx.classroom.current, visitor_id(ctx.sessions)
        follow = room.is_following(session) if room is not None and room.is_member(session) else gr.skip()
        return [role_text(ctx), follow, *presenter_rows(), *handlers.refresh(), *handlers.timers()]

    def on_page_closed() -> None:
        # the page closed or reloaded: an API client's session ends now (freeing its private model, adapter
        # and job); a browser's visitor session waits for its idle timeout, so a reload finds it again
        session = current_session_id()
        if session is not None:
            ctx.sessions.release_page(session)

    demo.unload(on_page_closed)
    demo.load(on_page_load, [ctx.visitor, panel.code],
              [panel.role, panel.follow, panel.class_admin, panel.poll_admin, panel.card, *poll_outputs,
               *timer_outputs], js=READ_CLASS_JS, **private)
    return handlers

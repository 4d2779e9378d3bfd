"""What every tab gets the same way, driven by its TabInfo: a "copy link to this view" row, an export
panel (plots as HTML, raw numbers as JSON/CSV), deep links from the URL, and presenter mode.

build_app calls `create_link_row` before a tab's own components (so the row sits at the top), wires
it with `wire_link_row` once the tab returned its components, adds `create_export_panel` at the
bottom, and finally `wire_deep_links` on page load.
"""

from __future__ import annotations

import copy

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import gradio as gr

from playground.ui import export
from playground.ui.deeplinks import (LINK_WARNING_SECONDS, DeepLink, LinkField, build_query, fields_for, link_warnings,
                                     resolve_query)
from playground.ui.errors import user_errors
from playground.ui.examples import (Example, ExampleFile, click_handler, load_example_file, opening_example,
                                   output_payload)

# Runs in the browser after "copy link": make the URL absolute (keeping presenter mode and the theme),
# try the clipboard, and always show the link in the textbox (the clipboard needs https or localhost).
COPY_LINK_JS = """(query) => {
  if (!query) return query;
  const extra = [];
  if (document.body.classList.contains('pg-presenter')) extra.push('presenter=1');
  if (document.body.classList.contains('dark')) extra.push('__theme=dark');
  const url = window.location.origin + window.location.pathname + query + (extra.length ? '&' + extra.join('&') : '');
  try { navigator.clipboard.writeText(url).catch(() => {}); } catch (error) {}
  return url;
}"""

# On page load: the page's query string (Python resolves it when there is one).
READ_QUERY_JS = "(query) => window.location.search || query"

# After a deep link filled the inputs: press the tab's main button (once it is on the page).
PRESS_RUN_JS = """(target) => {
  if (!target) return target;
  let tries = 0;
  const press = () => {
    const button = document.getElementById(target);
    if (button) { button.click(); } else if (tries++ < 50) { setTimeout(press, 100); }
  };
  setTimeout(press, 200);
  return target;
}"""

# Presenter mode and the dark theme are page classes: CSS (assets/style.css) does the rest. Both are also kept in
# the address bar (?presenter=1, ?__theme=dark|light, which gradio itself reads), so a reload keeps them.
PRESENTER_JS = """(on) => {
  document.body.classList.toggle('pg-presenter', !!on);
  const url = new URL(window.location.href);
  if (on) { url.searchParams.set('presenter', '1'); } else { url.searchParams.delete('presenter'); }
  window.history.replaceState(window.history.state, '', url);
  return on;
}"""
DARK_JS = """(on) => {
  document.body.classList.toggle('dark', !!on);
  document.querySelector('gradio-app')?.classList.toggle('dark', !!on);
  const url = new URL(window.location.href);
  url.searchParams.set('__theme', on ? 'dark' : 'light');
  window.history.replaceState(window.history.state, '', url);
  return on;
}"""
READ_DARK_JS = "(on) => document.body.classList.contains('dark')"


@dataclass
class TabLinks:
    """One tab's deep-link data: its linkable fields, their components and the button a link presses."""

    key: str
    fields: tuple[LinkField, ...]
    components: tuple[Any, ...]
    run_elem_id: str | None
    run_button: Any | None = None
    example_ids: dict[str, str] = field(default_factory=dict)  # example name -> its gallery button's elem_id


def tab_links(key: str, components: Mapping[str, Any], names: Sequence[str], run: str | None) -> TabLinks:
    run_elem_id = None
    if run is not None:
        button = components[run]
        if button.elem_id is None:
            button.elem_id = f"pg-run-{key}"  # set before the Blocks closes, so the page gets it
        run_elem_id = button.elem_id
    return TabLinks(key, fields_for(components, names), tuple(components[name] for name in names), run_elem_id,
                    components[run] if run is not None else None)


def mark_advanced(components: Mapping[str, Any], names: Sequence[str]) -> None:
    """Presenter mode hides these (CSS on `.pg-advanced`)."""
    for name in names:
        component = components[name]
        component.elem_classes = [*(component.elem_classes or []), "pg-advanced"]


# ---------------------------------------------------------------------------------------------
# Copy link to this view
# ---------------------------------------------------------------------------------------------


@dataclass
class LinkRow:
    button: Any
    link: Any


def create_link_row(key: str) -> LinkRow:
    with gr.Row(elem_classes=["pg-link-row"], equal_height=True):
        button = gr.Button("Copy link to this view", size="sm", scale=0, min_width=220,
                           elem_id=f"pg-copy-link-{key}")
        link = gr.Textbox(label="Link to this view (copied to the clipboard)", show_label=False, scale=5,
                          placeholder="Press the button: a link that opens this tab with these inputs",
                          interactive=False, buttons=["copy"], elem_id=f"pg-link-{key}", container=False)
    return LinkRow(button, link)


def wire_link_row(row: LinkRow, links: TabLinks) -> None:
    def link_query(*values: Any) -> str:
        return build_query(links.key, links.fields, values)

    row.button.click(link_query, list(links.components), row.link, api_visibility="private", queue=False,
                     show_progress="hidden").then(
        None, row.link, row.link, js=COPY_LINK_JS, api_visibility="private", queue=False)


# ---------------------------------------------------------------------------------------------
# Prepared examples (cached outputs, see playground/ui/examples.py)
# ---------------------------------------------------------------------------------------------


@dataclass
class ExampleRow:
    data: ExampleFile
    buttons: list[tuple[Example, Any]]
    note: Any


def create_example_row(key: str) -> ExampleRow | None:
    data = load_example_file(key)
    if not data.examples:
        return None
    with gr.Row(elem_classes=["pg-examples"], equal_height=True):
        gr.Button("Prepared examples:", size="sm", scale=0, min_width=150, interactive=False, variant="huggingface",
                  elem_classes=["pg-examples-label"])
        buttons = [(example, gr.Button(example.title, size="sm", scale=0, min_width=180,
                                       elem_id=f"pg-example-{key}-{example.name}"))
                   for example in data.examples]
    note = gr.Markdown(visible=False, elem_id=f"pg-example-note-{key}", elem_classes=["pg-example-note"])
    return ExampleRow(data, buttons, note)


def example_note(data: ExampleFile, example: Example, run_label: str | None, fresh: bool) -> str:
    if example.outputs is None or not fresh:
        why = "" if example.outputs is None else " (its cached result no longer matches this tab: regenerate it)"
        action = f" Press **{run_label}** to compute it." if run_label else ""
        return f"Example **{example.title}**: inputs filled{why}.{action}"
    where = ", ".join(part for part in (data.generated, data.machine) if part)
    return (f"Example **{example.title}**: cached result from {where}, computed on {data.model}; "
            f"press **{run_label}** to compute it live.")


def show_at_start(components: Sequence[Any], payloads: Sequence[Any]) -> None:
    """Make page payloads (as `examples.output_payload` gives them) the components' starting state in the page's
    config, as if an event had returned them: a value, or an update's properties.

    >>> box = gr.Textbox("old", visible=False)
    >>> show_at_start([box], [{"__type__": "update", "value": "new", "visible": True}])
    >>> box.value, box.visible
    ('new', True)
    """
    for component, payload in zip(components, payloads, strict=True):
        update = payload if isinstance(payload, dict) and payload.get("__type__") == "update" else {"value": payload}
        for key, value in update.items():
            if key != "__type__":
                # copies: a page payload may be shared with the example buttons' answers
                setattr(component, key, copy.deepcopy(value))


def wire_example_row(demo: gr.Blocks, row: ExampleRow, links: TabLinks, open_with_example: bool = True) -> None:
    """Each example button fills the inputs and shows the cached outputs at once (no model call). With
    `open_with_example`, the page opens showing the cached result of the example whose inputs are the tab's
    starting values (see examples.opening_example); the note says so until the main button runs live."""
    run_outputs = list(click_handler(demo, links.run_button).outputs) if links.run_button is not None else []
    run_ids = {component._id for component in run_outputs}
    inputs = [(spec, component) for spec, component in zip(links.fields, links.components)
              if component._id not in run_ids]
    run_label = links.run_button.value if links.run_button is not None else None
    if links.run_button is not None:
        # a live run replaces the cached view: the "cached result" note no longer describes it
        links.run_button.click(lambda: gr.Markdown(visible=False), None, row.note, queue=False,
                               api_visibility="private", show_progress="hidden")
    starting = {spec.name: component.value for spec, component in zip(links.fields, links.components)}
    first = opening_example(row.data, starting, len(run_outputs)) if open_with_example else None
    if first is not None:
        # The page's own config carries the cached result, not a load event: every output of every event a page
        # has run stays in gradio's loading-status table, which the page walks at each status message of every
        # later event (a slider move paid ~400 ms for the outputs of ten tabs' opening examples).
        show_at_start([*run_outputs, row.note],
                      [*first.outputs, output_payload(row.note, gr.Markdown(example_note(row.data, first, run_label,
                                                                                         True), visible=True))])
    for example, button in row.buttons:
        links.example_ids[example.name] = button.elem_id

        def show(example: Example = example) -> list[Any]:
            fresh = example.outputs is not None and len(example.outputs) == len(run_outputs)
            values = [example.values.get(spec.name, gr.skip()) for spec, _ in inputs]
            outputs = copy.deepcopy(example.outputs) if fresh else [gr.skip()] * len(run_outputs)
            note = gr.Markdown(example_note(row.data, example, run_label, fresh), visible=True)
            return [*values, *outputs, note]

        # instant (no model call): no progress to draw, and one loading status instead of one per output
        # (queueing.quiet_progress_on)
        button.click(show, None, [*(component for _, component in inputs), *run_outputs, row.note],
                     postprocess=False, queue=False, api_visibility="private", show_progress="hidden")


# ---------------------------------------------------------------------------------------------
# Export panel
# ---------------------------------------------------------------------------------------------


def _labelled(components: Mapping[str, Any], kind: type) -> list[tuple[str, str, Any]]:
    """(label shown, name, component) for every component of one kind, in the tab's order."""
    found = [(name, component) for name, component in components.items() if isinstance(component, kind)]
    return [(f"{component.label or name} ({name})", name, component) for name, component in found]


def _exporter(tab: str, entries: list[tuple[str, str, Any]], render: Callable[[Any, str], tuple[str, str]]
              ) -> Callable[..., str]:
    names = {label: name for label, name, _ in entries}

    def handler(choice: str, *values: Any) -> str:
        if not isinstance(choice, str) or choice not in names:
            raise gr.Error(f"Pick what to export (one of: {', '.join(names)}).")
        index = list(names).index(choice)
        if index >= len(values):
            raise gr.Error(f"Send every {tab} view after the choice ({len(names)} values), got {len(values)}.")
        try:
            text, suffix = render(values[index], choice)
        except export.EXPORT_REFUSALS as error:
            raise gr.Error(str(error)) from None
        except RecursionError:  # a library's parser on a hand-made, deeply nested payload
            raise gr.Error(f"{choice} could not be exported: it is nested too deeply (not a view this app "
                           "produced).") from None
        except (ValueError, TypeError, AttributeError) as error:  # a hand-made payload, not one of our views
            raise gr.Error(f"{choice} could not be exported: it is not a view this app produced "
                           f"({str(error)[:120]}).") from None
        return export.write_export(text, export.file_stem(tab, names[choice]), suffix)

    return handler


def render_html(payload: Any, title: str) -> tuple[str, str]:
    return export.standalone_html(export.figure_from_payload(payload), title), "html"


def render_json(data: Any, title: str) -> tuple[str, str]:
    return export.json_text(data), "json"


def render_csv(data: Any, title: str) -> tuple[str, str]:
    export.json_text(data)  # the same emptiness check
    return export.json_to_csv(export.finite(data)), "csv"


def create_export_panel(key: str, components: Mapping[str, Any]) -> dict[str, Any]:
    """An accordion: pick a plot -> standalone HTML; pick a raw-numbers JSON -> .json or .csv."""
    plots = _labelled(components, gr.Plot)
    tables = _labelled(components, gr.JSON)
    if not plots and not tables:
        return {}
    with gr.Accordion("Export: plots as HTML, raw numbers as JSON / CSV (PNG: the camera icon on each plot)",
                      open=False, elem_id=f"pg-export-{key}", elem_classes=["pg-export"]):
        with gr.Row(equal_height=True):
            plot_choice = gr.Dropdown([label for label, _, _ in plots], value=plots[0][0] if plots else None,
                                      label="Plot", scale=3, visible=bool(plots))
            html_button = gr.Button("Download plot as HTML", scale=1, visible=bool(plots),
                                    elem_id=f"pg-export-html-{key}")
        with gr.Row(equal_height=True):
            table_choice = gr.Dropdown([label for label, _, _ in tables], value=tables[0][0] if tables else None,
                                       label="Raw numbers", scale=3, visible=bool(tables))
            json_button = gr.Button("Download JSON", scale=1, visible=bool(tables), elem_id=f"pg-export-json-{key}")
            csv_button = gr.Button("Download CSV", scale=1, visible=bool(tables), elem_id=f"pg-export-csv-{key}")
        exported = gr.File(label="Exported file", interactive=False, elem_id=f"pg-export-file-{key}")
    plot_inputs = [plot_choice, *(component for _, _, component in plots)]
    table_inputs = [table_choice, *(component for _, _, component in tables)]
    for button, inputs, entries, render, fmt in ((html_button, plot_inputs, plots, render_html, "html"),
                                                (json_button, table_inputs, tables, render_json, "json"),
                                                (csv_button, table_inputs, tables, render_csv, "csv")):
        if entries:
            button.click(_exporter(key, entries, render), inputs, exported, api_name=f"export_{key}_{fmt}",
                         concurrency_limit=None)
    return {"plot_choice": plot_choice, "table_choice": table_choice, "html": html_button, "json": json_button,
            "csv": csv_button, "file": exported}


# ---------------------------------------------------------------------------------------------
# Deep links and presenter mode
# ---------------------------------------------------------------------------------------------


@dataclass
class PageControls:
    presenter: Any
    dark: Any


def create_page_controls() -> PageControls:
    with gr.Row(elem_id="pg-page-controls"):
        presenter = gr.Checkbox(False, label="Presenter mode",
                                elem_id="pg-presenter", container=False, scale=0, min_width=200)
        dark = gr.Checkbox(False, label="Dark theme", elem_id="pg-dark", container=False, scale=0,
                           min_width=260)
    presenter.change(None, presenter, presenter, js=PRESENTER_JS, api_visibility="private", queue=False)
    dark.input(None, dark, dark, js=DARK_JS, api_visibility="private", queue=False)
    return PageControls(presenter, dark)


def link_updates(link: DeepLink, all_links: Sequence[TabLinks]) -> list[Any]:
    """One value per linkable component of every tab: the link's value, or gr.skip() (leave it)."""
    updates: list[Any] = []
    for tab in all_links:
        for spec in tab.fields:
            chosen = tab.key == link.tab and spec.name in link.values
            updates.append(link.values[spec.name] if chosen else gr.skip())
    return updates


def wire_deep_links(demo: gr.Blocks, tabs: Any, all_links: Sequence[TabLinks], page: PageControls) -> None:
    """On page load: read the query, select the tab, fill its inputs, press its button; also an API
    endpoint `/deep_link` (query -> what it resolves to) for scripts and tests."""
    fields = {tab.key: tab.fields for tab in all_links}
    run_ids = {tab.key: tab.run_elem_id for tab in all_links}
    example_ids = {tab.key: tab.example_ids for tab in all_links}
    query = gr.Textbox("", visible=False)  # "": the page's own empty query is no change
    run_target = gr.Textbox(visible=False)

    def resolve_link(query_string: str) -> dict[str, Any]:
        """What a URL query (`?tab=sampling&temperature=0.7`) selects and fills in."""
        if query_string is not None and not isinstance(query_string, str):
            raise gr.Error("The query is text such as '?tab=sampling&temperature=0.7'.")
        return resolve_query(query_string or "", fields).to_dict()

    def apply_link(query_string: str | None) -> list[Any]:
        link = resolve_query(query_string or "", fields)
        for warning in link_warnings(link.problems):
            gr.Warning(warning, duration=LINK_WARNING_SECONDS)
        selected = gr.Tabs(selected=link.tab) if link.tab else gr.skip()
        target = (run_ids.get(link.tab) or "") if link.run else ""
        if link.tab and link.example:
            target = example_ids[link.tab].get(link.example, target)
            if link.example not in example_ids[link.tab]:
                gr.Warning(*link_warnings([f"the {link.tab} tab has no example {link.example!r} "
                                           f"(examples: {', '.join(example_ids[link.tab]) or 'none'})"]),
                           duration=LINK_WARNING_SECONDS)
        presenter = True if link.presenter else gr.skip()
        return [selected, presenter, target, *link_updates(link, all_links)]

    outputs = [tabs, page.presenter, run_target, *(c for tab in all_links for c in tab.components)]
    # The page reads its query itself; only a page with one asks Python to resolve it (its `change`). A load
    # event with every tab's inputs as outputs would put them all in gradio's loading-status table, which the
    # page walks at every later event's status messages (see show_at_start).
    demo.load(None, query, query, js=READ_QUERY_JS, api_visibility="private", queue=False)
    # concurrency_limit=None: resolving a link is instant and must never wait behind someone's long job.
    query.change(apply_link, query, outputs, api_visibility="private", show_progress="hidden",
                 concurrency_limit=None).then(
        None, run_target, run_target, js=PRESS_RUN_JS, api_visibility="private", queue=False)
    demo.load(None, page.dark, page.dark, js=READ_DARK_JS, api_visibility="private", queue=False)
    gr.api(user_errors(resolve_link), api_name="deep_link")

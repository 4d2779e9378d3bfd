"""Deep links: a URL query such as `?tab=sampling&prompt=Hello&temperature=0.7` selects a tab and fills its
inputs; "copy link to this view" builds the same query back from the current inputs.

The parsing is a pure function over plain data (`LinkField`s read once from each tab's components), so it
is tested without a browser: `resolve_query(query, fields) -> DeepLink`. Numbers are clamped to the
control's range, unknown choices and unknown names are reported (shown as a warning), never applied.

    >>> fields = {"sampling": (LinkField("temperature", "number", 0.0, 3.0),)}
    >>> resolve_query({"tab": "sampling", "temperature": "9"}, fields).values
    {'temperature': 3.0}
"""

from __future__ import annotations

import html

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode

import gradio as gr

Kind = Literal["text", "number", "bool", "choice", "choices"]

# Query keys the app itself reads; they are never reported as unknown inputs.
RESERVED_KEYS = ("tab", "run", "presenter", "__theme", "example", "class")  # class: the classroom join code
TAB_ALIASES = {"model": "quantization"}  # old tab keys, so links shared before a rename still open the tab
MAX_TEXT_CHARS = 20_000  # a URL is no place for a corpus; longer values are cut (with a note)
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


class LinkError(ValueError):
    """A query value that cannot be applied (shown to the user as a warning; the rest still applies)."""


@dataclass(frozen=True)
class LinkField:
    """One deep-linkable input: its name in the tab's component dict and what values it takes."""

    name: str
    kind: Kind
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class DeepLink:
    """What a query resolves to: the tab, the input values to set, whether to run the tab's main action."""

    tab: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    run: bool = False
    presenter: bool = False
    example: str | None = None
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"tab": self.tab, "values": self.values, "run": self.run, "presenter": self.presenter,
                "example": self.example, "problems": list(self.problems)}


# ---------------------------------------------------------------------------------------------
# Components -> fields (the only part that looks at gradio)
# ---------------------------------------------------------------------------------------------


def _choice_values(component: Any) -> tuple[Any, ...]:
    return tuple(value for _, value in (component.choices or []))


def field_for(name: str, component: Any) -> LinkField:
    """The LinkField a gradio input component accepts (its range, precision or choices)."""
    if isinstance(component, gr.Checkbox):
        return LinkField(name, "bool")
    if isinstance(component, gr.Slider):
        integer = float(component.step or 0).is_integer() and float(component.minimum).is_integer()
        return LinkField(name, "number", float(component.minimum), float(component.maximum), integer)
    if isinstance(component, gr.Number):
        return LinkField(name, "number", component.minimum, component.maximum, component.precision == 0)
    if isinstance(component, gr.CheckboxGroup) or (isinstance(component, gr.Dropdown) and component.multiselect):
        return LinkField(name, "choices", choices=_choice_values(component))
    if isinstance(component, (gr.Radio, gr.Dropdown)):
        custom = isinstance(component, gr.Dropdown) and component.allow_custom_value
        return LinkField(name, "text" if custom else "choice", choices=() if custom else _choice_values(component))
    if isinstance(component, gr.Textbox):
        return LinkField(name, "text")
    raise TypeError(f"{name}: a {type(component).__name__} cannot be filled from a URL")


def fields_for(components: Mapping[str, Any], names: Iterable[str]) -> tuple[LinkField, ...]:
    return tuple(field_for(name, components[name]) for name in names)


# ---------------------------------------------------------------------------------------------
# Query -> values (pure)
# ---------------------------------------------------------------------------------------------


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise LinkError(f"not a yes/no value: {raw!r} (use 1/0, true/false)")


def _parse_number(spec: LinkField, raw: str) -> float | int:
    try:
        number = float(raw)
    except ValueError:
        raise LinkError(f"{spec.name}: not a number: {raw!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise LinkError(f"{spec.name}: not a finite number: {raw!r}")
    if spec.minimum is not None:
        number = max(number, spec.minimum)
    if spec.maximum is not None:
        number = min(number, spec.maximum)
    return int(round(number)) if spec.integer else number


def _match_choice(spec: LinkField, raw: str) -> Any:
    for choice in spec.choices:
        if str(choice) == raw:
            return choice
    raise LinkError(f"{spec.name}: {raw!r} is not one of {', '.join(map(str, spec.choices))}")


def parse_value(spec: LinkField, raw: str) -> Any:
    """One query string value -> the value for the component (clamped, or LinkError)."""
    if spec.kind == "bool":
        return parse_bool(raw)
    if spec.kind == "number":
        return _parse_number(spec, raw)
    if spec.kind == "choice":
        return _match_choice(spec, raw)
    if spec.kind == "choices":
        return [_match_choice(spec, part) for part in raw.split(",") if part]
    return raw[:MAX_TEXT_CHARS]


def query_pairs(query: str | Mapping[str, str]) -> dict[str, str]:
    """`"?a=1&b=2"` or a mapping -> a dict (the last value of a repeated key wins)."""
    if isinstance(query, str):
        return dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
    return {str(key): str(value) for key, value in query.items()}


def resolve_query(query: str | Mapping[str, str], fields: Mapping[str, Sequence[LinkField]]) -> DeepLink:
    """The tab and input values a query asks for. Bad values and unknown names become `problems`."""
    pairs = query_pairs(query)
    problems: list[str] = []
    presenter = _flag(pairs, "presenter", problems, default=False)
    tab = pairs.get("tab") or None
    tab = TAB_ALIASES.get(tab, tab) if tab not in fields else tab
    if tab is not None and tab not in fields:
        problems.append(f"no tab called {tab!r} (tabs: {', '.join(fields)})")
        tab = None
    values: dict[str, Any] = {}
    specs = {spec.name: spec for spec in fields.get(tab, ())} if tab else {}
    for key, raw in pairs.items():
        if key in RESERVED_KEYS:
            continue
        if key not in specs:
            where = f"the {tab} tab" if tab else "a link without ?tab="
            problems.append(f"{key!r} is not an input {where} can take from a link")
            continue
        try:
            values[key] = parse_value(specs[key], raw)
        except LinkError as error:
            problems.append(str(error))
        if specs[key].kind == "text" and len(raw) > MAX_TEXT_CHARS:
            problems.append(f"{key}: cut to its first {MAX_TEXT_CHARS:,} characters")
    run = tab is not None and _flag(pairs, "run", problems, default=bool(values))
    return DeepLink(tab, values, run, presenter, pairs.get("example") or None, tuple(problems))


def _flag(pairs: Mapping[str, str], key: str, problems: list[str], default: bool) -> bool:
    if key not in pairs:
        return default
    try:
        return parse_bool(pairs[key]) if pairs[key] else True  # a bare ?presenter means on
    except LinkError as error:
        problems.append(f"{key}: {error}")
        return default


# ---------------------------------------------------------------------------------------------
# Values -> query (copy link to this view)
# ---------------------------------------------------------------------------------------------


def format_value(spec: LinkField, value: Any) -> str | None:
    """A component value as it goes into a URL (None: leave it out, e.g. a blank number)."""
    if value is None:
        return None
    if spec.kind == "bool":
        return "1" if value else "0"
    if spec.kind == "number":
        number = float(value)
        return str(int(round(number))) if spec.integer or number.is_integer() else repr(number)
    if spec.kind == "choices":
        return ",".join(str(item) for item in value)
    return str(value)


MAX_LINK_WARNINGS = 5  # a link with 1,500 unknown keys gets five toasts and a count, not 1,500 toasts
# A link's warnings arrive while the page is still loading, before anyone looks: they stay longer than gradio's 10 s.
LINK_WARNING_SECONDS = 30


def link_warnings(problems: Sequence[str]) -> list[str]:
    """The toasts a link's problems become: HTML-escaped (a toast renders HTML, and a link is anyone's text)
    and at most MAX_LINK_WARNINGS of them, the last saying how many more there were.

    >>> link_warnings(["'<b>x</b>' is not an input"])
    ["Link: '&lt;b&gt;x&lt;/b&gt;' is not an input"]
    """
    shown = [f"Link: {html.escape(problem, quote=False)}" for problem in problems[:MAX_LINK_WARNINGS]]
    if len(problems) > MAX_LINK_WARNINGS:
        shown.append(f"Link: {len(problems) - MAX_LINK_WARNINGS:,} more problems not shown.")
    return shown


def build_query(tab: str, specs: Sequence[LinkField], values: Sequence[Any]) -> str:
    """`?tab=<tab>&<name>=<value>...` for the current values of a tab's linkable inputs."""
    pairs = [("tab", tab)]
    for spec, value in zip(specs, values, strict=True):
        text = format_value(spec, value)
        if text is not None:
            pairs.append((spec.name, text))
    return "?" + urlencode(pairs)


def link_into(tab: str, values: Mapping[str, str | int | float], run: bool = True) -> str:
    """A link from one tab into another (`tab`), filled with `values` (its deep-link names) and, with `run`,
    pressing its button: for code that does not hold the other tab's components.

    >>> link_into("inside", {"prompt": "Hi there", "temperature": 0.8, "top_k": 0})
    '?tab=inside&prompt=Hi+there&temperature=0.8&top_k=0&run=1'
    """
    pairs = [(name, f"{value:g}" if isinstance(value, float) else str(value)) for name, value in values.items()]
    return "?" + urlencode([("tab", tab), *pairs, ("run", "1" if run else "0")])

"""Export: any plot as a standalone HTML file, any raw-numbers JSON as a .json or a .csv file.

One implementation for every tab: `viewtools.create_export_panel` lists a tab's `gr.Plot` and `gr.JSON`
components and calls these. PNG comes from plotly's own toolbar (the camera icon on every plot).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import plotly.graph_objects as go
import plotly.io as pio

from playground.limits import LimitExceededError, check_nesting

EXPORT_FORMATS = ("html", "json", "csv")


class NothingToExport(ValueError):
    """The chosen plot or table is still empty (the tab has not run yet)."""


EXPORT_REFUSALS = (NothingToExport, LimitExceededError)  # their message is the whole answer


def figure_from_payload(payload: Any) -> go.Figure:
    """What a gr.Plot hands a handler (PlotData with the figure as JSON, or a Figure) -> a Figure."""
    if payload is None:
        raise NothingToExport("This plot is empty: run the tab first, then export it.")
    if isinstance(payload, go.Figure):
        return payload
    text = payload.plot if hasattr(payload, "plot") else payload.get("plot") if isinstance(payload, dict) else None
    if not text:
        raise NothingToExport("This plot is empty: run the tab first, then export it.")
    return pio.from_json(text, skip_invalid=True)


def standalone_html(figure: go.Figure, title: str) -> str:
    """One HTML file with plotly.js inlined: opens offline, hover and zoom included."""
    return figure.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False},
                          default_width="100%", default_height="90vh").replace(
        "<head>", f"<head><title>{_escape(title)}</title>", 1)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of nested JSON as (path, value): `{"a": [1, {"b": 2}]}` -> ("a.0", 1), ("a.1.b", 2)."""
    if isinstance(value, dict):
        if not value:
            yield path, "{}"
        for key, item in value.items():
            yield from flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        if not value:
            yield path, "[]"
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}.{index}" if path else str(index))
    else:
        yield path, value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: a string that starts like a formula (`=HYPERLINK(...)`, `@SUM`,
    `+cmd|...`) gets a leading apostrophe (OWASP's CSV-injection advice); numbers stay numbers.

    >>> csv_cell("=1+1"), csv_cell("-0.5"), csv_cell(-0.5), csv_cell("Paris")
    ("'=1+1", "'-0.5", -0.5, 'Paris')
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def rows_to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The one CSV writer of the app: every text cell neutralised (csv_cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(name) for name in header])
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()


def json_to_csv(data: Any) -> str:
    """A CSV with one row per number or string in the JSON: `path,value` (lossless, any shape)."""
    return rows_to_csv(["path", "value"], flatten(data))


def finite(value: Any) -> Any:
    """NaN and infinities (not valid JSON) -> None, anywhere in nested data."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def json_text(data: Any) -> str:
    """Strict JSON (no NaN) of a tab's raw numbers; NothingToExport when the tab has not run."""
    if data is None or (isinstance(data, (dict, list)) and not data):
        raise NothingToExport("These raw numbers are empty: run the tab first, then export them.")
    check_nesting("These raw numbers", data)  # finite() and flatten() recurse: bound the depth first
    return json.dumps(finite(data), indent=1, ensure_ascii=False, allow_nan=False, default=str)


def file_stem(tab: str, name: str) -> str:
    """A safe file name: `sampling-stage_plot`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{tab}-{name}")


def write_export(text: str, stem: str, suffix: str) -> str:
    """Write into a fresh temp folder (gradio serves files from the temp dir) and return the path."""
    folder = Path(tempfile.mkdtemp(prefix="pg-export-"))
    path = folder / f"{stem}.{suffix}"
    path.write_text(text, encoding="utf-8")
    return str(path)

"""Every public API endpoint, fed hostile input (hypothesis): each call ends in a result or a clear error
message (never an empty error, a stack trace, an unexpected exception's text such as "Something went wrong
(TypeError: ...)", or a hang), and the app serves the next request.

Calls go over gradio's plain HTTP API (POST /gradio_api/call/<name>, then its event stream), not through
gradio_client, because a hostile client can send what gradio_client cannot encode: NaN and Infinity
literals and lone surrogates (JSON escapes such as "\\ud800").

The endpoint list comes from the running app (`view_api`), so a new endpoint is fuzzed without editing
this file. Inputs are drawn per parameter type and are mostly invalid (wrong types, NaN, out of range,
control characters, lone surrogates, RTL text, emoji sequences, oversized text), so the run stays bounded.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any

from pathlib import Path

import httpx

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.limits import LIMITS
from playground.ui.queueing import APP_WIDE_EVENTS

pytestmark = pytest.mark.slow

EXAMPLES_PER_ENDPOINT = 4
CALL_TIMEOUT_S = 90
# Valid choices of these would switch the model every visitor uses or start a long job: fuzz them with
# invalid choices only (their valid paths have their own API tests).
INVALID_CHOICES_ONLY = set(APP_WIDE_EVENTS) | {"train_lora", "quantization_report"}

HOSTILE_TEXTS = [
    "", " ", "\x00\x01\x02\x1b[31m\x7f", "\ud800 lone surrogate \udfff", "مرحبا بالعالم \u202e txet LTR",
    "👩‍👩‍👧‍👦🏳️‍🌈" * 50, "\n" * 1000, "{{ '{%' }} <script>alert(1)</script>", "../../etc/passwd",
    "x" * (LIMITS.text_chars + 1),
]
HOSTILE_NUMBERS = [math.nan, math.inf, -math.inf, -1, 0, 0.5, 3, 1e308, -(10**18), 10**12, True, "12", None, [1]]


def text_values() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(HOSTILE_TEXTS), st.text(max_size=200), st.sampled_from([None, 7, ["a"]]))


def number_values() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.floats(allow_nan=True, allow_infinity=True),
                     st.integers(min_value=-(2**70), max_value=2**70))


def file_data(path: str, name: str) -> dict[str, Any]:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def upload(app_url: str, data: bytes, name: str) -> dict[str, Any]:
    """Upload through gradio's upload route (as a browser does); the file name is the hostile part, and
    it never becomes a path outside gradio's temp dir."""
    response = httpx.post(f"{app_url}gradio_api/upload", files={"files": (name, data)}, timeout=30)
    response.raise_for_status()
    stored = Path(response.json()[0]).resolve()
    assert stored.is_relative_to(Path(os.environ["GRADIO_TEMP_DIR"]).resolve()), stored
    return file_data(str(stored), name)


def file_values(app_url: str) -> st.SearchStrategy[Any]:
    outside = st.sampled_from(["/etc/passwd", "../../../etc/passwd", file_data("/etc/passwd", "passwd"),
                               file_data("../../../etc/passwd", "../../x.txt"), None, 5])
    # (an empty file name is left out: gradio 6.31's upload route answers it with a 500, before our code)
    names = st.sampled_from(["notes.txt", "../../evil.md", "/etc/cron.d/x.csv", "a\\..\\b.pdf", "∂ 名前.jsonl"])
    return st.one_of(outside, st.builds(lambda data, name: upload(app_url, data, name), st.binary(max_size=2000),
                                        names))


def choices_of(python_type: str) -> list[str]:
    inside = python_type.split("Literal[", 1)[1].rsplit("]", 1)[0]
    return [part.strip().strip("'") for part in inside.split("',") if part.strip()]


def value_strategy(parameter: dict[str, Any], endpoint: str, app_url: str) -> st.SearchStrategy[Any]:
    python_type = parameter["python_type"]["type"]
    component = parameter["component"]
    if "filepath" in python_type or component == "File":
        strategy = file_values(app_url)
        return st.one_of(strategy, st.lists(strategy, max_size=2)) if python_type.startswith("list") else strategy
    if python_type.startswith("Literal[") and endpoint not in INVALID_CHOICES_ONLY:
        return st.one_of(st.sampled_from(choices_of(python_type) or [""]), text_values())
    if python_type in ("float", "int"):
        return number_values()
    if python_type == "bool":
        return st.one_of(st.booleans(), st.sampled_from(["yes", None, 2]))
    if python_type == "str":
        return text_values()
    # lists, dicts, JSON, dataframes, plots: garbage of every shape
    return st.one_of(text_values(), number_values(), st.lists(text_values(), max_size=3),
                     st.dictionaries(st.text(max_size=5), text_values(), max_size=3))


# An exception no handler expected: @user_errors words it "Something went wrong (TypeError: ...)", and
# outside @user_errors gradio shows its bare text ("'list' object has no attribute 'items'"). A hostile input
# must get a message about the input instead, so both count as failures.
UNEXPECTED_EXCEPTION = re.compile(r"Something went wrong|\b(?:Type|Attribute|Key|Index|Name|UnboundLocal|"
                                  r"ZeroDivision|Assertion|Runtime|NotImplemented|Recursion)Error\b")
# gradio's own input checks, before any handler runs: a component's preprocess names the input, the expected
# type and the value (its "Original error: TypeError ..." tail is gradio's wording), and its pydantic data
# models (DataframeData, PlotData, FileData, ListFiles) say what they expected (the app defines no pydantic model).
GRADIO_INPUT_CHECK = re.compile(r"Could not preprocess input component at index|\d+ validation errors? for "
                                r"(?:\w+Data|ListFiles)\n")


def is_clear_error(message: str | None) -> bool:
    text = (message or "").strip()
    return bool(text) and text != "Error" and "Traceback" not in text and 'File "/' not in text


def is_deliberate_error(payload: Any) -> bool:
    """A message we (or gradio's input checks) wrote for this input: a gr.Error (gradio sends its `title`;
    any other exception arrives as its bare text, without one) that does not report an unexpected exception."""
    message = payload.get("error") if isinstance(payload, dict) else payload
    if not isinstance(message, str) or not is_clear_error(message):
        return False
    if GRADIO_INPUT_CHECK.match(message):
        return True
    return isinstance(payload, dict) and "title" in payload and not UNEXPECTED_EXCEPTION.search(message)


def final_event(app_url: str, endpoint: str, event_id: str) -> tuple[str, str]:
    """(event, data) of the last event of a call's stream: complete, error, or what ended it."""
    event, data = "closed", ""
    with httpx.stream("GET", f"{app_url}gradio_api/call/{endpoint}/{event_id}", timeout=CALL_TIMEOUT_S) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    break
    return event, data


def call(app_url: str, endpoint: str, args: list[Any]) -> str | None:
    """Run one call; None when it ended well (a result or a clear error), else what went wrong."""
    body = json.dumps({"data": args}, allow_nan=True)  # NaN / Infinity literals, \\ud800 escapes
    try:
        response = httpx.post(f"{app_url}gradio_api/call/{endpoint}", content=body,
                              headers={"Content-Type": "application/json"}, timeout=30)
        if response.status_code != 200:
            detail = response.text
            return None if 400 <= response.status_code < 500 and is_clear_error(detail) else \
                f"HTTP {response.status_code}: {detail[:300]!r}"
        event, data = final_event(app_url, endpoint, response.json()["event_id"])
    except httpx.TimeoutException:
        return f"no answer within {CALL_TIMEOUT_S} s"
    if event == "complete":
        return None
    if event == "error":
        payload = json.loads(data) if data else None  # {"error": message or null, "title": ... for gr.Error}
        return None if is_deliberate_error(payload) else f"unclear error {data[:300]!r}"
    return f"the stream ended with {event!r} {data[:200]!r}"


def short(args: list[Any]) -> str:
    return repr([a[:40] + "…" if isinstance(a, str) and len(a) > 40 else a for a in args])[:400]


def test_every_endpoint_survives_hostile_input(client, app_url):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert len(endpoints) > 30  # the list really comes from the app
    problems: list[str] = []
    for name, info in endpoints.items():
        endpoint = name.lstrip("/")
        strategies = [value_strategy(parameter, endpoint, app_url) for parameter in info["parameters"]]

        @settings(max_examples=EXAMPLES_PER_ENDPOINT, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.tuples(*strategies))
        def fuzz(args: tuple[Any, ...]) -> None:
            problem = call(app_url, endpoint, list(args))
            if problem:
                problems.append(f"{name} {short(list(args))}: {problem}")

        fuzz()
        health = call(app_url, "model_status", [])
        assert health is None, f"the app stopped answering after fuzzing {name}: {health}"
    client.predict("", api_name="/cancel_lora")  # in case a random but valid request started a run
    assert problems == [], "\n".join(problems)


# -- hostile structures, deterministic (issue 24): one call per class and endpoint, each refused before any work --

STRUCTURED = ("list", "dict", "Dict", "List", "Any")  # python_type of JSON, dataframe, plot and list inputs


def deep(levels: int, leaf: Any = "x") -> Any:
    for _ in range(levels):
        leaf = [leaf]
    return leaf


def hostile_variants(parameters: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Calls that each put one class of hostile value in every slot of its kind, None elsewhere (the empty
    state: no handler starts work on it): lone surrogates in text, NaN/Infinity in numbers, and in JSON/list
    inputs a surrogate nested inside, nesting deeper than the server walks, and more text in all than an
    argument may hold."""
    types = [parameter["python_type"]["type"] for parameter in parameters]
    numeric = [t in ("float", "int") for t in types]
    text = [t == "str" for t in types]
    structured = [t.startswith(STRUCTURED) and "filepath" not in t for t in types]

    def fill(mask: list[bool], value: Any) -> list[Any]:
        return [value if hit else None for hit in mask]

    variants: dict[str, list[Any]] = {}
    if any(text):
        variants["surrogate text"] = fill(text, "a \ud800 b")
    if any(numeric):
        variants["NaN numbers"] = fill(numeric, math.nan)
        variants["Infinity numbers"] = fill(numeric, -math.inf)
    if any(structured):
        variants["nested surrogate"] = fill(structured, [["user", {"k": "\ud800"}]])
        variants["nesting past the limit"] = fill(structured, deep(LIMITS.nesting_depth + 20))
        half = LIMITS.text_chars // 2 + 1
        variants["nested text past the limit"] = fill(structured, [["user", "x" * half], ["user", "y" * half]])
    return variants


def test_hostile_structures_are_refused_with_a_message(client, app_url):
    """Per endpoint, one call for each class above: a result or a clear message, never an unexpected exception.
    Each is refused before the handler works, so the whole pass takes seconds."""
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    problems: list[str] = []
    calls = 0
    for name, info in endpoints.items():
        endpoint = name.lstrip("/")
        if endpoint in INVALID_CHOICES_ONLY:
            continue
        for label, args in hostile_variants(info["parameters"]).items():
            calls += 1
            problem = call(app_url, endpoint, args)
            if problem:
                problems.append(f"{name} ({label}): {problem}")
    assert calls > 60
    assert call(app_url, "model_status", []) is None
    assert problems == [], "\n".join(problems)


def tampered_traces(data: dict[str, Any]) -> dict[str, Any]:
    """force_token's trace JSON, sent back changed the ways issue 24 found (and a few more)."""
    trace = data["trace"]
    step = trace["steps"][0]
    return {
        "9,000 prompt ids": {**trace, "prompt_ids": [1] * 9000},
        "an id past the vocabulary": {**trace, "prompt_ids": [10**9]},
        "a negative id": {**trace, "prompt_ids": [-1]},
        "text ids": {**trace, "prompt_ids": ["a"]},
        "NaN in a step": {**trace, "steps": [{**step, "prob": math.nan}]},
        "more steps than max_new_tokens": {**trace, "steps": trace["steps"] * 50},
        "max_new_tokens past the limit": {**trace, "max_new_tokens": 10**6},
        "an alternative past the vocabulary": {**trace, "steps": [{**step, "alternatives": [
            {**step["alternatives"][0], "token_id": 10**9}]}]},
        "settings of the wrong type": {**trace, "settings": "hot"},
        "a huge seed": {**trace, "settings": {**trace["settings"], "seed": 10**30}},
        "not a trace": [1, 2, 3],
    }


def test_client_returned_state_is_checked_field_by_field(client, app_url):
    """force_token trusts nothing of the trace a client sends back (issue 24 #4): each tampered field gets a
    message that names it, quickly (the 9,000-id trace ran 79 s before)."""
    data = client.predict("The capital of France is", False, 1.0, 0, 1.0, 0.0, 1.0, 1, 2, False,
                          api_name="/generate_trace")[-1]
    forced = data["trace"]["steps"][0]["alternatives"][1]["token_id"]
    problems = []
    for label, trace in tampered_traces(data).items():
        started = time.perf_counter()
        body = json.dumps({"data": [{**data, "trace": trace}, 0, forced]}, allow_nan=True)
        event_id = httpx.post(f"{app_url}gradio_api/call/force_token", content=body,
                              headers={"Content-Type": "application/json"}, timeout=30).json()["event_id"]
        event, message = final_event(app_url, "force_token", event_id)
        seconds = time.perf_counter() - started
        if event != "error" or not is_deliberate_error(json.loads(message) if message else None):
            problems.append(f"{label}: {event} {message[:200]!r}")
        elif seconds > 20:
            problems.append(f"{label}: refused, but after {seconds:.0f} s")
    assert problems == [], "\n".join(problems)

"""The app shell without a model: CLI, tab list, header formatting, the spaces shim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from playground.runtime import gpu

ROOT = Path(__file__).resolve().parents[2]


def run_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_documents_every_flag_and_its_env_var():
    result = run_app("--help")
    assert result.returncode == 0
    for flag in ("--model", "--precision", "--device", "--host", "--port", "--share", "--offline"):
        assert flag in result.stdout
        assert "PLAYGROUND_" + flag[2:].upper() in result.stdout


def test_list_models_names_the_presets():
    result = run_app("--list-models")
    assert result.returncode == 0 and "smollm2-135m-instruct" in result.stdout and "qwen2.5-7b-instruct" in result.stdout


def test_importing_app_does_no_work():
    code = "import sys, time; t=time.time(); import app; print('gradio' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_app_has_one_tab_per_area(tmp_path):
    from playground.config import Settings
    from playground.ui import build_app
    from playground.ui.tabs import all_tabs

    from playground.runtime import ModelManager

    settings = Settings(cache_dir=tmp_path, preload=False)
    manager = ModelManager(settings)
    demo = build_app(settings, manager)
    keys = [info.key for info in all_tabs()]
    assert keys == ["tokenization", "attention", "sampling", "speculative", "rag", "lora", "calibration", "quantization",
                    "inside", "serving"]
    config = demo.get_config_file()
    elem_ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {f"tab-{key}" for key in keys} <= elem_ids
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {"model_status", "load_model"} <= api_names
    assert manager.active() is None  # building the UI loads nothing


def test_header_status_shows_model_card_and_progress():
    from playground.ui.header import format_status

    loading = {"phase": "loading", "target": "m", "fraction": 0.4, "message": "Converting <gguf>", "elapsed_seconds": 3}
    html = format_status({"loading": loading, "model": None, "cached": []})
    assert 'value="40"' in html and "&lt;gguf&gt;" in html  # progress shown, text escaped
    model = {"label": "Tiny", "parameters": 134_515_008, "device": "cpu", "precision": "int8 dynamic",
             "memory_mb": 236.4, "load_seconds": 3.2, "precision_reason": "auto: fast on CPU", "warning": ""}
    html = format_status({"loading": {**loading, "phase": "failed", "message": "boom"}, "model": model, "cached": []})
    for text in ("Tiny", "134.5 M parameters", "cpu", "int8 dynamic", "236 MB", "3.2 s", "auto: fast on CPU", "boom"):
        assert text in html


def test_gpu_shim_is_a_no_op_off_spaces(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)

    def handler(x):
        return x + 1

    assert gpu.gpu(duration=30)(handler) is handler


def test_user_errors_turn_exceptions_into_messages():
    import gradio as gr

    from playground.ui.errors import user_errors

    @user_errors
    def bad(value):
        raise ValueError(f"value must be positive, got {value}")

    @user_errors
    def streaming():
        yield 1
        raise RuntimeError("kaput")

    with pytest.raises(gr.Error, match="value must be positive, got -1"):
        bad(-1)
    generator = streaming()
    assert next(generator) == 1
    with pytest.raises(gr.Error, match="Something went wrong .RuntimeError: kaput"):
        next(generator)


def test_page_load_events_fire_only_on_page_load(tmp_path):
    """gr.on(None, fn, inputs) also fires on every change of `inputs`: a page-load handler must not listen
    to anything else, or each slider move reruns it (and may reset what the user just chose)."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui import build_app

    settings = Settings(cache_dir=tmp_path, preload=False)
    config = build_app(settings, ModelManager(settings)).get_config_file()
    load_events = [d for d in config["dependencies"] if any(event == "load" for _, event in d["targets"])]
    assert load_events  # the header, tokenization, attention and LoRA tabs open with content
    extra = {(d.get("api_name"), event) for d in load_events for _, event in d["targets"] if event != "load"}
    assert not extra, f"page-load handlers that also fire on: {sorted(extra, key=str)}"


def test_no_view_waits_for_a_sliders_release(tmp_path):
    """A slider fires `release` for the mouse only: arrow keys and typed numbers fire `input`. A view that
    re-rendered on `release` stayed on the old value for a keyboard user (the Inside tab's lens position and
    sampling sliders did)."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui import build_app

    settings = Settings(cache_dir=tmp_path, preload=False)
    config = build_app(settings, ModelManager(settings)).get_config_file()
    labels = {c["id"]: c.get("props", {}).get("label") for c in config["components"]}
    on_release = [(labels.get(target), d.get("api_name")) for d in config["dependencies"]
                  for target, event in d["targets"] if event == "release"]
    assert on_release == []


def test_a_slider_moves_follow_ups_start_after_its_first_view_is_painted(tmp_path):
    """Issue 22: gradio starts a `.then` in the same task that applied the first view's answer, and a starting event
    refreshes the loading status of every component the page has written to before the browser may paint (~40 ms
    of a ~230 ms temperature move). The first view of a sampling or attention move is followed by one step in the
    page (queueing.after_first_paint), and only then by the events that call Python again."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui import build_app
    from playground.ui.queueing import AFTER_PAINT_JS

    settings = Settings(cache_dir=tmp_path, preload=False)
    demo = build_app(settings, ModelManager(settings))
    fns = list(demo.fns.values())

    def after(fn) -> list:
        return [other for other in fns if other.trigger_after == fn._id]

    first_views = [fn for fn in fns if fn.name in ("stage_view", "move_layer_or_head")]
    assert len(first_views) == 5  # three groups of sampling settings, the layer and the head
    follow_ups = set()
    for first in first_views:
        (step,) = after(first)
        assert step.fn is None and step.js == AFTER_PAINT_JS and step.queue is False
        follow_ups.update(fn.name for fn in after(step))
    assert follow_ups == {"raw_numbers", "sweep_view", "after_layer_move", "after_head_move"}


def test_a_page_opens_with_a_short_loading_status_table(tmp_path):
    """Issue 22: the page keeps a loading status for every component an event of the page has reported on, and at
    every status message of every later event refreshes each of them with a search of the whole layout. Page-load
    events that reported on every tab (ten cached opening examples, a deep-link resolver with every tab's inputs as
    outputs, run even without a query) and a status per output of each view move left ~200 components there, and
    a slider move took ~450 ms to paint instead of ~170. Now the opening examples are in the page's config, a deep
    link is resolved only when the address has a query, and events with a hidden progress report on one hidden
    component, first in the layout; the Tokenization tab, in sight as the page opens, shows progress on one view
    per part."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui import build_app
    from playground.ui.tabs import all_tabs

    settings = Settings(cache_dir=tmp_path, preload=False)
    demo = build_app(settings, ModelManager(settings))
    fns = list(demo.fns.values())
    (sink,) = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "pg-quiet-progress"]
    assert demo.config["layout"]["children"][0]["id"] == sink._id and sink.visible is False
    hidden = [fn for fn in fns if fn.show_progress == "hidden" and fn.outputs]
    assert len(hidden) > 50 and all(fn.show_progress_on == [sink] for fn in hidden)
    # a drawn progress covers the views, not the controls an answer re-ranges or the JSON in a closed accordion
    (show_attention,) = [fn for fn in fns if fn.api_name == "attention"]
    covered = {type(block).__name__ for block in show_attention.show_progress_on}
    assert {"Plot", "Markdown"} <= covered and not covered & {"JSON", "Slider", "Dropdown"}
    drawn = [fn for fn in fns if fn.show_progress != "hidden" and fn.fn is not None and fn.outputs]
    assert not [fn.api_name for fn in drawn for block in fn.show_progress_on or ()
                if isinstance(block, (gr.JSON, gr.Slider, gr.Dropdown, gr.State))]

    opening = [fn for fn in fns if any(event == "load" for _, event in fn.targets)]
    while more := [fn for fn in fns if fn.trigger_after in {other._id for other in opening} and fn not in opening]:
        opening += more  # and what each page-load event chains with .then
    tab_of = {}
    for info in all_tabs():
        (item,) = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == f"tab-{info.key}"]
        stack = [item]
        while stack:
            block = stack.pop()
            tab_of[block._id] = info.key
            stack.extend(getattr(block, "children", []))
    reported_on = {block for fn in opening if fn.fn is not None for block in (fn.show_progress_on or fn.outputs)}
    assert {tab_of.get(block._id, "page") for block in reported_on} == {"page", "tokenization"}
    assert len(reported_on) <= 12, sorted(str(getattr(block, "label", block)) for block in reported_on)

    (resolve,) = [fn for fn in fns if getattr(fn.fn, "__name__", "") == "apply_link"]
    (query,) = resolve.inputs
    assert resolve.targets == [(query._id, "change")] and query.value == ""
    (read,) = [fn for fn in fns if fn.outputs == [query]]
    assert read.fn is None and read.js and read.targets == [(demo._id, "load")]


def test_main_preloads_on_the_manager_it_passes_to_the_app(monkeypatch, tmp_path):
    import app
    from playground.runtime import ModelManager

    passed, preloaded = [], []

    class Demo:
        def launch(self, **kwargs):
            pass

    monkeypatch.setattr(app, "create_demo", lambda settings, manager: passed.append(manager) or Demo())
    monkeypatch.setattr(ModelManager, "start_background_load", lambda self: preloaded.append(self))
    app.main(["--offline", "--preload", "--cache-dir", str(tmp_path)])
    assert len(passed) == 1 and isinstance(passed[0], ModelManager) and preloaded == passed


def test_closing_the_app_closes_its_server_past_gradios_event_race():
    """demo.close() can raise "deque mutated during iteration" (an asyncio.Event set from another thread) before
    it closes the server; a test's teardown failed on it. close_app closes the server then."""
    from types import SimpleNamespace

    from playground.ui import close_app

    closed = []

    def racing_close():
        raise RuntimeError("deque mutated during iteration")

    close_app(SimpleNamespace(close=racing_close, server=SimpleNamespace(close=lambda: closed.append(True))))
    assert closed == [True]
    close_app(SimpleNamespace(close=lambda: closed.append("close"), server=None))
    assert closed == [True, "close"]

"""Behaviour sentences of the README and docs/ that had no test of their own (issue 18; the mapping is
docs/claims.md): the limits table equals the code's limits, the per-request caps of the Model and LoRA tabs,
the cap on private adapter copies, how many models stay resident, the presenter key's constant-time check,
what --offline sets, and what `make` and CI run. Fast: tiny models and parsing only."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from playground.limits import LIMITS, MIB, PUBLIC_LIMITS, Limits

ROOT = Path(__file__).resolve().parents[2]

# -- docs/limits-and-safety.md: the table states the code's numbers ------------------------------------

# Each row of the table (by the start of its first cell) and the Limits fields its numbers state.
LIMIT_ROWS = {
    "any text argument of any endpoint": ("text_chars",),
    "text nested in one list/dict argument": ("text_chars",),
    "nesting of lists/dicts": ("nesting_depth",),
    "`tokenize_full` text": ("tokenize_full_chars",),
    "a name shown back": ("name_chars",),
    "sampling: traced new tokens": ("sampling_new_tokens",),
    "sampling: prompt": ("sampling_prompt_tokens",),
    "sampling: samples drawn": ("samples",),
    "speculative: k / max new tokens": ("speculative_k", "speculative_new_tokens"),
    "speculative: prompt": ("speculative_prompt_tokens",),
    "attention: analysed tokens": ("attention_tokens",),
    "RAG: k / rerank candidates": ("retrieval_k", "rerank_candidates"),
    "RAG: question": ("question_chars",),
    "RAG: max new tokens": ("rag_new_tokens",),
    "RAG: files / per file / all files": ("rag_files", "rag_file_bytes", "rag_total_bytes"),
    "RAG: pasted text / PDF pages / chunks": ("rag_pasted_chars", "rag_pdf_pages", "rag_chunks", "rag_chunks_gpu"),
    "RAG: reading PDFs": ("rag_pdf_seconds", "rag_pdf_chars", "rag_pdf_memory_bytes"),
    "BPE explorer: merges / corpus / text": ("bpe_merges", "bpe_corpus_chars", "bpe_text_chars"),
    "LoRA: optimizer steps": ("training_steps",),
    "LoRA: uploaded dataset lines": ("lora_upload_lines",),
    "LoRA: compare, new tokens per answer": ("lora_compare_new_tokens",),
    "LoRA: runs training at once": ("training_runs",),
    "LoRA: visitors' private adapter copies": ("private_models",),
    "Model & quantization tab: tokens decoded": ("quantization_decode_tokens",),
    "Model & quantization tab: memory calculator": ("memory_context_tokens", "memory_batch"),
    "a model or tokenizer name": ("model_name_chars",),
    "calibration: CSV rows": ("csv_rows",),
    "calibration: CSV columns": ("csv_columns", "csv_classes"),
    "calibration: self-consistency samples": ("self_consistency_samples",),
    "calibration: self-consistency questions": ("self_consistency_questions",),
    "Serving tab: batch size": ("serving_batch", "serving_decode_steps"),
    "Serving tab: KV-cache measurement": ("serving_kv_tokens",),
    "Serving tab: the prompt repeated": ("serving_prompt_tokens",),
    "Serving tab: simulated requests": ("serving_requests", "serving_request_tokens"),
    "inside: logit lens / ablation prompt": ("inside_lens_tokens",),
    "inside: head-importance / attribution prompt": ("inside_importance_tokens", "inside_attribution_tokens"),
    "inside: parts switched off at once / greedy tokens / IG steps": ("inside_parts", "inside_new_tokens",
                                                                      "inside_ig_steps"),
    "any uploaded file": ("upload_bytes",),
    "requests waiting in the queue": ("queue_size",),
}


def as_documented(field: str, value: int) -> int:
    """A limit in the unit the table writes it in: bytes as MB (GB for the PDF reader's memory)."""
    if field == "rag_pdf_memory_bytes":
        return value // (1024 * MIB)
    return value // MIB if field.endswith("_bytes") else value


def numbers_in(cell: str) -> set[int]:
    return {int(number.replace(",", "")) for number in re.findall(r"\d[\d,]*", cell)}


def limits_table() -> dict[str, tuple[str, str, str]]:
    """First cell -> (default cell, public cell, "at the limit" cell) of every row of the per-request limits table."""
    text = (ROOT / "docs" / "limits-and-safety.md").read_text(encoding="utf-8")
    section = text.split("## Per-request limits")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[0] != "limit" and not set(cells[0]) <= set("-: "):
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


def test_the_limits_table_states_the_codes_limits():
    rows = limits_table()
    mapped = {field for fields in LIMIT_ROWS.values() for field in fields}
    assert mapped == set(Limits.__dataclass_fields__), "a limit is missing from the table (or from LIMIT_ROWS)"
    problems = []
    for start, names in LIMIT_ROWS.items():
        row = [label for label in rows if label.startswith(start)]
        if len(row) != 1:
            problems.append(f"{start!r}: {len(row)} rows in the table")
            continue
        default_cell, public_cell, _ = rows[row[0]]
        for name in names:
            default, public = (as_documented(name, getattr(limits, name)) for limits in (LIMITS, PUBLIC_LIMITS))
            if default not in numbers_in(default_cell):
                problems.append(f"{row[0]!r}: {name} = {default:,} is not in the default column {default_cell!r}")
            if public_cell == "same" and public != default:
                problems.append(f"{row[0]!r}: says 'same' but the public {name} is {public:,}")
            if public_cell != "same" and public not in numbers_in(public_cell):
                problems.append(f"{row[0]!r}: public {name} = {public:,} is not in {public_cell!r}")
    assert not problems, "\n".join(problems)


def test_the_limits_table_check_catches_a_wrong_number(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "LIMITS", dataclasses.replace(LIMITS, retrieval_k=21))
    with pytest.raises(AssertionError, match="retrieval_k = 21"):
        test_the_limits_table_states_the_codes_limits()


def test_the_classroom_and_session_rows_state_their_constants():
    from playground import classroom, sessions
    from playground.ui import queueing
    from playground.ui.queueing import queue_launch_options

    rows = limits_table()
    answer = next(cells for label, cells in rows.items() if label.startswith("classroom: one answer per poll"))
    assert {classroom.ANSWER_MAX_CHARS, classroom.MAX_ANSWER_CHANGES} <= numbers_in(answer[0])
    waiting = next(cells for label, cells in rows.items() if label.startswith("classroom: followers' long polls"))
    assert {classroom.MAX_WAITING_FOLLOWERS, queueing.WORK_SLOTS} <= numbers_in(waiting[0])
    assert queueing.JOB_SLOTS == queueing.WORK_SLOTS + classroom.MAX_WAITING_FOLLOWERS
    assert queue_launch_options()["max_threads"] == queueing.JOB_SLOTS
    kept = next(cells for label, cells in rows.items() if label.startswith("sessions kept"))
    assert {sessions.MAX_SESSIONS, sessions.IDLE_TIMEOUT_SECONDS // 60, sessions.MAX_SESSIONS_PER_HOST} \
        <= numbers_in(kept[0])
    assert re.search(rf"the longest idle \({sessions.MIN_IDLE_TO_EVICT_SECONDS / 60:g} minutes or more", kept[2])


# -- per-request caps of the Model & quantization and LoRA tabs -----------------------------------------


def tab_api(create_tab, ctx) -> dict[str, object]:
    with gr.Blocks() as demo:
        create_tab(ctx)
    return {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name}


@pytest.mark.parametrize("public", [False, True])
def test_model_tab_refuses_sizes_over_the_servers_limits(stub_context, public):
    """No model is needed: the sizes are checked before anything is loaded or computed."""
    from playground.ui.quantization_tab import create_quantization_tab

    limits = PUBLIC_LIMITS if public else LIMITS
    api = tab_api(create_quantization_tab, stub_context(None, public=public))
    most = limits.quantization_decode_tokens
    with pytest.raises(gr.Error, match=rf"tokens to decode must be a whole number in 1\.\.{most}, got {most + 1}"):
        api["quantization_report"](["none"], most + 1)
    with pytest.raises(gr.Error, match=r"context length must be a whole number in 1\.\.10,000,000, got 10,000,001"):
        api["memory_estimate"](limits.memory_context_tokens + 1, 1, 24)
    with pytest.raises(gr.Error, match=r"batch must be a whole number in 1\.\.4,096, got 4,097"):
        api["memory_estimate"](8192, limits.memory_batch + 1, 24)
    _, table = api["memory_estimate"](limits.memory_context_tokens, limits.memory_batch, 24)  # the limits themselves
    assert table["rows"]


@pytest.fixture
def lora_api(stub_context, tiny_loaded, monkeypatch):
    """The LoRA tab's endpoints with a finished adapter for every visitor (the runner's adapter is a stand-in:
    the caps are checked before it is used)."""
    from playground import lora
    from playground.ui.lora_tab import create_lora_tab

    monkeypatch.setattr(lora.LoraRunner, "adapter", lambda self, owner="local": SimpleNamespace(job_id="job-1", base=None))

    def build(public: bool):
        ctx = stub_context(tiny_loaded, public=public)
        return ctx, tab_api(create_lora_tab, ctx)

    return build


@pytest.mark.parametrize("public", [False, True])
def test_lora_compare_refuses_more_new_tokens_than_the_server_allows(lora_api, monkeypatch, public):
    from playground import lora

    _, api = lora_api(public)
    most = (PUBLIC_LIMITS if public else LIMITS).lora_compare_new_tokens
    with pytest.raises(gr.Error, match=rf"max_new_tokens must be a whole number in 1\.\.{most}, got {most + 1}"):
        api["compare_lora"]("Hello", most + 1)
    asked = []
    monkeypatch.setattr(lora, "compare_answers", lambda adapter, prompts, tokens: asked.append(tokens) or [])
    monkeypatch.setattr(lora, "next_token_shift", lambda adapter, prompt: (_ for _ in ()).throw(RuntimeError("done")))
    with pytest.raises(gr.Error, match="done"):
        api["compare_lora"]("Hello", most)
    assert asked == [most]  # the limit itself is allowed


@pytest.mark.parametrize("public", [False, True])
def test_private_adapter_copies_are_capped_with_what_to_do_instead(lora_api, monkeypatch, public):
    from playground import lora

    ctx, api = lora_api(public)
    most = (PUBLIC_LIMITS if public else LIMITS).private_models
    for index in range(most - 1):
        ctx.sessions.get(f"visitor-{index}").private_model = object()
    merged = SimpleNamespace(spec=SimpleNamespace(label="Tiny + adapter", key="tiny+lora:job-1"),
                             precision=SimpleNamespace(label="fp32"), load_seconds=0.1)
    monkeypatch.setattr(lora, "merge_adapter", lambda adapter, base: merged)
    message, info = api["use_lora"]()  # one below the cap: served
    assert info["private"] is True and "other visitors still use the base model" in message
    ctx.sessions.get(f"visitor-{most - 1}").private_model = object()  # now `most` other visitors hold one
    with pytest.raises(gr.Error, match=rf"{most} visitors already use a private adapter model, the most this server "
                                       r"holds\. Compare before/after works without one; or ask the presenter"):
        api["use_lora"]()


# -- resident models -------------------------------------------------------------------------------


@pytest.mark.parametrize("memory_mb", [0, 100_000])
def test_at_most_four_models_stay_resident_with_or_without_a_budget(tmp_path, tiny_model_dir, memory_mb):
    """README: "0 = at most four models"; docs/workshop.md: at most four, and with a budget only as many of
    those as fit. Five different models loaded one after another: the first goes, never the active one."""
    from playground.config import Settings
    from playground.runtime import ModelManager

    folders = [shutil.copytree(tiny_model_dir, tmp_path / f"model-{index}") for index in range(5)]
    manager = ModelManager(Settings(model=str(folders[0]), device="cpu", cache_dir=tmp_path / "cache",
                                    model_memory_mb=memory_mb))
    for folder in folders:
        manager.load(str(folder), precision="none")
    resident = [key for key, _ in manager.residents()]
    assert resident == [manager.resolve_key(str(folder), "none", "cpu") for folder in folders[1:]]
    assert manager.active() is dict(manager.residents())[resident[-1]]


# -- the presenter key ------------------------------------------------------------------------------


def test_the_presenter_key_is_compared_in_constant_time(monkeypatch):
    """docs/workshop.md: "The key is compared in constant time" (hmac.compare_digest, not ==)."""
    import hmac

    from playground import sessions

    compared, original = [], hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(sessions.hmac, "compare_digest", recording)
    gate = sessions.SessionRegistry(sessions.PresenterGate("s3cret", False))
    gate.log_in("a", "s3cret")
    assert gate.is_presenter("a") and compared == [(b"s3cret", b"s3cret")]


# -- --offline -----------------------------------------------------------------------------------


def test_offline_sets_the_hub_variables_and_turns_analytics_off(monkeypatch):
    """docs/presenting.md: --offline sets HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE and turns
    gradio's analytics off (before transformers or gradio could reach the network)."""
    import app
    from playground.config import Settings

    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "GRADIO_ANALYTICS_ENABLED")
    for name in names:
        monkeypatch.setenv(name, "0")  # recorded first, so each is restored (or removed) after the test
        monkeypatch.delenv(name)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    app.configure_environment(Settings(offline=False, preload=False))
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["GRADIO_ANALYTICS_ENABLED"] == "True"
    app.configure_environment(Settings(offline=True, preload=False))
    assert [os.environ.get(name) for name in names] == ["1", "1", "1", "False"]


# -- make and CI ------------------------------------------------------------------------------------


def make_question(folder: Path) -> int:
    """`make -q setup`: 0 when the virtual environment is up to date, 1 when `make setup` would reinstall."""
    return subprocess.run(["make", "-q", "-C", str(folder), "setup"], capture_output=True, timeout=60).returncode


def test_make_reinstalls_only_when_a_requirements_file_changes(tmp_path):
    """README: "install the pinned requirements once (a later run reinstalls only when a requirements file
    changed)". The Makefile's stamp, checked with `make -q` in a copy (nothing is installed)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    requirements = [tmp_path / name for name in ("requirements.txt", "requirements-dev.txt",
                                                 "requirements-models.txt")]
    for path in requirements:
        path.write_text("x==1\n")
        os.utime(path, (1_000_000, 1_000_000))
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    assert make_question(tmp_path) == 1  # a fresh folder: setup would install
    (tmp_path / ".venv" / ".installed").write_text("")
    assert make_question(tmp_path) == 0  # installed after the requirements: nothing to do
    for path in requirements:
        os.utime(path, (4_000_000_000, 4_000_000_000))  # this file changed after the install
        assert make_question(tmp_path) == 1, path.name
        os.utime(path, (1_000_000, 1_000_000))
    assert make_question(tmp_path) == 0


def test_ci_runs_exactly_make_test():
    """README: "CI (`.ci/run`) runs exactly `make test`"."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in script.splitlines()
                if line.strip() and not line.lstrip().startswith("#") and not line.startswith("#!")]
    assert commands[-1] == "make test"
    assert all(line.startswith(("set ", "cd ")) for line in commands[:-1]), commands
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


@pytest.mark.parametrize("public", [False, True])
def test_the_model_tabs_decode_slider_stays_within_the_servers_limit(stub_context, public):
    """docs/limits-and-safety.md: limits are checked on the server and "sliders only mirror it": on a public
    server the lab's default (and largest) decode length must be one the server accepts, or pressing
    "Compare precisions" with the defaults is refused. Failed before: the slider was 4..64 with 24 ticked, public limit 16."""
    from playground.ui.quantization_tab import create_quantization_tab

    most = (PUBLIC_LIMITS if public else LIMITS).quantization_decode_tokens
    with gr.Blocks() as demo:
        create_quantization_tab(stub_context(None, public=public))
    slider = next(block for block in demo.blocks.values()
                  if isinstance(block, gr.Slider) and block.label == "tokens to decode for speed")
    assert slider.maximum == most and 1 <= slider.value <= most


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("module, create, component, label, field", [
    ("speculative_tab", "create_speculative_tab", gr.Slider, "Max new tokens", "speculative_new_tokens"),
    ("rag_tab", "create_rag_tab", gr.Slider, "Max new tokens", "rag_new_tokens"),
    ("sampling_tab", "create_sampling_tab", gr.Number, "Draw N samples from the final distribution", "samples"),
])
def test_a_tabs_control_offers_no_more_than_the_server_accepts(stub_context, public, module, create, component,
                                                               label, field):
    """docs/limits-and-safety.md: "sliders only mirror" the server's limits. On a public server these offered
    the private limit (speculative 512 and RAG 256 tokens against 128, 100,000 samples against 20,000), so the
    top of the range was refused on pressing the button. Failed before."""
    import importlib

    most = getattr(PUBLIC_LIMITS if public else LIMITS, field)
    with gr.Blocks() as demo:
        getattr(importlib.import_module(f"playground.ui.{module}"), create)(stub_context(None, public=public))
    control = next(block for block in demo.blocks.values()
                   if isinstance(block, component) and (block.label or "").startswith(label))
    assert control.maximum == most and 1 <= control.value <= most
    assert component is gr.Slider or f"{most:,}" in control.label  # the Number's label states its range


# -- the header's Load for a visitor ------------------------------------------------------------------


def test_a_visitors_load_switches_only_their_tabs_and_names_the_resident_models(tmp_path, tiny_model_dir):
    """docs/api.md `/load_model`: a visitor switches only their own tabs, and only to a model already in memory;
    anything else "is refused with the list of resident models"."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.sessions import AccessDenied
    from playground.ui.access import current_session
    from playground.ui.context import AppContext
    from playground.ui.header import load_for_session

    settings = Settings(model=str(tiny_model_dir), device="cpu", cache_dir=tmp_path, preload=False,
                        host="0.0.0.0", presenter_key="a-long-key")
    ctx = AppContext(settings, ModelManager(settings))
    ctx.models.load(precision="none")  # the presenter's model (loaded for everyone)
    ctx.models.load(precision="int8")
    ctx.models.load(precision="none")  # back to fp32 for everyone; int8 stays resident
    assert not ctx.sessions.is_presenter(None)  # a direct call is a visitor here (a network server with a key)
    with pytest.raises(AccessDenied, match=r"Only the presenter can load a new model.* Models in memory you can "
                                           r"switch to: ") as refused:
        load_for_session(ctx, str(tiny_model_dir), "bf16", "cpu", None)
    listed = str(refused.value).split("switch to: ")[1]
    assert sorted(listed.rstrip(".").split("; ")) == [f"{tiny_model_dir} (int8, cpu)", f"{tiny_model_dir} (none, cpu)"]
    load_for_session(ctx, str(tiny_model_dir), "int8", "cpu", None)
    assert current_session(ctx.sessions).model_key == ctx.models.resolve_key(str(tiny_model_dir), "int8", "cpu")
    assert ctx.models.active().precision.quantization == "none"  # everyone else's model did not change


# -- the Model & quantization tab's lab -----------------------------------------------------------------


def test_the_lab_opens_with_exact_weights_the_devices_default_and_int8(monkeypatch):
    """docs/tabs/quantization.md: "The lab opens with exact weights, the device's default (int4 on a CPU, NF4
    on CUDA) and int8 ticked", and a precision that is slow or cannot run here says so in its label."""
    from playground.runtime import precision as runtime_precision
    from playground.ui.quantization_tab import default_lab_precisions, precision_choices

    monkeypatch.setattr(runtime_precision, "int4_available", lambda: True)
    monkeypatch.setattr(runtime_precision, "bitsandbytes_available", lambda: True)
    assert default_lab_precisions("cpu") == ["none", "int4", "int8"]
    assert default_lab_precisions("cuda") == ["none", "nf4", "int8"]
    monkeypatch.setattr(runtime_precision, "int4_available", lambda: False)
    assert default_lab_precisions("cpu") == ["none", "int8"]  # the default is fp32 there: ticked once
    labels = {value: label for label, value in precision_choices("cpu", "smollm2-135m-instruct")}
    assert "unavailable" in labels["fp16"] and "slow" in labels["bf16"] and "tok/s" in labels["nf4"]


def test_class_bookkeeping_skips_the_queue(tmp_path):
    """docs/limits-and-safety.md: "Class bookkeeping (`class_view`, `class_state`, joining, answers, poll results)
    touches no model and skips the queue" (so a room's polling never waits behind model work)."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui import build_app
    from playground.ui.queueing import configure_queue

    settings = Settings(cache_dir=tmp_path, preload=False)
    demo = configure_queue(build_app(settings, ModelManager(settings)), settings)
    by_name = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    bookkeeping = ("class_view", "class_state", "join_class", "answer_poll", "poll_results")
    assert {name: by_name[name].queue for name in bookkeeping} == dict.fromkeys(bookkeeping, False)
    assert by_name["next_token"].queue is not False  # model work is queued


def test_the_embedded_presets_fall_back_to_the_same_models_on_the_hub():
    """docs/deployment.md: where the weight packages are not installed (a Spaces Gradio SDK Space), the default
    preset falls back to `HuggingFaceTB/SmolLM2-135M-Instruct` and MiniLM to `sentence-transformers/all-MiniLM-L6-v2`."""
    from playground.runtime import PRESETS

    assert PRESETS["smollm2-135m-instruct"].hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert PRESETS["all-minilm-l6-v2"].hub_id == "sentence-transformers/all-MiniLM-L6-v2"
    deployment = re.sub(r"\s+", " ", (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8"))
    assert "(`HuggingFaceTB/SmolLM2-135M-Instruct`, the same model) and MiniLM to " \
           "`sentence-transformers/all-MiniLM-L6-v2`" in deployment


def fake_tools(folder: Path, root: bool, chromium: bool) -> Path:
    """A PATH holding stand-ins for id, sudo, apt-get (and chromium): each records how it was called."""
    folder.mkdir()
    log = folder / "calls.log"
    scripts = {"id": f"echo {0 if root else 1000}", "apt-get": f'echo "apt-get $*" >> {log}',
               "sudo": f'echo "sudo $1" >> {log}; "$@"'}
    if chromium:
        scripts["chromium"] = "true"
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return log


@pytest.mark.parametrize("root, chromium, expected", [
    (True, False, ["apt-get update -qq", "apt-get install -y -qq chromium"]),
    (False, False, ["sudo apt-get", "apt-get update -qq", "sudo apt-get", "apt-get install -y -qq chromium"]),
    (False, True, []),
])
def test_make_test_installs_chromium_only_when_missing(tmp_path, root, chromium, expected):
    """README: "`make test` also installs Debian's `chromium` for the browser tests when it is missing (with
    `sudo` unless you are root)". `make browser` (a prerequisite of `make test`) with stand-in tools."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    log = fake_tools(tmp_path / "bin", root, chromium)
    done = subprocess.run([shutil.which("make"), "-C", str(tmp_path), "browser"], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert (log.read_text().splitlines() if log.exists() else []) == expected
    assert re.search(r"^test: .*\bbrowser\b", (ROOT / "Makefile").read_text(), re.M)


# -- the speculative tab's Stop -------------------------------------------------------------------------


def test_stop_can_end_the_speculative_race_between_tokens(tmp_path, tiny_model_dir):
    """docs/tabs/speculative.md: "**Stop** ends a run between steps, also during the race". gradio cancels a
    generator between its yields, so the race must yield while it decodes (every RACE_UPDATE_EVERY tokens), and
    a run closed there must leave the model's lock free for the next request."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui import speculative_tab
    from playground.ui.context import AppContext

    settings = Settings(model=str(tiny_model_dir), device="cpu", precision="none", cache_dir=tmp_path, preload=False)
    ctx = AppContext(settings, ModelManager(settings))
    ctx.models.load()
    api = tab_api(speculative_tab.create_speculative_tab, ctx)
    tokens = 2 * speculative_tab.RACE_UPDATE_EVERY
    args = ("Once upon a time", "ngram", 3, 0.0, 0, 1.0, tokens, 0, "", "")
    messages = [update[0] for update in api["speculate"](*args) if isinstance(update[0], str)]
    racing = [m for m in messages if m.startswith("Racing plain decoding with the same prompt")]
    produced = int(re.search(r"of (\d+) tokens", racing[0])[1])
    assert len(racing) >= -(-produced // speculative_tab.RACE_UPDATE_EVERY) >= 1, messages
    run = api["speculate"](*args)
    for update in run:
        if isinstance(update[0], str) and update[0].startswith("Racing"):
            break
    run.close()  # what Stop does: the generator is closed at its current yield
    target = speculative_tab.speculative_target(ctx.models, ctx.model())
    free = []

    def try_lock() -> None:  # from another thread: the lock is reentrant, so this thread would always get it
        free.append(target.lock.acquire(blocking=False))
        if free[-1]:
            target.lock.release()

    other = threading.Thread(target=try_lock)
    other.start()
    other.join(10)
    assert free == [True]


# -- self-consistency's question count ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 3, 65, 10**6])
def test_self_consistency_refuses_a_question_count_outside_its_range(stub_context, tiny_loaded, monkeypatch, size):
    """docs/api.md `/self_consistency`: "questions (4–64)". Checked on the server before any scoring: an API
    client sending 10**6 got all 256 test questions sampled (the slider was the only bound)."""
    from playground import calibration
    from playground.ui.calibration_tab import CalibrationHandlers

    def no_scoring(*args, **kwargs):
        raise AssertionError("scoring started for an out-of-range question count")

    monkeypatch.setattr(calibration, "score_questions", no_scoring)
    handlers = CalibrationHandlers(stub_context(tiny_loaded))
    with pytest.raises(gr.Error, match=rf"questions must be a whole number in 4\.\.{LIMITS.self_consistency_questions}"):
        handlers.run_self_consistency(size, 2, 1.0)


@pytest.mark.parametrize("candidates", [-1, 21, 10**6])
def test_the_rag_evaluation_refuses_more_rerank_candidates_than_the_server_allows(candidates):
    """docs/limits-and-safety.md: "RAG: k / rerank candidates | 20 / 20 | refused" and docs/api.md `/rag_evaluate`
    "LLM-rerank the hybrid top N": the evaluation takes the same cap as a retrieval, before any judging (an API
    client's N = 10**6 had the 135M judge score every chunk for each of the 45 questions: hours of CPU)."""
    from playground.rag import RetrievalInputError, evaluation

    def judge(question, passages):
        raise AssertionError("judging started")

    with pytest.raises(RetrievalInputError, match=rf"rerank candidates must be a whole number in 0\.\.{LIMITS.rerank_candidates}"):
        evaluation.evaluate_index(None, None, rerank=judge, rerank_candidates=candidates)


# -- preloading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("preload", [True, False])
def test_a_page_view_starts_the_configured_load_only_when_preloading(tmp_path, tiny_model_dir, preload):
    """README `--no-preload`: without it, the first page view starts the configured load if nothing did (the path
    of `gradio app.py` and Spaces, where main() does not preload); with it, nothing loads until someone presses
    **Load** in the header."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui import build_app

    settings = Settings(model=str(tiny_model_dir), device="cpu", precision="none", cache_dir=tmp_path,
                        preload=preload)
    manager = ModelManager(settings)
    demo = build_app(settings, manager)
    on_page_load = next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "on_page_load")
    on_page_load()
    if preload:
        assert manager.require_active(wait_seconds=120).spec.key == manager.resolve_key(str(tiny_model_dir),
                                                                                        "none", "cpu").model
    else:
        assert manager.state.phase == "idle" and manager.active() is None


def test_a_visitor_whose_model_went_is_back_on_the_servers_model(tmp_path, tiny_model_dir):
    """docs/workshop.md: "A visitor whose model went is back on the server's model at their next request"."""
    from playground.config import Settings
    from playground.runtime import ModelManager
    from playground.ui.access import current_session
    from playground.ui.context import AppContext
    from playground.ui.header import load_for_session

    settings = Settings(model=str(tiny_model_dir), device="cpu", cache_dir=tmp_path, preload=False,
                        host="0.0.0.0", presenter_key="a-long-key")
    ctx = AppContext(settings, ModelManager(settings, max_cached=2))
    ctx.models.load(precision="int8")
    ctx.models.load(precision="none")  # the server's model; int8 stays resident
    load_for_session(ctx, str(tiny_model_dir), "int8", "cpu", None)  # a visitor picks the resident int8
    assert ctx.model().precision.quantization == "int8"
    ctx.models.load(precision="bf16")  # the presenter loads another: int8 (least recently used) goes
    ctx.models.load(precision="none")
    assert ctx.model() is ctx.models.active() and ctx.model().precision.quantization == "none"
    assert current_session(ctx.sessions).model_key is None

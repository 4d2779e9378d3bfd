"""Limits in one place, enforced server-side; the public-deployment allowlist; no unsafe loading; the
--share warning; no secrets in logs; the queue settings. (Issue 12; the queue part of issue 11.)"""

from __future__ import annotations

import ast
import logging
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import pytest

from playground import limits
from playground.config import Settings, load_settings
from playground.limits import LIMITS, PUBLIC_LIMITS, LimitExceededError, whole_number_in
from playground.runtime import ModelLoadError, ModelManager
from playground.runtime.registry import ModelNotAllowedError, allowed_model_names, check_model_allowed

ROOT = Path(__file__).resolve().parents[2]
FAKE_TOKEN = "hf_FAKEsecretTOKEN1234567890abcdef"


# -- the limits table ---------------------------------------------------------------------------


def test_public_limits_are_never_looser_than_the_hard_ones():
    for field in fields(LIMITS):
        assert getattr(PUBLIC_LIMITS, field.name) <= getattr(LIMITS, field.name), field.name
    assert PUBLIC_LIMITS.training_steps < LIMITS.training_steps and PUBLIC_LIMITS.upload_bytes < LIMITS.upload_bytes


def test_compute_modules_take_their_caps_from_the_one_table():
    from playground import attention, calibration, lora, sampling, speculative, tokenization
    from playground.rag import answer, chunking, corpus, ranking

    pairs = [(sampling.MAX_TRACE_TOKENS, LIMITS.sampling_new_tokens), (sampling.MAX_SAMPLES, LIMITS.samples),
             (speculative.MAX_K, LIMITS.speculative_k), (speculative.MAX_NEW_TOKENS, LIMITS.speculative_new_tokens),
             (answer.MAX_NEW_TOKENS, LIMITS.rag_new_tokens), (ranking.MAX_K, LIMITS.retrieval_k),
             (corpus.corpus_from_inputs.__defaults__[-1], LIMITS), (chunking.MAX_CHUNKS, LIMITS.rag_chunks),
             (attention.MAX_ANALYSED_TOKENS, LIMITS.attention_tokens), (tokenization.BPE_MAX_MERGES, LIMITS.bpe_merges),
             (calibration.MAX_CSV_ROWS, LIMITS.csv_rows), (lora.LIMITS["steps"][1], LIMITS.training_steps),
             (lora.MAX_UPLOAD_LINES, LIMITS.lora_upload_lines)]
    assert [module_value for module_value, _ in pairs] == [table_value for _, table_value in pairs]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "3", None, 2.5, 0, 17, 10**30])
def test_whole_number_in_refuses_anything_but_a_whole_number_in_range(value: Any):
    with pytest.raises(LimitExceededError, match=r"k must be a whole number in 1\.\.16"):
        whole_number_in("k", value, 1, 16)


def test_whole_number_in_accepts_slider_floats():
    assert whole_number_in("k", 16.0, 1, 16) == 16 and whole_number_in("k", 1, 1, 16) == 1


def test_public_setting_and_allowlist_come_from_env_and_flags():
    settings = load_settings([], environ={"PLAYGROUND_PUBLIC": "1", "PLAYGROUND_MODEL_ALLOWLIST": " a/b ,c/d,"})
    assert settings.public and settings.limits is PUBLIC_LIMITS and settings.allowlisted_models() == ("a/b", "c/d")
    assert load_settings(["--no-public"], environ={"PLAYGROUND_PUBLIC": "1"}).limits is LIMITS


def test_text_longer_than_the_server_accepts_is_refused_before_the_handler_runs():
    from playground.ui.errors import user_errors

    calls = []
    handler = user_errors(lambda text, n: calls.append(text))
    handler("x" * LIMITS.text_chars, 1)
    with pytest.raises(Exception, match=f"at most {LIMITS.text_chars:,}") as raised:
        handler("x" * (LIMITS.text_chars + 1), 1)
    assert type(raised.value).__name__ == "Error" and len(calls) == 1


def user_errors_lazy(function):
    from playground.ui.errors import user_errors

    return user_errors(function)


def typed_handler(text: str, names: list[str], k: int, flag: bool = False,
                  rows: list[list[Any]] | None = None, mode: Literal["dense", "bm25"] = "dense") -> str:
    return "ran"


@pytest.mark.parametrize("args, message", [
    ((7, ["a"], 1), r"Input 1 \(text\) must be text; got int 7\."),
    (("x", 5, 1), r"Input 2 \(names\) must be a list of text; got int 5\."),
    (("x", ["a", 1], 1), r"Input 2 \(names\) must be a list of text; got list \['a', 1\]\."),
    (("x", [], "3"), r"Input 3 \(k\) must be a number; got str '3'\."),
    (("x", [], True), r"Input 3 \(k\) must be a number; got bool True\."),
    (("x", [], 1, "yes"), r"Input 4 \(flag\) must be true or false; got str 'yes'\."),
    (("x", [], 1, True, {"a": 1}), r"Input 5 \(rows\) must be a list of lists; got dict"),
    (("x", [], 1, True, None, 3), r"Input 6 \(mode\) must be one of 'dense', 'bm25'; got int 3\."),
])
def test_an_argument_of_the_wrong_type_is_refused_by_name_before_the_handler_runs(args: tuple[Any, ...],
                                                                                  message: str):
    from playground.ui.errors import user_errors

    with pytest.raises(Exception, match=message) as raised:
        user_errors(typed_handler)(*args)
    assert type(raised.value).__name__ == "Error"


class TypedHandlers:
    """A per-tab handlers class (the tabs' handlers are methods): `self` is not an input."""

    @user_errors_lazy
    def handle(self, text: str, names: list[str], k: int) -> str:
        return f"ran {text}"


def test_a_handler_method_is_checked_without_counting_self():
    handlers = TypedHandlers()
    assert handlers.handle("x", ["a"], 24.0) == "ran x"
    with pytest.raises(Exception, match=r"Input 1 \(text\) must be text; got int 7\.") as raised:
        handlers.handle(7, ["a"], 1)
    assert type(raised.value).__name__ == "Error"
    with pytest.raises(Exception, match=r"Input 3 \(k\) must be a number; got str '3'\."):
        handlers.handle("x", [], "3")
    with pytest.raises(Exception, match=f"Text input 1 .*at most {LIMITS.text_chars:,}"):
        handlers.handle("x" * (LIMITS.text_chars + 1), [], 1)


def test_arguments_that_fit_the_hints_as_gradio_sends_them_reach_the_handler():
    from playground.ui.errors import user_errors

    handler = user_errors(typed_handler)
    assert handler("x", ["a"], 24.0, True, [["user", 1.5]], "bm25") == "ran"  # sliders send floats
    assert handler(None, None, None, None, None, None) == "ran"  # empty components: the handler decides
    assert handler("x", ("a", "b"), 3) == "ran"  # a tuple where a list is hinted (JSON has no tuples)


@pytest.mark.parametrize("args, message", [
    (("a\ud800b", [], 1), r"Input 1 \(text\) contains a lone surrogate \(\\+ud800 at character 2\)"),
    (("x", ["ok", "\udfff"], 1), r"Input 2 \(names\) contains a lone surrogate"),
    (("x", [], 1, False, [["user", {"deep": "\ud800"}]]), r"Input 5 \(rows\) contains a lone surrogate"),
    (("x", [], math.nan), r"Input 3 \(k\) must be a finite number; got float nan\."),
    (("x", [], math.inf), r"Input 3 \(k\) must be a finite number; got float inf\."),
    (("x", [], 1, False, [["x" * (LIMITS.text_chars // 2 + 1)], ["y" * (LIMITS.text_chars // 2)]]),
     r"Input 5 \(rows\) has 1,000,001 characters in all"),
])
def test_surrogates_non_finite_numbers_and_nested_text_are_refused_by_name(args: tuple[Any, ...], message: str):
    """Issue 24 #9/#10: a lone surrogate reached tokenizers (UnicodeEncodeError), NaN for an integer input gave
    "cannot convert float NaN to integer" without naming the input, and text nested in a list (a chat message,
    a price row's name) was never measured."""
    from playground.ui.errors import user_errors

    with pytest.raises(Exception, match=message) as raised:
        user_errors(typed_handler)(*args)
    assert type(raised.value).__name__ == "Error"


def test_nesting_deeper_than_the_server_walks_is_refused():
    from playground.ui.errors import MAX_NESTING, user_errors

    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(Exception, match=rf"Input 5 \(rows\) is nested more than {MAX_NESTING} levels deep"):
        user_errors(typed_handler)("x", [], 1, False, deep)
    shallow: Any = "x"
    for _ in range(MAX_NESTING - 1):
        shallow = [shallow]
    assert user_errors(lambda rows: "ran")(shallow) == "ran"


# -- the model allowlist ------------------------------------------------------------------------


def test_without_public_or_allowlist_any_model_may_be_loaded():
    assert allowed_model_names(Settings()) is None


def test_public_without_allowlist_allows_the_embedded_presets_and_the_configured_model():
    allowed = allowed_model_names(Settings(public=True, model="HuggingFaceTB/SmolLM2-360M-Instruct"))
    assert allowed == {"smollm2-135m-instruct", "gemma-3-270m", "smollm2-360m-instruct"}
    check_model_allowed("HuggingFaceTB/SmolLM2-135M-Instruct", allowed)  # a preset's hub id is the preset
    with pytest.raises(ModelNotAllowedError, match="'qwen2.5-7b-instruct' is not on its allowlist"):
        check_model_allowed("qwen2.5-7b-instruct", allowed)


def test_a_refused_folder_gets_the_same_message_whether_it_exists_or_not(tmp_path):
    allowed = allowed_model_names(Settings(model_allowlist="smollm2-135m-instruct"))
    messages = []
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(ModelNotAllowedError) as raised:
            check_model_allowed(str(folder), allowed)
        messages.append(str(raised.value).replace(str(folder), "<folder>"))
    assert messages[0] == messages[1]


def test_the_manager_refuses_a_model_off_the_allowlist_and_keeps_the_active_one(tmp_path, tiny_model_dir):
    manager = ModelManager(Settings(model=str(tiny_model_dir), precision="none", device="cpu", offline=True,
                                    cache_dir=tmp_path, model_allowlist="smollm2-135m-instruct"))
    good = manager.load()  # the configured model is always allowed
    for refused in ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-instruct", "/etc"):
        with pytest.raises(ModelLoadError, match="not on its allowlist"):
            manager.load(refused, activate=False)
    assert manager.active() is good


def test_a_restricted_server_loads_no_tokenizer_from_a_folder(tiny_model_dir, tmp_path):
    from playground.runtime.tokenizers import TokenizerUnavailableError, load_tokenizer

    restricted = Settings(public=True, offline=True, cache_dir=tmp_path)
    with pytest.raises(TokenizerUnavailableError, match="not on its allowlist"):
        load_tokenizer(str(tiny_model_dir), restricted)
    assert load_tokenizer(str(tiny_model_dir), Settings(offline=True, cache_dir=tmp_path)).is_fast


# -- training steps are capped however they are set ---------------------------------------------


def test_a_run_longer_than_the_server_allows_is_refused_before_it_starts(tiny_model_dir, tmp_path):
    from playground import lora

    base = ModelManager(Settings(model=str(tiny_model_dir), precision="none", device="cpu", offline=True,
                                 cache_dir=tmp_path)).load()
    pirate = lora.builtin_dataset("pirate")
    data = lora.Dataset("pirate-small", pirate.train[:40], pirate.eval[:4])
    runner = lora.LoraRunner(tmp_path / "lora")
    with pytest.raises(lora.LoraSettingsError, match="would take 200 optimizer steps; this server allows at most 199"):
        runner.start(base, data, lora.LoraSettings(epochs=20, batch_size=4), max_steps=199)
    assert runner.job() is None


# -- nothing unsafe is loaded --------------------------------------------------------------------


def _python_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "playground").rglob("*.py"))]


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


UNSAFE_CALLS = {"torch.load", "pickle.load", "pickle.loads", "joblib.load", "dill.load", "eval", "exec",
                "torch.jit.load", "np.load", "numpy.load"}


def test_no_unpickling_no_remote_code_no_eval_anywhere_in_the_app():
    problems = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                problems += [f"{path.name}: imports {name}" for name in names if name in ("pickle", "dill", "joblib")]
        for call in _calls(tree):
            name = _dotted(call.func)
            keywords = {keyword.arg: keyword.value for keyword in call.keywords}
            safe_numpy = name in ("np.load", "numpy.load") and isinstance(keywords.get("allow_pickle"), ast.Constant) \
                and keywords["allow_pickle"].value is False
            if name in UNSAFE_CALLS and not safe_numpy:
                problems.append(f"{path.name}:{call.lineno}: {name}")
            for keyword in ("trust_remote_code", "allow_pickle"):
                value = keywords.get(keyword)
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{path.name}:{call.lineno}: {keyword} is not the literal False")
    assert problems == []


def test_model_weights_are_loaded_as_safetensors_only():
    from playground.runtime.loading import _from_pretrained_kwargs
    from playground.runtime.precision import Precision

    import torch

    kwargs = _from_pretrained_kwargs(Precision("none", torch.float32, "fp32", "test"), "cpu")
    assert kwargs["use_safetensors"] is True


# -- --share warns, secrets stay out of logs ------------------------------------------------------


class FakeDemo:
    """Stands in for the gradio app in app.main: records launch() instead of serving."""

    def __init__(self) -> None:
        self.launched: dict[str, Any] = {}

    def launch(self, **kwargs: Any) -> None:
        self.launched = kwargs


def run_main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> FakeDemo:
    import app

    demo = FakeDemo()
    monkeypatch.setattr(app, "create_demo", lambda settings, manager: demo)
    app.main(argv)
    return demo


def test_share_prints_that_the_link_is_public(monkeypatch, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="playground"):
        demo = run_main(["--share", "--no-preload", "--offline", "--cache-dir", str(tmp_path)], monkeypatch)
    assert demo.launched["share"] is True
    assert any("PUBLIC" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="playground"):
        run_main(["--no-share", "--no-preload", "--offline", "--cache-dir", str(tmp_path)], monkeypatch)
    assert not any("PUBLIC" in record.getMessage() for record in caplog.records)


def test_launch_caps_uploads_with_the_servers_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_PUBLIC", "1")
    demo = run_main(["--no-preload", "--offline", "--cache-dir", str(tmp_path)], monkeypatch)
    assert demo.launched["max_file_size"] == PUBLIC_LIMITS.upload_bytes


def test_a_token_in_the_environment_never_reaches_logs_messages_or_status(monkeypatch, caplog, capsys, tmp_path):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN)
    manager = ModelManager(Settings(offline=True, cache_dir=tmp_path))
    with caplog.at_level(logging.DEBUG):
        run_main(["--share", "--no-preload", "--offline", "--cache-dir", str(tmp_path)], monkeypatch)
        with pytest.raises(ModelLoadError) as raised:
            manager.load("someone/not-in-the-cache")  # a hub load that fails offline
    seen = " ".join([record.getMessage() for record in caplog.records] + [str(raised.value), str(manager.status()),
                                                                          *capsys.readouterr()])
    assert "not-in-the-cache" in seen and FAKE_TOKEN not in seen


# -- the queue ----------------------------------------------------------------------------------


def test_queue_settings_name_real_events_and_are_applied(tmp_path):
    from playground.ui import build_app
    from playground.ui.queueing import (APP_WIDE_EVENTS, CHEAP_CONCURRENCY, LARGE_ANSWER_EVENTS, LONG_JOB_CONCURRENCY,
                                       LONG_JOB_GROUP, LONG_MODEL_JOBS, configure_queue)

    settings = Settings(cache_dir=tmp_path, preload=False, public=True)
    demo = configure_queue(build_app(settings, ModelManager(settings)), settings)
    by_name = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert set(LONG_MODEL_JOBS) | set(APP_WIDE_EVENTS) | set(LARGE_ANSWER_EVENTS) <= set(by_name)  # a renamed event fails here
    assert {(by_name[name].concurrency_id, by_name[name].concurrency_limit) for name in LONG_MODEL_JOBS} == \
        {(LONG_JOB_GROUP, LONG_JOB_CONCURRENCY)}
    assert {by_name[name].concurrency_limit for name in APP_WIDE_EVENTS} == {1}
    assert by_name["tokenize"].concurrency_limit == "default"
    assert by_name["tokenize_full"].concurrency_limit == 1  # issue 24 #5: 6-8 at once stalled everything
    assert demo._queue.default_concurrency_limit == CHEAP_CONCURRENCY
    assert demo._queue.max_size == PUBLIC_LIMITS.queue_size


@pytest.mark.parametrize("zerogpu", [False, True])
def test_the_first_view_of_a_slider_move_skips_the_queue_except_under_zerogpu(tmp_path, monkeypatch, zerogpu):
    """playground/ui/queueing.py skip_the_queue: the stage chart, the attention heatmap and query row, and the
    speculative step re-read a cached result, so they skip the queue; the rest of a move and model work queue.
    Under ZeroGPU (a GPU is borrowed for a queued event) they queue too."""
    from playground.runtime import gpu
    from playground.ui import build_app, queueing
    from playground.ui.queueing import configure_queue

    monkeypatch.setattr(gpu, "_spaces_module", lambda: object() if zerogpu else None)
    monkeypatch.setattr(queueing, "gpu", lambda duration=60: lambda function: function)  # no real `spaces` here
    settings = Settings(cache_dir=tmp_path, preload=False)
    demo = configure_queue(build_app(settings, ModelManager(settings)), settings)
    view_moves = {"stage_view", "move_layer_or_head", "show_row", "show_step"}
    triggered = [fn for fn in demo.fns.values() if fn.targets and fn.name in view_moves]  # not a .then follow-up
    assert {fn.name for fn in triggered} == view_moves
    assert {fn.name for fn in triggered if fn.queue is False} == (set() if zerogpu else view_moves)
    queued = {fn.name for fn in demo.fns.values() if fn.queue is not False}
    assert {"raw_numbers", "sweep_view", "after_layer_move", "after_head_move", "next_token", "show_attention"} <= queued


def test_limits_module_documents_itself():
    import doctest

    assert doctest.testmod(limits).failed == 0


def test_messages_about_a_bad_value_show_only_a_short_piece_of_it():
    """Issue 24, sibling of #10: messages echoed what was sent, whole (a text input may hold 1,000,000 characters)."""
    from playground.attention.masks import build_mask
    from playground.drafts import parse_layers
    from playground.runtime.precision import resolve_precision

    long = "x" * 100_000
    attempts = [lambda: whole_number_in("k", long, 1, 5), lambda: resolve_precision(long, "cpu"),
                lambda: build_mask(long, 4), lambda: parse_layers(long, 30), lambda: parse_layers("1-" + long, 30)]
    for attempt in attempts:
        with pytest.raises((ValueError, ModelLoadError)) as raised:
            attempt()
        assert len(str(raised.value)) < 400, str(raised.value)[:120]

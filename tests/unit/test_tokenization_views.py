"""Views of the Tokenization tab: chips are escaped and capped, figures have titled axes, explained
colours and exact numbers in their hover text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np

from playground import tokenization as tok
from playground.figures import tokenization as views


def comparison_of(text, tokenizer):
    return tok.tokenize_all(text, [tok.NamedTokenizer("tiny", "Tiny BPE", tokenizer)])


def chip_titles(html: str) -> list[str]:
    return re.findall(r'<span class="pgt-t[^"]*" tabindex="0" title="([^"]*)"', html)


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data):
        self.text.append(data)


def test_chips_escape_user_text(tiny_tokenizer):
    text = '<script>alert("x")</script> & <b onclick="y">'
    result = comparison_of(text, tiny_tokenizer)
    html = views.comparison_html(result.tokenizations, result.comparison, {"bad": "<img src=x onerror=alert(1)>"})
    parsed = TagCollector()
    parsed.feed(html)
    assert parsed.tags <= {"div", "span", "b", "br", "code"}  # only our own markup, never the user's
    assert parsed.attributes <= {"class", "tabindex", "title"}
    chips = "".join(parsed.text)
    assert "<script>" in chips.replace("·", " ") and "<img src=x onerror=alert(1)>" in chips


def test_chip_tooltips_carry_id_bytes_and_span(tiny_tokenizer):
    text = "Hi there\n🤗"
    result = comparison_of(text, tiny_tokenizer)
    tiny = result.tokenizations[0]
    titles = chip_titles(views.chips_html(tiny))
    assert len(titles) == len(tiny)
    for index, title in enumerate(titles):
        assert f"id {tiny.ids[index]}" in title
        assert f"characters {tiny.starts[index]}–{tiny.ends[index]}" in title
        assert " ".join(f"{value:02X}" for value in tiny.bytes_of(index)) in title
    assert "↵" in views.chips_html(tiny)  # the newline made visible


def test_long_text_chips_are_capped_with_a_note(tiny_tokenizer):
    text = "Paris is the capital of France. " * 4000  # 128k characters
    result = comparison_of(text, tiny_tokenizer)
    html = views.comparison_html(result.tokenizations, result.comparison, {})
    assert "128,000 characters" in html and f"first {views.CHIP_CHAR_LIMIT:,}" in html
    shown = html.count('tabindex="0"')
    expected = sum(item.tokens_starting_before(views.CHIP_CHAR_LIMIT) for item in result.tokenizations)
    assert shown == expected < 3000
    assert len(html) < 1_000_000


def test_empty_text_is_a_friendly_empty_state():
    result = tok.tokenize_all("", [], include_bytes=False)  # what the tab does for an empty text
    assert "Type or paste some text" in views.comparison_html(result.tokenizations, result.comparison, {})
    figure = views.alignment_figure(result.tokenizations, result.comparison)
    assert "Type some text" in figure.layout.annotations[0].text
    assert views.counts_rows(result) == []


def test_lossy_gaps_are_shown(tiny_tokenizer):
    text = "a  b"
    wordlike = tok.Tokenization(name="w", label="w", text=text, ids=(1, 2), pieces=("a", "b"),
                                starts=np.array([0, 3]), ends=np.array([1, 4]),
                                special=frozenset(), lossless=False, counts=tok.make_counts(text, 2, None))
    assert '<span class="pgt-gap">··</span>' in views.chips_html(wordlike)


def test_alignment_figure(tiny_tokenizer):
    text = "Tokens attend to earlier tokens. " * 10
    result = tok.tokenize_all(text, [tok.NamedTokenizer("tiny", "Tiny BPE", tiny_tokenizer)])
    figure = views.alignment_figure(result.tokenizations, result.comparison)
    assert figure.layout.xaxis.title.text and figure.layout.yaxis.title.text
    assert figure.layout.xaxis.range == (0, views.ALIGNMENT_CHAR_LIMIT)
    assert all(trace.name for trace in figure.data)  # every colour is in the legend
    bars = sum(len(trace.x) for trace in figure.data)
    expected = sum(int(((item.starts < views.ALIGNMENT_CHAR_LIMIT) & (item.ends > item.starts)).sum())
                   for item in result.tokenizations)
    assert bars == expected
    hover = " ".join(text for trace in figure.data for text in trace.hovertext)
    assert f"id {result.tokenizations[0].ids[0]}" in hover and "characters 0–" in hover
    assert figure.layout.uniformtext.minsize >= 12


def test_counts_rows(tiny_tokenizer):
    result = tok.tokenize_all("one two", [tok.NamedTokenizer("tiny", "Tiny BPE", tiny_tokenizer, 100)])
    tiny_row, bytes_row = views.counts_rows(result)
    assert tiny_row[:4] == ["Tiny BPE", result.tokenizations[0].counts.tokens, 7, 2]
    assert tiny_row[6].endswith("of 100") and bytes_row[6] == "—"
    assert len(tiny_row) == len(views.COUNT_HEADERS)


def test_bpe_views():
    training = tok.train_bpe("the cat sat on the mat " * 5, "the cat", 20)
    figure = views.bpe_curve_figure(training, 3)
    assert figure.layout.xaxis.title.text and figure.layout.yaxis.title.text
    assert list(figure.data[0].y) == list(training.tokens_per_step)
    assert figure.data[1].x == (training.vocab_size_at(3),) and figure.data[1].y == (training.tokens_per_step[3],)
    html = views.bpe_step_html(training, training.first_visible_step())
    assert f"({training.merges[training.first_visible_step() - 1].count:,} times" in html
    assert "pgt-new" in html
    assert len(views.merge_rows(training)) == len(training.merges)
    assert "No merges" in views.bpe_curve_figure(None, 0).layout.annotations[0].text


def test_chat_html_marks_roles(tiny_tokenizer):
    view = tok.chat_template_view(tiny_tokenizer, [{"role": "user", "content": "hello"}])
    html = views.chat_html(view)
    assert html.count("pgt-special") >= view.role_count("special")
    assert "pgt-content" in html and "pgt-template" in html


def test_a_character_split_into_byte_tokens_is_drawn_as_itself_before_them(tiny_tokenizer):
    text = "Paris 🤗 naïve!"
    tiny = comparison_of(text, tiny_tokenizer).tokenizations[0]
    html = views.chips_html(tiny)
    groups = re.findall(r'<span class="pgt-split" title="[^"]*"><span class="pgt-char">([^<]*)</span>((?:<span class="pgt-t'
                        r'[^>]*>[^<]*</span>)+)</span>', html)
    assert [character for character, _ in groups] == [split.char for split in tiny.split_characters()] == ["🤗", "ï"]
    emoji_chips = re.findall(r'<span class="pgt-t[^>]*>([^<]*)</span>', groups[0][1])
    assert emoji_chips == ["&lt;F0&gt;", "&lt;9F&gt;", "&lt;A4&gt;", "&lt;97&gt;"]  # its four byte tokens follow it
    assert html.count("<span") == html.count("</span>")
    assert "pgt-split" not in views.chips_html(comparison_of("plain text", tiny_tokenizer).tokenizations[0])

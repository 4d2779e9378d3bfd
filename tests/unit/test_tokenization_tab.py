"""The Tokenization tab's handlers, called through the built tab (they are closures): limits on what a script can
ask for (issue 24 #5, #10) and messages that never echo unbounded input."""

from __future__ import annotations

import gradio as gr
import pytest

from playground.limits import LIMITS, PUBLIC_LIMITS
from playground.ui.tokenization_tab import create_tokenization_tab


def handlers(ctx):
    with gr.Blocks() as demo:
        create_tokenization_tab(ctx)
    return {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name}


@pytest.fixture(scope="module")
def api(tiny_context):
    return handlers(tiny_context)


def test_tokenize_full_refuses_text_over_its_own_limit(api, stub_context, tiny_loaded):
    """1M characters gave 42 MB of JSON after 20-100 s; the full token lists are bounded by their own limit."""
    assert LIMITS.tokenize_full_chars < LIMITS.text_chars and PUBLIC_LIMITS.tokenize_full_chars < LIMITS.tokenize_full_chars
    full = api["tokenize_full"]
    assert full("hello " * 10, ["model"], "", False)["tokenizers"]
    with pytest.raises(gr.Error, match=f"tokenize_full.*{LIMITS.tokenize_full_chars + 1:,} characters.*"
                                       f"at most {LIMITS.tokenize_full_chars:,}"):
        full("x" * (LIMITS.tokenize_full_chars + 1), ["model"], "", False)
    public = handlers(stub_context(tiny_loaded, public=True))["tokenize_full"]
    with pytest.raises(gr.Error, match=f"at most {PUBLIC_LIMITS.tokenize_full_chars:,}"):
        public("x" * (PUBLIC_LIMITS.tokenize_full_chars + 1), ["model"], "", False)


def test_chat_template_counts_the_text_inside_messages(api):
    rows = [["user", "x" * (LIMITS.text_chars // 2)], ["assistant", "y" * (LIMITS.text_chars // 2 + 1)]]
    with pytest.raises(gr.Error, match=r"Input 1 \(rows\) has 1,000,0\d\d characters in all"):
        api["chat_template"](rows, True)


def test_messages_never_echo_unbounded_input(api):
    with pytest.raises(gr.Error) as raised:
        api["chat_template"]([["r" * 500_000, "hi"]], True)
    assert len(str(raised.value)) < 300 and "role must be one of" in str(raised.value)
    with pytest.raises(gr.Error) as raised:
        api["estimate_cost"]([["a", "9" * 500_000 + "x", 1]], 1, 1, 1)
    assert len(str(raised.value)) < 300 and "input price must be a number" in str(raised.value)


def test_estimate_cost_caps_row_names(api):
    _, payload = api["estimate_cost"]([["n" * 500_000, 1, 2]], 10, 10, 1)
    name = payload["estimates"][0]["name"]
    assert len(name) <= LIMITS.name_chars + 1 and name.startswith("nnn")


def test_every_key_typed_updates_the_tokens_and_the_bpe_explorer(tiny_context):
    """The text box's `change` (each key, a paste, a picked example; gradio fires no `input` on a paste) drives both
    views, newest edit wins (always_last); the BPE explorer shows the typed text's bytes, not the default example's,
    and marks itself out of date for a text too long to redraw per key."""
    from playground.ui import tokenization_tab

    with gr.Blocks() as demo:
        tab = create_tokenization_tab(tiny_context)
    typed = [fn for fn in demo.fns.values() if (tab["text"]._id, "change") in [tuple(t) for t in fn.targets]]
    assert {fn.api_name for fn in typed} == {"tokenize", "bpe_follow"}
    assert all(fn.trigger_mode == "always_last" for fn in typed)
    follow = next(fn for fn in typed if fn.api_name == "bpe_follow").fn
    summary, *_ = follow("héllo", "corpus", 50)
    assert "Your text: 6 bytes →" in summary  # "é" is two bytes
    long_text = "x" * (tokenization_tab.BPE_LIVE_CHARS + 1)
    summary, *rest = follow(long_text, "corpus", 50)
    assert "still shows the previous text" in summary and "Train BPE" in summary
    assert all(isinstance(value, type(gr.skip())) for value in rest)

"""Tokenization: tokenize_text ids == tokenizer(), lossless round trip, byte view, MiniLM, chat template, speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.common import interleaved, median
from harness import Run, Section
from playground import tokenization as tok
from playground.config import ASSETS
from playground.runtime.tokenizers import load_tokenizer

pytestmark = pytest.mark.device


def test_tokenization(run: Run, section: Section) -> None:
    loaded = run.model()
    tokenizer = loaded.tokenizer
    examples = json.loads((ASSETS / "tokenization" / "examples.json").read_text(encoding="utf-8"))
    text = "\n".join(examples.values())
    result = tok.tokenize_text(text, tokenizer, "model", context_length=loaded.context_length)
    direct = tokenizer(text, add_special_tokens=False)["input_ids"]
    section.metric("text", f"{len(text)} characters ({len(examples)} shipped examples), {len(result)} tokens")
    section.check("ids equal tokenizer(text)", list(result.ids) == list(direct), len(result.ids))
    section.check("decode(ids) == text (round trip)", tokenizer.decode(list(result.ids)) == text)
    section.check("lossless byte spans", result.lossless and result.byte_bounds is not None
                  and int(result.byte_bounds[-1]) == len(text.encode("utf-8")), result.lossless)
    section.check("spans in order and cover the text", bool(np.all(np.diff(result.starts) >= 0))
                  and int(result.ends.max()) == len(text))
    view = tok.tokenize_bytes(text)
    section.check("byte view: one token per UTF-8 byte", len(view) == len(text.encode("utf-8")), len(view))
    minilm = load_tokenizer("minilm", run.settings)
    comparison = tok.tokenize_all(text, [tok.NamedTokenizer("model", "model", tokenizer, loaded.context_length),
                                         tok.NamedTokenizer("minilm", "MiniLM", minilm)])
    payload = comparison.payload(5000, 2000)
    section.check("comparison JSON (model + MiniLM + bytes)", len(comparison.tokenizations) == 3
                  and len(json.dumps(payload)) > 0, {t.name: len(t) for t in comparison.tokenizations})
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi there!"}]
    chat = tok.chat_template_view(tokenizer, messages)
    templated = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    section.check("chat template view ids == apply_chat_template", list(chat.tokens.ids) == list(templated),
                  f"{len(chat.tokens)} tokens, {chat.overhead_tokens} template overhead")
    big = (text * (run.sizes.tokenization_chars // len(text) + 1))[: run.sizes.tokenization_chars]
    ours, baseline = interleaved(lambda: tok.tokenize_text(big, tokenizer, "model"),
                                 lambda: tokenizer(big, add_special_tokens=False)["input_ids"], run.sizes.repeats)
    section.metric(f"tokenize_text {len(big):,} chars", len(big) / median(ours) / 1e6, "M chars/s",
                   f"tokenizer() alone {len(big) / median(baseline) / 1e6:.2f} M chars/s")

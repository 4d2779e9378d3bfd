"""Tokenization benchmark: the Tokenization tab's `tokenize` endpoint on 100,000 characters vs calling
the fast tokenizer(s) directly on the same text, same run. Target: ratio <= 3 (rendering data included).

Rows:
- handler, loaded model only: what the endpoint computes (tokens, exact spans, counts, boundary
  comparison, chips HTML, alignment figure serialised as gradio sends it, the JSON) vs
  `tokenizer(text)["input_ids"]`;
- handler, the default set (loaded model + MiniLM WordPiece + raw bytes) vs both tokenizers called
  directly plus `text.encode()`;
- over HTTP through gradio_client (the launched app, its queue and JSON transport) vs the direct call:
  what a script sees; the transport is gradio's, reported for honesty, not a target;
- the BPE explorer: train_bpe (tokenizers' trainer + our Python replay + per-step segmentation) vs the
  trainer alone, 300 merges on 200,000 characters.

The two sides alternate after a warm-up (benchmarks.common.interleaved); the table shows medians.
`python -m benchmarks.tokenization [--repeats N]` prints the table.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.common import interleaved, median, print_table, row

TEXT_CHARS = 100_000


def benchmark_text() -> str:
    """100k characters of real, mixed text: Python's docs (English prose and code) and our examples
    (non-Latin scripts, emoji, numbers), interleaved."""
    from playground import tokenization as tok
    from playground.ui.tokenization_tab import load_examples

    corpus = tok.example_corpus()
    examples = "\n".join(load_examples().values())
    pieces, position = [], 0
    while sum(map(len, pieces)) < TEXT_CHARS:
        pieces += [corpus[position:position + 4000], examples]
        position += 4000
    return "".join(pieces)[:TEXT_CHARS]


def _handler(ctx: Any, text: str, names: list[str]) -> Any:
    from playground.ui.tokenization_tab import tokenize_view

    def call() -> None:
        _counts, _html, figure, payload, _ = tokenize_view(ctx, text, names, "", False)
        figure.to_json()  # gradio serialises the figure and the JSON before sending them
        json.dumps(payload)

    return call


def _launch(ctx: Any) -> tuple[Any, Any]:
    from gradio_client import Client

    from playground.ui import build_app, close_app, launch_options

    demo = build_app(ctx.settings, ctx.models)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                            **launch_options())
    return demo, Client(url, verbose=False)


def run(repeats: int = 5) -> list[dict[str, Any]]:
    from transformers.utils import logging as hf_logging

    from playground import tokenization as tok
    from playground.config import load_settings
    from playground.runtime import ModelManager
    from playground.runtime.tokenizers import load_tokenizer
    from playground.ui.context import AppContext

    hf_logging.disable_progress_bar()
    settings = load_settings(["--offline"])
    ctx = AppContext(settings, ModelManager(settings))
    loaded = ctx.models.load()  # the embedded default model, as the app loads it
    text = benchmark_text()
    minilm = load_tokenizer("minilm", ctx.settings)
    conditions = (f"{TEXT_CHARS:,} characters (Python docs + non-Latin, emoji, numbers), SmolLM2 byte-level BPE "
                  f"({len(loaded.tokenizer(text)['input_ids']):,} tokens), medians of {repeats} after a warm-up")
    rows = []

    ours, base = interleaved(_handler(ctx, text, ["model"]), lambda: loaded.tokenizer(text)["input_ids"], repeats)
    rows.append(row("tokenize 100k chars, loaded model: handler vs tokenizer()", median(ours), median(base), "s",
                    conditions, target="<= 3x"))

    def direct_default_set() -> None:
        loaded.tokenizer(text)["input_ids"]
        minilm(text)["input_ids"]
        text.encode("utf-8")

    ours, base = interleaved(_handler(ctx, text, ["model", "minilm", "bytes"]), direct_default_set, repeats)
    rows.append(row("tokenize 100k chars, model+MiniLM+bytes: handler vs direct", median(ours), median(base), "s",
                    conditions, target="<= 3x"))

    demo, client = _launch(ctx)
    try:
        ours, base = interleaved(lambda: client.predict(text, ["model"], "", False, api_name="/tokenize"),
                                 lambda: loaded.tokenizer(text)["input_ids"], repeats)
        rows.append(row("tokenize 100k chars over HTTP (gradio_client) vs tokenizer()", median(ours), median(base),
                        "s", conditions + "; includes gradio's queue and transport"))
    finally:
        close_app(demo)

    corpus = tok.example_corpus()[:tok.BPE_CORPUS_CHAR_LIMIT]
    sample = text[:2000]
    ours, base = interleaved(lambda: tok.train_bpe(corpus, sample, 300), lambda: _trainer_only(corpus, 300),
                             max(2, repeats // 2))
    rows.append(row("BPE explorer, 300 merges: train_bpe vs tokenizers' trainer alone", median(ours), median(base),
                    "s", f"{len(corpus):,} training characters, 2,000-character text segmented at every step"))
    return rows


def _trainer_only(corpus: str, merges: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + merges, initial_alphabet=alphabet, show_progress=False)
    tokenizer.train_from_iterator([corpus], trainer)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    print_table(run(parser.parse_args().repeats))

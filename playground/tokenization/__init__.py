"""Tokenization, computed: text -> tokens with exact spans, tokenizers compared, the chat template's
cost, a BPE training replay, and price estimates. No gradio here (tests/unit/test_layering.py).

Table of contents (one module per concept; each imports only the ones above it):

- errors.py         TokenizationError, the one error for bad input
- text_bytes.py     text <-> UTF-8 bytes: byte offsets, byte runs -> character spans, GPT-2's byte alphabet
- display.py        a token drawn for display (visible whitespace, partial bytes as hex)
- table.py          text -> token table (`tokenize_text`, `tokenize_bytes`): ids, pieces, exact spans, counts
- comparison.py     several tokenizers on one text: shared and differing boundaries (`tokenize_all`)
- chat_template.py  the chat template's rendered prompt and the tokens it adds (`chat_template_view`)
- bpe.py            byte-level BPE trained, its merges replayed step by step (`train_bpe`, `segmentation_at`)
- costs.py          tokens x price per million (`estimate_costs`)

Every public name is re-exported here, so `from playground import tokenization` and
`from playground.tokenization import X` keep working.

    >>> tokenize_bytes("hé").spans()       # é is two UTF-8 bytes; its second byte gets an empty span
    [(0, 1), (1, 2), (2, 2)]
"""

from playground.tokenization.bpe import (
    BPE_CORPUS_CHAR_LIMIT,
    BPE_MAX_MERGES,
    BPE_TEXT_CHAR_LIMIT,
    BpeMerge,
    BpeTraining,
    _byte_level_words,  # the BPE tests check the trainer's words against it
    example_corpus,
    piece_to_bytes,
    replay_bpe_training,
    segment_word,
    segmentation_at,
    train_bpe,
)
from playground.tokenization.chat_template import CHAT_ROLES, ChatTemplateView, chat_template_view, clean_messages
from playground.tokenization.comparison import (
    Comparison,
    NamedTokenizer,
    TokenizerComparison,
    compare_tokenizations,
    snapped_positions,
    tokenize_all,
)
from playground.tokenization.costs import EXAMPLE_PRICES, CostEstimate, Price, costs_payload, estimate_costs, parse_prices
from playground.tokenization.display import VISIBLE, readable_bytes, token_label, visible, visible_token
from playground.tokenization.errors import TokenizationError
from playground.tokenization.table import (
    BYTES_LABEL,
    BYTES_NAME,
    SplitCharacter,
    TokenCounts,
    Tokenization,
    backend_for,
    count_words,
    make_counts,
    tokenize_bytes,
    tokenize_text,
    tokenizer_kind,
)
from playground.tokenization.text_bytes import (
    BYTE_LEVEL_DECODER,
    byte_boundaries,
    char_byte_starts,
    spans_from_byte_boundaries,
    utf8_bytes,
)

__all__ = [
    "BPE_CORPUS_CHAR_LIMIT", "BPE_MAX_MERGES", "BPE_TEXT_CHAR_LIMIT", "BpeMerge", "BpeTraining", "example_corpus",
    "piece_to_bytes", "replay_bpe_training", "segment_word", "segmentation_at", "train_bpe",
    "CHAT_ROLES", "ChatTemplateView", "chat_template_view", "clean_messages",
    "Comparison", "NamedTokenizer", "TokenizerComparison", "compare_tokenizations", "snapped_positions",
    "tokenize_all",
    "EXAMPLE_PRICES", "CostEstimate", "Price", "costs_payload", "estimate_costs", "parse_prices",
    "VISIBLE", "readable_bytes", "token_label", "visible", "visible_token",
    "TokenizationError",
    "BYTES_LABEL", "BYTES_NAME", "SplitCharacter", "TokenCounts", "Tokenization", "backend_for", "count_words", "make_counts",
    "tokenize_bytes", "tokenize_text", "tokenizer_kind",
    "BYTE_LEVEL_DECODER", "byte_boundaries", "char_byte_starts", "spans_from_byte_boundaries", "utf8_bytes",
]

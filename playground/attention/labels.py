"""Tokens as labels: each token decoded on its own and drawn like every other tab draws a token
(playground.tokenization's `visible_token`), and a word-piece fallback for when no model is loaded.

    >>> word_pieces("Hi, you")
    ['Hi', ',', '·you']
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

from playground.tokenization.display import VISIBLE, visible_token

# The glyphs visible_token draws for whitespace: not part of what a label says (the middle dot drawn for a
# space is itself punctuation to unicodedata, so it must go before asking).
WHITESPACE_GLYPHS = str.maketrans("", "", "".join(VISIBLE.values()))


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own (so byte-level 'Ġ' markers become real spaces), whitespace made visible."""
    return [visible_token(tokenizer.decode([int(token_id)])) for token_id in ids]


def word_pieces(text: str) -> list[str]:
    """Fallback 'tokenizer' when no model is loaded: words with their leading space, and punctuation."""
    return [visible_token(piece) for piece in re.findall(r"\s*\w+|\s*[^\w\s]|\s+", text)]


def is_punctuation(label: str) -> bool:
    """Is the label (as visible_token drew it) only punctuation, once its whitespace glyphs are removed?"""
    stripped = label.translate(WHITESPACE_GLYPHS).strip()
    return bool(stripped) and all(unicodedata.category(char).startswith("P") for char in stripped)

"""Tokens as labels: each token decoded on its own with its whitespace made visible, and a word-piece
fallback for when no model is loaded.

    >>> word_pieces("Hi, you")
    ['Hi', ',', '␣you']
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence


def visible_token(text: str) -> str:
    """Make whitespace visible in a token label: ' the' -> '␣the', '\\n' -> '↵'."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own (so byte-level 'Ġ' markers become real spaces), whitespace made visible."""
    return [visible_token(tokenizer.decode([int(token_id)])) for token_id in ids]


def word_pieces(text: str) -> list[str]:
    """Fallback 'tokenizer' when no model is loaded: words with their leading space, and punctuation."""
    return [visible_token(piece) for piece in re.findall(r"\s*\w+|\s*[^\w\s]|\s+", text)]


def is_punctuation(label: str) -> bool:
    stripped = label.replace("␣", "").replace("↵", "").replace("⇥", "").strip()
    return bool(stripped) and all(unicodedata.category(char).startswith("P") for char in stripped)

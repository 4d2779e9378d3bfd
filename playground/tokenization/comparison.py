"""Several tokenizers on the same text: where their token boundaries agree and which tokens only one
of them makes (`compare_tokenizations`, `tokenize_all`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from playground.tokenization.errors import TokenizationError
from playground.tokenization.table import BYTES_NAME, Tokenization, tokenize_bytes, tokenize_text


def snapped_positions(text: str) -> np.ndarray:
    """For each position 0..len(text), the first non-whitespace position at or after it: [len + 1].

    Boundaries are compared after this snap, so ' world' (BPE keeps the space) and 'world' (WordPiece
    drops it) start at the same place."""
    code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    is_space = np.isin(code_points, _WHITESPACE_CODE_POINTS)
    positions = np.arange(len(text) + 1, dtype=np.int64)
    candidate = np.where(np.concatenate([is_space, [False]]), len(text), positions)
    # A running minimum from the right gives the next non-space position.
    return np.minimum.accumulate(candidate[::-1])[::-1]


_WHITESPACE_CODE_POINTS = np.array([code for code in range(0x3001) if chr(code).isspace()], dtype=np.uint32)


@dataclass(frozen=True)
class Comparison:
    """Where tokenizers split the same text differently.

    differing[name]: indices of that tokenizer's tokens whose start boundary (snapped past whitespace)
    is missing from at least one other real tokenizer. The raw byte view is shown but never used as a
    reference: it has a boundary everywhere.
    """

    text: str
    names: tuple[str, ...]
    differing: dict[str, frozenset[int]]
    shared_boundaries: int  # boundaries every compared tokenizer has

    def payload(self, token_limit: int | None = None) -> dict[str, Any]:
        limit = token_limit if token_limit is not None else len(self.text) + 1_000_000
        return {"differing_token_indices": {name: sorted(index for index in indices if index < limit)
                                            for name, indices in self.differing.items()},
                "differing_counts": {name: len(indices) for name, indices in self.differing.items()},
                "shared_boundaries": self.shared_boundaries}


def compare_tokenizations(tokenizations: Sequence[Tokenization]) -> Comparison:
    if not tokenizations:
        return Comparison("", (), {}, 0)
    text = tokenizations[0].text
    if any(item.text != text for item in tokenizations):
        raise TokenizationError("Tokenizations compared must be of the same text.")
    snap = snapped_positions(text)
    starts = {item.name: item.starts for item in tokenizations}
    nonempty = {item.name: item.ends > item.starts for item in tokenizations}
    boundaries = {name: set(snap[starts[name][nonempty[name]]].tolist()) for name in starts}
    references = [item.name for item in tokenizations if item.name != BYTES_NAME]
    differing: dict[str, frozenset[int]] = {}
    for item in tokenizations:
        others = [boundaries[name] for name in references if name != item.name]
        if item.name == BYTES_NAME or not others:
            differing[item.name] = frozenset()
            continue
        shared = np.fromiter(set.intersection(*others), dtype=np.int64)
        lacking = nonempty[item.name] & ~np.isin(snap[starts[item.name]], shared)
        differing[item.name] = frozenset(np.flatnonzero(lacking).tolist())
    shared_all = set.intersection(*(boundaries[name] for name in references)) if references else set()
    return Comparison(text, tuple(item.name for item in tokenizations), differing, len(shared_all))


@dataclass(frozen=True)
class NamedTokenizer:
    name: str  # what the API calls it: "model", "minilm", a hub id ...
    label: str  # what the page shows
    tokenizer: Any  # a transformers fast tokenizer
    context_length: int | None = None  # the model's window, for "% of context"


@dataclass(frozen=True)
class TokenizerComparison:
    """Several tokenizers on one text: their tokens, where they disagree, and who could not load."""

    text: str
    tokenizations: tuple[Tokenization, ...]
    comparison: Comparison
    errors: dict[str, str]  # name -> why it is missing

    def payload(self, chip_char_limit: int, token_limit: int | None = None) -> dict[str, Any]:
        return {
            "text_chars": len(self.text),
            "chip_view_chars": min(len(self.text), chip_char_limit),
            "chip_view_truncated": len(self.text) > chip_char_limit,
            "per_token_limit": token_limit,
            "tokenizers": {item.name: item.payload(token_limit) for item in self.tokenizations},
            "comparison": self.comparison.payload(token_limit),
            "errors": dict(self.errors),
        }


def tokenize_all(text: str, tokenizers: Sequence[NamedTokenizer], include_bytes: bool = True,
                 add_special_tokens: bool = False, errors: dict[str, str] | None = None,
                 tokenized: Sequence[Tokenization] = ()) -> TokenizerComparison:
    """Tokenize one text with every tokenizer (and the raw bytes), then compare their boundaries.
    tokenized: tables made elsewhere for the same text (a serving engine's /tokenize), shown first."""
    tokenizations = list(tokenized) + [
        tokenize_text(text, item.tokenizer, item.name, item.label, item.context_length, add_special_tokens)
        for item in tokenizers]
    if include_bytes:
        tokenizations.append(tokenize_bytes(text))
    return TokenizerComparison(text, tuple(tokenizations), compare_tokenizations(tokenizations), dict(errors or {}))

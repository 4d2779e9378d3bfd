"""The Tokenization tab's table for the engine's own tokenizer (its /tokenize): the same Tokenization the
local tokenizers give, so the chips, counts and alignment views take it unchanged.

The engine returns ids and the tokenizer's strings ('Ġworld', '▁the', '<0xE2>'); each string's exact bytes
come from the byte-level or SentencePiece rules the local tokenizers use. When they rebuild the text
exactly, the spans tile it (lossless); otherwise each token is placed after the previous one by
searching its text (spans may leave gaps), and the table says it is not lossless.
"""

from __future__ import annotations

import numpy as np

from playground.engine.source import EngineTokenSource
from playground.tokenization import Tokenization
from playground.tokenization.table import _byte_level_piece, _sentencepiece_piece, make_counts
from playground.tokenization.text_bytes import byte_boundaries, spans_from_byte_boundaries, utf8_bytes

ENGINE_NAME = "engine"


def _exact_bytes(pieces: list[str], text_bytes: bytes) -> list[bytes] | None:
    """Each piece's bytes under the first rule that rebuilds the text exactly, else None."""
    for rule in (_byte_level_piece, _sentencepiece_piece):
        decoded = [rule(piece) for piece in pieces]
        if all(data is not None for data in decoded) and b"".join(decoded) == text_bytes:  # type: ignore[arg-type]
            return decoded  # type: ignore[return-value]
    return None


def _searched_spans(text: str, pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A lossy tokenizer: each piece (its word-piece markers dropped) found after the previous one; a piece not
    found gets an empty span where the previous ended."""
    starts, ends, cursor = [], [], 0
    for piece in pieces:
        needle = piece.lstrip("Ġ▁#").strip()
        found = text.find(needle, cursor) if needle else -1
        start, end = (found, found + len(needle)) if found >= 0 else (cursor, cursor)
        starts.append(start)
        ends.append(end)
        cursor = end
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def engine_tokenization(source: EngineTokenSource, text: str, add_special_tokens: bool = False) -> Tokenization:
    """`text` through the engine's /tokenize, as a Tokenization (ids exactly the engine's)."""
    ids, pieces = source.client.tokenize(text, add_special_tokens=add_special_tokens)
    if pieces is None:  # an engine that does not return the strings: ask for each token's text
        pieces = [source.tokenizer.token_text(token_id) for token_id in ids]
    text_bytes = utf8_bytes(text)
    exact = _exact_bytes(pieces, text_bytes)
    bounds = None if exact is None else byte_boundaries([len(data) for data in exact])
    starts, ends = spans_from_byte_boundaries(text, bounds) if bounds is not None else _searched_spans(text, pieces)
    label = f"Engine: {source.client.model()} (its /tokenize)"
    return Tokenization(name=ENGINE_NAME, label=label, text=text, ids=tuple(ids), pieces=tuple(pieces),
                        starts=starts, ends=ends, special=frozenset(), lossless=bounds is not None,
                        counts=make_counts(text, len(ids), None, len(text_bytes)),
                        byte_bounds=bounds, utf8=text_bytes)

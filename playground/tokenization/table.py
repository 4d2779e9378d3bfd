"""Text -> token table: ids, pieces and each token's exact character span, for any tokenizer (fast
Hugging Face tokenizers through their Rust backend, and raw UTF-8 bytes), plus the counts beside it.

A token's *span* is the half-open character range [start, end) of the input it stands for. For a
lossless tokenizer (byte-level BPE, SentencePiece with byte fallback, raw UTF-8 bytes) we know each
token's exact bytes, so the spans tile the text with no gap and no overlap; a character split over
several tokens (an emoji is 4 bytes) belongs to the token holding its first byte, and the tokens
holding its other bytes get an empty span. For a lossy tokenizer (WordPiece lower-cases, drops
whitespace) the spans come from the tokenizer's own offsets; dropped text is a gap.

    >>> tokenize_bytes("hé").pieces       # é is two UTF-8 bytes
    ('h', '<C3>', '<A9>')
    >>> tokenize_bytes("hé").spans()       # the second byte of é gets an empty span
    [(0, 1), (1, 2), (2, 2)]
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from playground.tokenization.display import readable_bytes, visible
from playground.tokenization.errors import TokenizationError
from playground.tokenization.text_bytes import (
    BYTE_LEVEL_DECODER,
    byte_boundaries,
    char_byte_starts,
    spans_from_byte_boundaries,
    utf8_bytes,
)

BYTES_NAME = "bytes"
BYTES_LABEL = "UTF-8 bytes (no tokenizer)"
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_BYTE_PIECES = tuple(chr(value) if 0x21 <= value <= 0x7E else f"<{value:02X}>" for value in range(256))


@dataclass(frozen=True)
class TokenCounts:
    tokens: int
    characters: int
    words: int  # whitespace-separated runs (scripts without spaces count as few words)
    utf8_bytes: int
    chars_per_token: float
    words_per_token: float
    context_length: int | None  # the model's context window in tokens, when known
    context_percent: float | None  # tokens / context_length * 100


def count_words(text: str) -> int:
    return len(text.split())


def make_counts(text: str, tokens: int, context_length: int | None, n_bytes: int | None = None) -> TokenCounts:
    words = count_words(text)
    context = context_length if context_length and context_length > 0 else None
    return TokenCounts(
        tokens=tokens,
        characters=len(text),
        words=words,
        utf8_bytes=len(utf8_bytes(text)) if n_bytes is None else n_bytes,
        chars_per_token=len(text) / tokens if tokens else 0.0,
        words_per_token=words / tokens if tokens else 0.0,
        context_length=context,
        context_percent=100.0 * tokens / context if context else None,
    )


@dataclass(frozen=True)
class SplitCharacter:
    """A character whose UTF-8 bytes fall in several tokens (an emoji over 3 or 4 byte tokens): the chips draw it
    once, as itself, beside tokens first_token..last_token (inclusive), which show only its bytes."""

    char: str
    position: int  # its index in the text
    first_token: int  # the token holding its first byte (the character's span is on this one)
    last_token: int  # the token holding its last byte


@dataclass(frozen=True, eq=False)
class Tokenization:
    """One tokenizer's view of one text. Token i has id ids[i], vocabulary string pieces[i] and the
    character span [starts[i], ends[i]); the spans never overlap and never go backwards.

    starts/ends are int64 arrays [tokens] (a 100k-character text has ~25k tokens per tokenizer and
    100k in the byte view: arrays keep the comparisons vectorised)."""

    name: str
    label: str
    text: str
    ids: tuple[int, ...]
    pieces: tuple[str, ...]  # the tokenizer's own strings: 'Ġworld', '##ing', '▁the', '<0xE2>'
    starts: np.ndarray
    ends: np.ndarray
    special: frozenset[int]  # indices of special / added-control tokens (<|im_start|>, [CLS], [UNK])
    lossless: bool  # the tokens' bytes concatenate to exactly the text's UTF-8 bytes
    counts: TokenCounts
    # Lossless tokenizers: token i is exactly text_utf8[byte_bounds[i]:byte_bounds[i + 1]]  [tokens + 1]
    byte_bounds: np.ndarray | None = field(default=None, repr=False)
    utf8: bytes = field(default=b"", repr=False)  # the text's UTF-8 encoding

    def __post_init__(self) -> None:
        for array in (self.starts, self.ends, self.byte_bounds):
            if array is not None:
                array.setflags(write=False)  # frozen like the rest of the dataclass

    def __len__(self) -> int:
        return len(self.ids)

    def spans(self) -> list[tuple[int, int]]:
        return list(zip(self.starts.tolist(), self.ends.tolist()))

    def bytes_of(self, index: int) -> bytes:
        """The exact bytes of a token (lossless tokenizers), else the UTF-8 of the text it covers."""
        if self.byte_bounds is not None:
            return self.utf8[self.byte_bounds[index]:self.byte_bounds[index + 1]]
        return self.text[self.starts[index]:self.ends[index]].encode("utf-8")

    def shown_text(self, index: int) -> str:
        """What a token chip shows: its exact text (whitespace visible) when lossless, else its piece."""
        if self.byte_bounds is not None:
            return readable_bytes(self.bytes_of(index))
        return visible(self.pieces[index])

    def split_characters(self) -> tuple[SplitCharacter, ...]:
        """The characters no single token holds, each with the run of tokens its bytes are in (lossless
        tokenizers; a lossy one's offsets give whole characters).

        >>> tokenize_bytes("a🤗").split_characters()
        (SplitCharacter(char='🤗', position=1, first_token=1, last_token=4),)
        """
        if self.byte_bounds is None or len(self) < 2:
            return ()
        char_starts = char_byte_starts(self.text)  # [chars + 1]
        inner = self.byte_bounds[1:-1]  # where one token ends and the next begins, in bytes
        # a boundary splits a character when it is not where a character starts
        position = np.searchsorted(char_starts, inner, side="right") - 1  # the character each boundary falls in
        splits = np.unique(position[char_starts[position] != inner])
        first = np.searchsorted(self.byte_bounds, char_starts[splits], side="right") - 1
        last = np.searchsorted(self.byte_bounds, char_starts[splits + 1] - 1, side="right") - 1
        return tuple(SplitCharacter(self.text[index], index, start, end)
                     for index, start, end in zip(splits.tolist(), first.tolist(), last.tolist()))

    def tokens_starting_before(self, char_limit: int) -> int:
        """How many leading tokens start before `char_limit` (the chip view shows only those)."""
        return int(np.searchsorted(self.starts, char_limit, side="left"))

    def payload(self, token_limit: int | None = None) -> dict[str, Any]:
        """Plain data for the JSON output and the API. Token i covers text[starts[i]:ends[i]] (flat
        lists: 100k [start, end] pairs would cost more to build than the tokenization itself).

        token_limit: per-token lists for the first tokens only (counts always cover every token);
        the `complete` flag says whether they were cut."""
        shown = len(self) if token_limit is None else min(len(self), token_limit)
        return {
            "label": self.label,
            "ids": list(self.ids[:shown]),
            "tokens": list(self.pieces[:shown]),
            "starts": self.starts[:shown].tolist(),
            "ends": self.ends[:shown].tolist(),
            "complete": shown == len(self),
            "special_token_indices": sorted(index for index in self.special if index < shown),
            "lossless": self.lossless,
            "counts": dataclasses.asdict(self.counts),
        }


class _Backend:
    """What we need from a transformers fast tokenizer, prepared once per tokenizer object.

    `piece_bytes(piece)` turns a vocabulary string into its exact bytes for byte-level BPE ('Ġ' is
    the space byte) and SentencePiece-with-byte-fallback ('▁' is a space, '<0xE2>' a raw byte);
    for other tokenizers it is None and spans come from the tokenizer's offsets.
    """

    def __init__(self, tokenizer: Any) -> None:
        rust = getattr(tokenizer, "backend_tokenizer", None)
        if rust is None:
            raise TokenizationError(f"{type(tokenizer).__name__} is not a fast tokenizer; offsets need one.")
        if rust.truncation is not None or rust.padding is not None:
            # tokenizer.json files may switch on truncation/padding (MiniLM pads to 128); transformers
            # turns them off per call, we use a private copy without them rather than mutate a shared one.
            from tokenizers import Tokenizer

            rust = Tokenizer.from_str(rust.to_str())
            rust.no_truncation()
            rust.no_padding()
        self.rust = rust
        added = rust.get_added_tokens_decoder()
        self.added_ids = frozenset(added)
        self.special_id_array = np.array(sorted(token_id for token_id, token in added.items() if token.special),
                                         dtype=np.int64)
        self.piece_bytes = self._piece_decoder(rust)
        self.kind = self._kind(rust)
        self.vocab_bytes = self._vocab_bytes(rust, self.added_ids) if self.piece_bytes else None

    def _kind(self, rust: Any) -> str:
        model = type(rust.model).__name__
        if model == "BPE" and self.piece_bytes is _byte_level_piece:
            return "byte-level BPE"
        if model == "BPE" and getattr(rust.model, "byte_fallback", False):
            return "SentencePiece BPE, byte fallback"
        if model == "Unigram":
            return "SentencePiece Unigram"
        return model

    @staticmethod
    def _decoder_types(rust: Any) -> list[dict[str, Any]]:
        if rust.decoder is None:
            return []
        state = json.loads(rust.decoder.__getstate__())
        return state.get("decoders", [state]) if state.get("type") == "Sequence" else [state]

    @classmethod
    def _piece_decoder(cls, rust: Any) -> Callable[[str], bytes | None] | None:
        decoders = cls._decoder_types(rust)
        types = {decoder.get("type") for decoder in decoders}
        if "ByteLevel" in types:
            return _byte_level_piece
        replaces_metaspace = any(decoder.get("type") == "Replace" and decoder.get("content") == " "
                                 for decoder in decoders)
        if ("ByteFallback" in types and replaces_metaspace) or "Metaspace" in types:
            return _sentencepiece_piece
        return None

    def _vocab_bytes(self, rust: Any, added_ids: frozenset[int]) -> list[bytes | None]:
        """Exact bytes of every vocabulary entry, indexed by id (None for added tokens). Built once:
        ~0.1 s for 49k entries, and a list lookup per token afterwards."""
        assert self.piece_bytes is not None
        table: list[bytes | None] = [None] * rust.get_vocab_size(with_added_tokens=True)
        for piece, token_id in rust.get_vocab(with_added_tokens=False).items():
            if token_id not in added_ids and token_id < len(table):
                table[token_id] = self.piece_bytes(piece)
        return table


def _byte_level_piece(piece: str) -> bytes | None:
    try:
        return bytes(BYTE_LEVEL_DECODER[char] for char in piece)
    except KeyError:  # not a byte-level string (an added token typed as plain text)
        return None


def _sentencepiece_piece(piece: str) -> bytes:
    fallback = _BYTE_FALLBACK.match(piece)
    if fallback:
        return bytes((int(fallback.group(1), 16),))
    return piece.replace("▁", " ").encode("utf-8")


_backends: weakref.WeakKeyDictionary[Any, _Backend] = weakref.WeakKeyDictionary()
_backends_lock = threading.Lock()


def backend_for(tokenizer: Any) -> _Backend:
    with _backends_lock:
        backend = _backends.get(tokenizer)
        if backend is None:
            backend = _backends[tokenizer] = _Backend(tokenizer)
        return backend


def _context_length_of(tokenizer: Any) -> int | None:
    length = getattr(tokenizer, "model_max_length", None)
    return int(length) if isinstance(length, int) and 0 < length < 10_000_000 else None


def tokenize_text(text: str, tokenizer: Any, name: str, label: str | None = None,
                  context_length: int | None = None, add_special_tokens: bool = False) -> Tokenization:
    """Tokenize `text` with a transformers fast tokenizer; ids equal `tokenizer(text)["input_ids"]`.

    context_length: the model's window for "% of context" (default: the tokenizer's
    model_max_length when it is a real number).
    """
    text_bytes = utf8_bytes(text)
    backend = backend_for(tokenizer)
    encoding = backend.rust.encode(text, add_special_tokens=add_special_tokens)
    ids, pieces, offsets = encoding.ids, encoding.tokens, encoding.offsets
    special = frozenset(np.flatnonzero(np.isin(np.asarray(ids, dtype=np.int64), backend.special_id_array)).tolist())
    token_bytes = _exact_bytes(text, text_bytes, ids, offsets, backend)
    bounds = None if token_bytes is None else byte_boundaries(list(map(len, token_bytes)))
    if bounds is not None:
        starts, ends = spans_from_byte_boundaries(text, bounds)
    else:
        starts, ends = _spans_from_offsets(offsets)
    return Tokenization(
        name=name, label=label or name, text=text, ids=tuple(ids), pieces=tuple(pieces),
        starts=starts, ends=ends, special=special,
        lossless=bounds is not None,
        counts=make_counts(text, len(ids), context_length or _context_length_of(tokenizer), len(text_bytes)),
        byte_bounds=bounds, utf8=text_bytes,
    )


def tokenizer_kind(tokenizer: Any) -> str:
    """'byte-level BPE', 'SentencePiece BPE, byte fallback', 'WordPiece', 'SentencePiece Unigram', ..."""
    return backend_for(tokenizer).kind


def _exact_bytes(text: str, text_bytes: bytes, ids: Sequence[int], offsets: Sequence[tuple[int, int]],
                 backend: _Backend) -> list[bytes] | None:
    """Each token's exact bytes, or None when they do not rebuild the text (a lossy tokenizer)."""
    table = backend.vocab_bytes
    if table is None:
        return None
    result = [table[token_id] for token_id in ids]
    for index in (index for index, data in enumerate(result) if data is None):
        # Added tokens (<|im_start|>, [CLS]) are matched on the raw text: their bytes are the text
        # they cover, or nothing when the tokenizer inserted them.
        start, end = offsets[index]
        result[index] = text[start:end].encode("utf-8")
    return result if b"".join(result) == text_bytes else None  # type: ignore[arg-type]


def _spans_from_offsets(offsets: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Offsets made monotone: an inserted token ((0, 0) after the text began) sits where the previous
    token ended, and a token sharing a character with the previous one starts after it."""
    if not offsets:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    raw = np.asarray(offsets, dtype=np.int64)  # [tokens, 2]
    ends = np.maximum.accumulate(raw[:, 1])
    previous_end = np.concatenate([[0], ends[:-1]])
    starts = np.maximum(raw[:, 0], previous_end)
    return starts, np.maximum(ends, starts)


def tokenize_bytes(text: str) -> Tokenization:
    """The raw UTF-8 byte view: one token per byte, id = the byte's value."""
    data = utf8_bytes(text)
    bounds = np.arange(len(data) + 1, dtype=np.int64)
    starts, ends = spans_from_byte_boundaries(text, bounds)
    return Tokenization(
        name=BYTES_NAME, label=BYTES_LABEL, text=text, ids=tuple(data),
        pieces=tuple(map(_BYTE_PIECES.__getitem__, data)), starts=starts, ends=ends,
        special=frozenset(), lossless=True,
        counts=make_counts(text, len(data), None, len(data)),
        byte_bounds=bounds, utf8=data,
    )

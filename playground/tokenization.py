"""Tokenization, computed: text -> tokens with exact spans, tokenizers compared, the chat template's
cost, a BPE training replay, and price estimates. No gradio here (tests/unit/test_layering.py).

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
import functools
import heapq
import json
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from playground.limits import LIMITS

# How a whitespace or control character is drawn so it can be seen.
VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍", "\u00a0": "⍽"}
BYTES_NAME = "bytes"
BYTES_LABEL = "UTF-8 bytes (no tokenizer)"
CHAT_ROLES = ("system", "user", "assistant")


class TokenizationError(ValueError):
    """Bad input for a tokenization computation; the message says what is allowed."""


# ---------------------------------------------------------------------------------------------
# Byte <-> text helpers
# ---------------------------------------------------------------------------------------------


def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: the printable character standing for each byte -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shifted)
            shifted += 1
    return {chr(char): byte for byte, char in zip(printable, chars)}


BYTE_LEVEL_DECODER = _byte_level_decoder()
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_BYTE_PIECES = tuple(chr(value) if 0x21 <= value <= 0x7E else f"<{value:02X}>" for value in range(256))


def utf8_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise TokenizationError(f"The text has a character that is not valid Unicode (an unpaired surrogate at "
                                f"position {error.start}); remove it and try again.") from error


def char_byte_starts(text: str) -> np.ndarray:
    """Byte offset where each character starts in the UTF-8 encoding, plus the total: [len(text) + 1]."""
    code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = 1 + (code_points >= 0x80).astype(np.int64) + (code_points >= 0x800) + (code_points >= 0x10000)
    starts = np.zeros(len(code_points) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return starts


def byte_boundaries(lengths: Sequence[int]) -> np.ndarray:
    """Where consecutive byte runs start, plus the total: [runs + 1]."""
    boundaries = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=boundaries[1:])
    return boundaries


def spans_from_byte_boundaries(text: str, boundaries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Character spans of consecutive byte runs. A character belongs to the run holding its first byte."""
    # The first character whose first byte is at or after each boundary: [runs + 1]
    char_index = np.searchsorted(char_byte_starts(text), boundaries, side="left")
    return char_index[:-1], char_index[1:]


def visible(text: str) -> str:
    """Whitespace and control characters made visible: ' ' -> '·', newline -> '↵', tab -> '→'."""
    return "".join(VISIBLE.get(char, f"\\x{ord(char):02x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
                   for char in text)


def readable_bytes(data: bytes) -> str:
    """The bytes as visible text; bytes that are only part of a character as hex: b' \\xf0\\x9f' -> '·<F0><9F>'."""
    try:
        return visible(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    parts = []
    position = 0
    while position < len(data):
        for size in (1, 2, 3, 4):
            try:
                parts.append(visible(data[position:position + size].decode("utf-8")))
            except UnicodeDecodeError:
                continue
            position += size
            break
        else:
            parts.append(f"<{data[position]:02X}>")
            position += 1
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Tokenizing
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Comparing tokenizers
# ---------------------------------------------------------------------------------------------


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
                 add_special_tokens: bool = False, errors: dict[str, str] | None = None) -> TokenizerComparison:
    """Tokenize one text with every tokenizer (and the raw bytes), then compare their boundaries."""
    tokenizations = [tokenize_text(text, item.tokenizer, item.name, item.label, item.context_length, add_special_tokens)
                     for item in tokenizers]
    if include_bytes:
        tokenizations.append(tokenize_bytes(text))
    return TokenizerComparison(text, tuple(tokenizations), compare_tokenizations(tokenizations), dict(errors or {}))


# ---------------------------------------------------------------------------------------------
# Chat template
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatTemplateView:
    """A conversation rendered through a chat template, token by token.

    roles[i] is 'special' (a special token), 'content' (inside a message's text) or 'template'
    (text the template added: role names, newlines, a default system prompt).
    """

    prompt: str
    tokens: Tokenization
    roles: tuple[str, ...]
    content_spans: tuple[tuple[int, int], ...]
    content_alone_tokens: int  # the messages' texts tokenized one by one, without the template

    @property
    def overhead_tokens(self) -> int:
        """What the template costs: prompt tokens beyond those of the bare message texts."""
        return len(self.tokens) - self.content_alone_tokens

    def role_count(self, role: str) -> int:
        return sum(1 for value in self.roles if value == role)

    def payload(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "ids": list(self.tokens.ids),
            "tokens": list(self.tokens.pieces),
            "starts": self.tokens.starts.tolist(),
            "ends": self.tokens.ends.tolist(),
            "roles": list(self.roles),
            "content_spans": [list(span) for span in self.content_spans],
            "counts": {"total": len(self.tokens), "special": self.role_count("special"),
                       "template": self.role_count("template"), "content": self.role_count("content"),
                       "content_alone": self.content_alone_tokens, "template_overhead": self.overhead_tokens},
        }


def clean_messages(rows: Iterable[Sequence[Any]]) -> list[dict[str, str]]:
    """(role, content) rows -> chat messages; blank rows are skipped, unknown roles rejected."""
    messages = []
    for number, row in enumerate(rows, start=1):
        role = str(row[0] if len(row) > 0 and row[0] is not None else "").strip().lower()
        content = str(row[1] if len(row) > 1 and row[1] is not None else "")
        if not role and not content.strip():
            continue
        if role not in CHAT_ROLES:
            raise TokenizationError(f"Message {number}: role must be one of {', '.join(CHAT_ROLES)}, got {role!r}.")
        messages.append({"role": role, "content": content})
    return messages


def _content_spans(prompt: str, messages: Sequence[dict[str, str]]) -> list[tuple[int, int]]:
    """Where each message's text sits in the rendered prompt (templates may trim it)."""
    spans = []
    position = 0
    for message in messages:
        for content in (message["content"], message["content"].strip()):
            if not content:
                break
            found = prompt.find(content, position)
            if found >= 0:
                spans.append((found, found + len(content)))
                position = found + len(content)
                break
    return spans


def chat_template_view(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True,
                       name: str = "model", label: str | None = None) -> ChatTemplateView:
    """Render messages with the tokenizer's chat template and classify every prompt token."""
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizationError("This tokenizer has no chat template (base models often have none); "
                                "load an instruct/chat model to see one.")
    if not messages:
        raise TokenizationError("Add at least one message (a role and its text) to render the chat template.")
    try:
        prompt = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                               add_generation_prompt=add_generation_prompt)
    except Exception as error:  # jinja raises its own errors, e.g. "roles must alternate"
        raise TokenizationError(f"The chat template rejected these messages: {error}") from error
    # The template already wrote its special tokens as text: add none (what apply_chat_template does).
    tokens = tokenize_text(prompt, tokenizer, name, label, add_special_tokens=False)
    spans = _content_spans(prompt, messages)
    inside = np.zeros(len(prompt) + 1, dtype=np.int64)  # prefix sums of "this character is content"
    for start, end in spans:
        inside[start + 1:end + 1] += 1
    inside = np.cumsum(inside)
    roles = []
    for index, (start, end) in enumerate(tokens.spans()):
        if index in tokens.special:
            roles.append("special")
        elif end == start and roles:  # the rest of a character the previous token started
            roles.append(roles[-1])
        elif end > start and inside[end] - inside[start] == end - start:
            roles.append("content")
        else:
            roles.append("template")
    alone = sum(len(backend_for(tokenizer).rust.encode(message["content"], add_special_tokens=False).ids)
                for message in messages)
    return ChatTemplateView(prompt, tokens, tuple(roles), tuple(spans), alone)


# ---------------------------------------------------------------------------------------------
# BPE: train with the `tokenizers` trainer, replay its merges step by step
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BpeMerge:
    rank: int  # 0-based: the order the trainer learned it in
    left: str  # byte-level strings ('Ġ' is a space)
    right: str
    count: int  # how often the pair occurred in the training words when it was merged

    @property
    def merged(self) -> str:
        return self.left + self.right


@dataclass(frozen=True)
class BpeTraining:
    """A byte-level BPE trained on a corpus, and the text segmented step by step.

    tokens_per_step[n]: how many tokens the text takes after the first n merges (n = 0: its bytes).
    """

    merges: tuple[BpeMerge, ...]
    trainer_merges: tuple[tuple[str, str], ...]
    first_mismatch: int | None  # first rank where our replay differs from the trainer (None: same)
    corpus_chars: int
    corpus_truncated: bool
    text: str
    text_truncated: bool
    words: tuple[str, ...]  # the text's pre-tokenized words, byte-level strings
    tokens_per_step: tuple[int, ...]
    alphabet_size: int
    final_tokens: tuple[str, ...]  # the trained tokenizer's own encoding of the text

    @property
    def matches_trainer(self) -> bool:
        return self.first_mismatch is None and len(self.merges) == len(self.trainer_merges)

    def first_visible_step(self) -> int:
        """The first merge that changes the text's segmentation (1 when none does)."""
        return next((step for step in range(1, len(self.tokens_per_step))
                     if self.tokens_per_step[step] < self.tokens_per_step[step - 1]), 1)

    def vocab_size_at(self, step: int) -> int:
        """Vocabulary size after `step` merges (a merge producing an existing string adds nothing)."""
        return self.alphabet_size + len({merge.merged for merge in self.merges[:step]})

    def payload(self) -> dict[str, Any]:
        return {
            "merges": [{"rank": m.rank, "left": m.left, "right": m.right, "merged": m.merged, "count": m.count,
                        "left_text": readable_bytes(piece_to_bytes(m.left)),
                        "right_text": readable_bytes(piece_to_bytes(m.right))} for m in self.merges],
            "matches_trainer": self.matches_trainer,
            "first_mismatch": self.first_mismatch,
            "trainer_merge_count": len(self.trainer_merges),
            "corpus_chars": self.corpus_chars,
            "corpus_truncated": self.corpus_truncated,
            "text_chars": len(self.text),
            "text_truncated": self.text_truncated,
            "alphabet_size": self.alphabet_size,
            "tokens_per_step": list(self.tokens_per_step),
            "vocab_size_per_step": [self.vocab_size_at(step) for step in range(len(self.merges) + 1)],
        }


BPE_MAX_MERGES = LIMITS.bpe_merges
BPE_CORPUS_CHAR_LIMIT = LIMITS.bpe_corpus_chars
BPE_TEXT_CHAR_LIMIT = LIMITS.bpe_text_chars


def piece_to_bytes(piece: str) -> bytes:
    return bytes(BYTE_LEVEL_DECODER[char] for char in piece)


def _byte_level_words(text: str) -> list[str]:
    """The words the ByteLevel pre-tokenizer makes (GPT-2's regex, bytes mapped to printable chars)."""
    from tokenizers import pre_tokenizers

    return [word for word, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)]


def train_bpe(corpus: str, text: str, merges: int) -> BpeTraining:
    """Train a byte-level BPE with `merges` merges on `corpus` (tokenizers' BpeTrainer), replay the
    training in Python to get each merge's count, and segment `text` after every merge."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not 1 <= merges <= BPE_MAX_MERGES:
        raise TokenizationError(f"Number of merges must be between 1 and {BPE_MAX_MERGES}, got {merges}.")
    if not corpus:
        raise TokenizationError("The training text is empty: type some text, or train on the example corpus.")
    corpus_truncated = len(corpus) > BPE_CORPUS_CHAR_LIMIT
    corpus = corpus[:BPE_CORPUS_CHAR_LIMIT]
    text_truncated = len(text) > BPE_TEXT_CHAR_LIMIT
    text = text[:BPE_TEXT_CHAR_LIMIT]
    utf8_bytes(corpus + text)

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + merges, initial_alphabet=alphabet,
                                  show_progress=False, special_tokens=[])
    tokenizer.train_from_iterator([corpus], trainer)
    trainer_merges = tuple(tuple(pair) for pair in json.loads(tokenizer.to_str())["model"]["merges"])

    corpus_words: dict[str, int] = {}
    for word in _byte_level_words(corpus):
        corpus_words[word] = corpus_words.get(word, 0) + 1
    replayed = replay_bpe_training(corpus_words, alphabet, len(alphabet) + merges)
    mismatch = next((rank for rank, (merge, pair) in enumerate(zip(replayed, trainer_merges))
                     if (merge.left, merge.right) != pair), None)

    words = tuple(_byte_level_words(text))
    ranks = {pair: rank for rank, pair in enumerate(trainer_merges)}
    return BpeTraining(
        merges=tuple(replayed), trainer_merges=trainer_merges, first_mismatch=mismatch,
        corpus_chars=len(corpus), corpus_truncated=corpus_truncated, text=text, text_truncated=text_truncated,
        words=words, tokens_per_step=_tokens_per_step(words, ranks, len(trainer_merges)),
        alphabet_size=len(alphabet), final_tokens=tuple(tokenizer.encode(text).tokens) if text else (),
    )


def replay_bpe_training(word_counts: dict[str, int], alphabet: Sequence[str], vocab_size: int) -> list[BpeMerge]:
    """Learn BPE merges the way tokenizers' BpeTrainer does, in Python, recording each merge's count.

    Same rules, so the same merges in the same order: symbols get ids in code-point order; the next
    merge is the pair with the highest count, ties going to the smallest (left id, right id); counts
    are kept per pair with a max-heap whose stale entries are refreshed when they reach the top; a
    merge whose string already exists reuses that id.
    """
    symbols: list[str] = sorted(set(alphabet) | {char for word in word_counts for char in word}, key=ord)
    symbol_id = {symbol: index for index, symbol in enumerate(symbols)}
    words = [[symbol_id[char] for char in word] for word in word_counts]
    counts = list(word_counts.values())

    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for index, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + counts[index]
            where.setdefault(pair, set()).add(index)
    # Heap entries: (-count, pair, tiebreak, word indices); Python's heapq is a min-heap.
    heap = [(-pair_counts[pair], pair, 0, positions) for pair, positions in where.items() if pair_counts[pair] > 0]
    heapq.heapify(heap)
    pushes = 1
    merges: list[BpeMerge] = []
    while len(symbol_id) < vocab_size and heap:
        negative, pair, _, positions = heapq.heappop(heap)
        if -negative != pair_counts[pair]:  # stale: re-queue with the current count
            heapq.heappush(heap, (-pair_counts[pair], pair, pushes, positions))
            pushes += 1
            continue
        if -negative < 1:
            break
        left, right = symbols[pair[0]], symbols[pair[1]]
        merged = left + right
        if merged not in symbol_id:
            symbol_id[merged] = len(symbols)
            symbols.append(merged)
        new_id = symbol_id[merged]
        merges.append(BpeMerge(len(merges), left, right, -negative))
        touched: dict[tuple[int, int], set[int]] = {}
        for index in positions:
            for changed, delta in _merge_in_word(words[index], pair, new_id):
                pair_counts[changed] = pair_counts.get(changed, 0) + delta * counts[index]
                if delta > 0:
                    touched.setdefault(changed, set()).add(index)
        for changed, indices in touched.items():
            if pair_counts[changed] > 0:
                heapq.heappush(heap, (-pair_counts[changed], changed, pushes, indices))
                pushes += 1
    return merges


def _merge_in_word(word: list[int], pair: tuple[int, int], new_id: int) -> list[tuple[tuple[int, int], int]]:
    """Merge every occurrence of `pair` in `word` left to right, in place; return the pair-count
    changes (pair, +1/-1) in the order the trainer reports them (the merged pair itself excluded)."""
    changes = []
    index = 0
    while index < len(word) - 1:
        if word[index] == pair[0] and word[index + 1] == pair[1]:
            if index > 0:
                changes.append(((word[index - 1], pair[0]), -1))
                changes.append(((word[index - 1], new_id), 1))
            word[index:index + 2] = [new_id]
            if index < len(word) - 1:
                changes.append(((pair[1], word[index + 1]), -1))
                changes.append(((new_id, word[index + 1]), 1))
        index += 1
    return changes


def segment_word(word: str, ranks: dict[tuple[str, str], int], max_rank: int) -> tuple[list[str], list[int]]:
    """BPE-encode one word using only merges of rank < max_rank: repeatedly merge the adjacent pair
    with the lowest rank. Returns the pieces and the ranks of the merges applied, in order."""
    pieces = list(word)
    applied = []
    while len(pieces) > 1:
        best_rank, best_index = max_rank, -1
        for index in range(len(pieces) - 1):
            rank = ranks.get((pieces[index], pieces[index + 1]), max_rank)
            if rank < best_rank:
                best_rank, best_index = rank, index
        if best_index < 0:
            break
        pieces[best_index:best_index + 2] = [pieces[best_index] + pieces[best_index + 1]]
        applied.append(best_rank)
    return pieces, applied


def _tokens_per_step(words: Sequence[str], ranks: dict[tuple[str, str], int], merges: int) -> tuple[int, ...]:
    """Tokens the text needs after each number of merges: its byte count minus the merges applied so far."""
    removed = np.zeros(merges + 1, dtype=np.int64)
    frequencies: dict[str, int] = {}
    for word in words:
        frequencies[word] = frequencies.get(word, 0) + 1
    for word, frequency in frequencies.items():
        for rank in segment_word(word, ranks, merges)[1]:
            removed[rank + 1] += frequency  # merge `rank` is in effect from step rank + 1 on
    initial = sum(len(word) for word in words)
    return tuple((initial - np.cumsum(removed)).tolist())


def segmentation_at(training: BpeTraining, step: int) -> list[tuple[str, bool]]:
    """The text's tokens after the first `step` merges, each flagged when merge `step` just made it."""
    if not 0 <= step <= len(training.trainer_merges):
        raise TokenizationError(f"Step must be between 0 and {len(training.trainer_merges)}, got {step}.")
    ranks = {pair: rank for rank, pair in enumerate(training.trainer_merges)}
    newest = step - 1
    result: list[tuple[str, bool]] = []
    for word in training.words:
        pieces, applied = segment_word(word, ranks, step)
        made_now = newest in applied
        target = "".join(training.trainer_merges[newest]) if made_now else None
        result.extend((piece, piece == target) for piece in pieces)
    return result


@functools.lru_cache(maxsize=1)
def example_corpus() -> str:
    """Python's own language reference (pydoc_data ships with Python): a real, offline English corpus."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


# ---------------------------------------------------------------------------------------------
# Cost estimator
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    name: str
    input_per_million: float  # currency units per 1,000,000 input tokens
    output_per_million: float


# EXAMPLES ONLY, not live prices: round numbers in the range providers charged in 2024-2025 for a
# small, a mid-size and a large hosted model. The user edits them in the table.
EXAMPLE_PRICES = (
    Price("example: small model", 0.15, 0.60),
    Price("example: mid-size model", 1.00, 4.00),
    Price("example: large model", 5.00, 15.00),
)


@dataclass(frozen=True)
class CostEstimate:
    name: str
    input_tokens: int
    output_tokens: int
    requests: int
    input_cost: float
    output_cost: float

    @property
    def total_cost(self) -> float:
        return self.input_cost + self.output_cost


def parse_prices(rows: Iterable[Sequence[Any]]) -> list[Price]:
    """(name, input price, output price) rows -> prices; blank rows skipped, bad numbers rejected."""
    prices = []
    for number, row in enumerate(rows, start=1):
        cells = list(row) + [None] * (3 - len(row))
        name = str(cells[0] if cells[0] is not None else "").strip()
        if not name and all(cell in (None, "") for cell in cells[1:3]):
            continue
        values = []
        for column, cell in (("input", cells[1]), ("output", cells[2])):
            try:
                value = float(cell)
            except (TypeError, ValueError):
                raise TokenizationError(f"Price row {number} ({name or 'unnamed'}): the {column} price must be a "
                                        f"number (per million tokens), got {cell!r}.") from None
            if not np.isfinite(value) or value < 0:
                raise TokenizationError(f"Price row {number} ({name or 'unnamed'}): the {column} price must be "
                                        f"zero or more, got {value}.")
            values.append(value)
        prices.append(Price(name or f"row {number}", values[0], values[1]))
    return prices


def estimate_costs(input_tokens: int, output_tokens: int, requests: int, prices: Sequence[Price]) -> list[CostEstimate]:
    """cost = requests x (input tokens x input price + output tokens x output price) / 1,000,000."""
    for label, value in (("Input tokens", input_tokens), ("Output tokens", output_tokens), ("Requests", requests)):
        if value is None or value < 0 or int(value) != value:
            raise TokenizationError(f"{label} must be a whole number of zero or more, got {value}.")
    return [
        CostEstimate(price.name, int(input_tokens), int(output_tokens), int(requests),
                     requests * input_tokens * price.input_per_million / 1e6,
                     requests * output_tokens * price.output_per_million / 1e6)
        for price in prices
    ]


def costs_payload(estimates: Sequence[CostEstimate]) -> dict[str, Any]:
    return {"note": "prices come from the table; its defaults are examples, not live prices",
            "estimates": [{**dataclasses.asdict(item), "total_cost": item.total_cost} for item in estimates]}

"""The app's one chunker: documents -> overlapping chunks counted in characters, tokens, sentences
or paragraphs.

A document is first cut into *units* that tile it exactly (every character belongs to one unit:
whitespace after a sentence belongs to that sentence). A chunk is `size` consecutive units and the
next chunk starts `size - overlap` units later, so neighbours share exactly `overlap` units and the
chunks together cover the text with nothing lost.

    >>> [text for text, _, _ in chunk_text("abcdefg", ChunkingSettings("characters", 4, 2))]
    ['abcd', 'cdef', 'efg']
"""

from __future__ import annotations

import math

import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from playground.rag.corpus import Corpus
from playground.limits import LIMITS

CHUNK_UNITS = ("characters", "tokens", "sentences", "paragraphs")
MAX_SIZE = {"characters": 20_000, "tokens": 4_000, "sentences": 200, "paragraphs": 100}
MAX_CHUNKS = LIMITS.rag_chunks  # embedding more takes many minutes on a laptop CPU (~10-30 chunks/s)
MAX_CHUNKS_GPU = LIMITS.rag_chunks_gpu  # a GPU embeds thousands of chunks per second
PREVIEW_CHARS = 160

# A sentence ends at . ! or ? (maybe followed by closing quotes/brackets) and whitespace, or at a blank line.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+|\n[ \t]*\n\s*")
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n\s*")


class ChunkingError(ValueError):
    """Chunking settings out of range; the message gives the allowed range."""


@dataclass(frozen=True)
class ChunkingSettings:
    unit: str = "characters"
    size: int = 800
    overlap: int = 100

    def __post_init__(self) -> None:
        if self.unit not in CHUNK_UNITS:
            raise ChunkingError(f"chunk unit must be one of {CHUNK_UNITS}, got {self.unit!r}")
        limit = MAX_SIZE[self.unit]
        if not isinstance(self.size, int) or not 1 <= self.size <= limit:
            raise ChunkingError(f"chunk size must be a whole number of {self.unit} in 1..{limit}, got {self.size!r}")
        if not isinstance(self.overlap, int) or not 0 <= self.overlap < self.size:
            raise ChunkingError(f"overlap must be a whole number in 0..{self.size - 1} (less than the chunk size), "
                                f"got {self.overlap!r}")

    def describe(self) -> str:
        return f"{self.size} {self.unit}, overlap {self.overlap}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the corpus-wide chunk list
    source: str  # the document it comes from
    text: str
    start: int  # character offsets in the document: text == document.text[start:end]
    end: int
    token_count: int  # tokens under the counting tokenizer (the embedder's); 0 when none was given

    @property
    def preview(self) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True)
class ChunkSet:
    settings: ChunkingSettings
    chunks: tuple[Chunk, ...]
    notes: tuple[str, ...] = ()

    @property
    def texts(self) -> list[str]:
        return [chunk.text for chunk in self.chunks]

    def stats(self, window_tokens: int | None = None) -> dict[str, Any]:
        """Chunk count and sizes; with the embedder's window, how many chunks it would truncate."""
        counts = np.array([chunk.token_count for chunk in self.chunks])
        chars = np.array([len(chunk.text) for chunk in self.chunks])
        stats: dict[str, Any] = {
            "chunks": len(self.chunks),
            "chunking": self.settings.as_dict(),
            "mean_chars": round(float(chars.mean()), 1) if len(chars) else 0.0,
            "mean_tokens": round(float(counts.mean()), 1) if len(counts) else 0.0,
            "max_tokens": int(counts.max()) if len(counts) else 0,
            "notes": list(self.notes),
        }
        if window_tokens is not None:
            stats["embedder_window_tokens"] = window_tokens
            stats["chunks_over_window"] = int((counts > window_tokens).sum())
        return stats


def unit_boundaries(text: str, unit: str, tokenizer: Any = None) -> np.ndarray:
    """Offsets where units start, plus len(text): int64 [n_units + 1], strictly increasing from 0.

    Unit i is text[b[i]:b[i+1]]; the units tile the text, so joining them gives it back exactly.
    """
    if not text:
        return np.zeros(1, dtype=np.int64)
    if unit == "characters":
        return np.arange(len(text) + 1, dtype=np.int64)
    if unit == "tokens":
        if tokenizer is None:
            raise ChunkingError("chunking by tokens needs a tokenizer")
        # Offsets of each token [n_tokens, 2]; a unit runs from one token's start to the next one's,
        # so the whitespace the tokenizer skips stays in the text.
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        starts = [start for start, _ in offsets]
    else:
        pattern = _SENTENCE_END if unit == "sentences" else _PARAGRAPH_END
        starts = [match.end() for match in pattern.finditer(text)]
    inner = np.unique(np.array([s for s in starts if 0 < s < len(text)], dtype=np.int64))
    return np.concatenate(([0], inner, [len(text)])).astype(np.int64)


def chunk_count(n_units: int, size: int, overlap: int) -> int:
    """How many chunks `chunk_spans` makes, without making them: one, or one more per step past the first.

    >>> chunk_count(10, 4, 1), chunk_count(3, 4, 1)
    (3, 1)
    """
    return 1 if n_units <= size else 1 + math.ceil((n_units - size) / (size - overlap))


# Chunk sizes (characters) offered for a corpus, largest first: 800 suits a long corpus (the Python reference), but a
# pasted page of 2,000 characters makes 3 chunks of it and every chart and score degenerates.
SUGGESTED_SIZES = (800, 600, 400, 300, 200, 150, 100)
USEFUL_CHUNKS = 12  # enough chunks that retrieval has a choice and the 2D map a spread


def suggested_chunking(document_lengths: Sequence[int]) -> ChunkingSettings:
    """Character chunking for a corpus of documents with these lengths: the largest size in SUGGESTED_SIZES
    that still gives at least USEFUL_CHUNKS chunks (overlap 1/8 of the size), else the smallest.

        >>> suggested_chunking([100_000]).describe()
        '800 characters, overlap 100'
        >>> suggested_chunking([2_000]).describe()  # a pasted page: 12 chunks (800 characters would give 3)
        '200 characters, overlap 25'
    """
    for size in SUGGESTED_SIZES:
        overlap = size // 8
        if sum(chunk_count(length, size, overlap) for length in document_lengths) >= USEFUL_CHUNKS:
            return ChunkingSettings("characters", size, overlap)
    return ChunkingSettings("characters", SUGGESTED_SIZES[-1], SUGGESTED_SIZES[-1] // 8)


def chunk_spans(boundaries: np.ndarray, size: int, overlap: int, limit: int | None = None) -> list[tuple[int, int]]:
    """Character spans of chunks of `size` units, each starting `size - overlap` units after the last; at
    most `limit` of them (the first ones), so a huge text with tiny chunks costs only what is kept."""
    n_units = len(boundaries) - 1
    step = size - overlap
    spans = []
    for first in range(0, max(n_units, 1), step):
        if limit is not None and len(spans) >= limit:
            break
        last = min(first + size, n_units)
        spans.append((int(boundaries[first]), int(boundaries[last])))
        if last == n_units:
            break
    return spans


def chunk_text(text: str, settings: ChunkingSettings, tokenizer: Any = None,
               limit: int | None = None) -> list[tuple[str, int, int]]:
    """(chunk text, start, end) for one document (the first `limit` chunks when given)."""
    if not text:
        return []
    spans = chunk_spans(unit_boundaries(text, settings.unit, tokenizer), settings.size, settings.overlap, limit)
    return [(text[start:end], start, end) for start, end in spans]


def count_tokens(texts: Sequence[str], tokenizer: Any, batch_size: int = 256) -> list[int]:
    """Tokens per text without special tokens (fast tokenizers batch this in Rust)."""
    counts: list[int] = []
    for begin in range(0, len(texts), batch_size):
        encoded = tokenizer(list(texts[begin:begin + batch_size]), add_special_tokens=False, verbose=False)
        counts.extend(len(ids) for ids in encoded["input_ids"])
    return counts


def chunk_corpus(corpus: Corpus, settings: ChunkingSettings, tokenizer: Any = None,
                 max_chunks: int = MAX_CHUNKS) -> ChunkSet:
    """Every document chunked, in corpus order, capped at `max_chunks` (with a note saying so)."""
    pieces: list[tuple[str, str, int, int]] = []
    made = 0  # chunks the whole corpus makes, counted without building the ones past the cap
    for document in corpus.documents:
        if not document.text:
            continue
        boundaries = unit_boundaries(document.text, settings.unit, tokenizer)
        made += chunk_count(len(boundaries) - 1, settings.size, settings.overlap)
        room = max_chunks - len(pieces)
        if room > 0:
            spans = chunk_spans(boundaries, settings.size, settings.overlap, room)
            pieces.extend((document.source, document.text[start:end], start, end) for start, end in spans)
    notes = list(corpus.notes)
    if made > max_chunks:
        notes.append(f"The corpus makes {made:,} chunks; only the first {max_chunks:,} are indexed "
                     "(use bigger chunks or a smaller corpus).")
    counts = count_tokens([text for _, text, _, _ in pieces], tokenizer) if tokenizer is not None else [0] * len(pieces)
    chunks = tuple(Chunk(index, source, text, start, end, count)
                   for index, ((source, text, start, end), count) in enumerate(zip(pieces, counts)))
    return ChunkSet(settings, chunks, tuple(notes))

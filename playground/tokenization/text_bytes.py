"""Text <-> UTF-8 bytes: each character's byte offset, byte runs -> character spans, and GPT-2's
byte-level alphabet (the printable character that stands for each byte).

    >>> char_byte_starts("hé").tolist()   # é is two bytes
    [0, 1, 3]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from playground.tokenization.errors import TokenizationError


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

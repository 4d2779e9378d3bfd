"""Tokens drawn for display: whitespace and control characters made visible, bytes that are only part
of a character shown as hex. `visible_token` is the one way every tab draws a token (`token_label` on a chart's axis).

    >>> readable_bytes(b" \\xf0\\x9f")
    '·<F0><9F>'
"""

from __future__ import annotations

# How a whitespace or control character is drawn so it can be seen.
VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍", "\u00a0": "⍽"}


def visible(text: str) -> str:
    """Whitespace and control characters made visible: ' ' -> '·', newline -> '↵', tab -> '→'."""
    return "".join(VISIBLE.get(char, f"\\x{ord(char):02x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
                   for char in text)


def visible_token(text: str) -> str:
    """A token as every tab shows it: `visible` whitespace, and '∅' for a token that decodes to nothing (an
    empty label would vanish from a chart axis or a chip row).

    >>> [visible_token(token) for token in (" Paris", "\\n", "\\t", "")]
    ['·Paris', '↵', '→', '∅']
    """
    return visible(text) or "∅"


def token_label(text: str) -> str:
    """`visible_token` for a chart's axis or a list of choices, where a lone dot is easy to miss: a token
    that is only spaces says so.

    >>> [token_label(token) for token in (" ", "   ", " Paris")]
    ['· (space)', '··· (3 spaces)', '·Paris']
    """
    if text and set(text) == {" "}:
        return visible_token(text) + (" (space)" if len(text) == 1 else f" ({len(text)} spaces)")
    return visible_token(text)


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

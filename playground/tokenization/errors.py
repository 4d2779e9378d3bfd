"""The one error every tokenization computation raises for bad input."""

from __future__ import annotations


class TokenizationError(ValueError):
    """Bad input for a tokenization computation; the message says what is allowed."""

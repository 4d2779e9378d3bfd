"""The one error for bad attention input, and the one cap on how many tokens a view analyses."""

from __future__ import annotations

from playground.limits import LIMITS

MAX_ANALYSED_TOKENS = LIMITS.attention_tokens


class AttentionInputError(ValueError):
    """Bad input from the user (unknown pattern, layer out of range, ...); the message names the fix."""

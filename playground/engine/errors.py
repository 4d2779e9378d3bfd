"""What can go wrong with a serving engine, each with a message a user can act on.

Every error is a ValueError subclass, so the UI's `@user_errors` shows its one sentence as a gr.Error
(never a stack trace). None of the messages contains the API key.
"""

from __future__ import annotations


class EngineError(ValueError):
    """The engine could not give an answer; the message says which engine and what to do."""


class EngineUnreachable(EngineError):
    """Nothing answers at the URL (connection refused, DNS, reset) after the bounded retries."""


class EngineTimeout(EngineError):
    """The engine accepted the connection but did not answer within the timeout (after the retries)."""


class EngineResponseError(EngineError):
    """The engine answered with an HTTP error or with a body we cannot read."""


class EngineModelMismatch(EngineError):
    """The engine serves another model than the one asked for, or answers for another model than it lists."""


class LogprobsLimitError(EngineError):
    """The engine returns fewer log-probabilities per token than asked (vLLM: --max-logprobs)."""

"""A serving engine (vLLM, SGLang, llama.cpp server, TGI: the OpenAI-compatible HTTP API with
log-probabilities) as the source of tokens for the token-level tabs. Compute only: no gradio.

Table of contents (imports point down the list):

- errors.py        EngineError and its kinds (unreachable, timeout, HTTP error, model mismatch, logprobs limit)
- client.py        EngineClient: models, /tokenize, /detokenize, completions with top-N log-probabilities
                   (whole or streamed), /metrics; timeouts and bounded retries; the API key never shown
- source.py        EngineTokenSource: prompt ids, the next token's top N of V log-probabilities
                   (NextTokenLogprobs, as full logits with the unreturned tail made explicit), token texts
- tokenization.py  the engine's /tokenize as a Tokenization (the Tokenization tab)
- sampling.py      the prompt's next-token distribution and step-through traces (the Sampling tab)
- calibration.py   exact letter log-probabilities from echoed prompts (the Calibration tab)
- speculative.py   the engine's own speculative-decoding counters from /metrics (the Speculative tab)

`engine_from_settings(settings)` builds the app's one source (None when no --engine is set).
"""

from __future__ import annotations

from playground.config import Settings
from playground.engine.client import Completion, EngineClient, EngineStatus, TokenLogprobs
from playground.engine.errors import (
    EngineError,
    EngineModelMismatch,
    EngineResponseError,
    EngineTimeout,
    EngineUnreachable,
    LogprobsLimitError,
)
from playground.engine.source import EngineTokenSource, NextTokenLogprobs


def engine_from_settings(settings: Settings) -> EngineTokenSource | None:
    """The app's engine source, or None when no engine URL is configured. Nothing is sent here."""
    if not settings.engine_url:
        return None
    client = EngineClient(settings.engine_url, settings.engine_api_key, settings.engine_model,
                          timeout_s=settings.engine_timeout_s)
    return EngineTokenSource(client, settings.engine_vocab_size or None)


__all__ = [
    "Completion", "EngineClient", "EngineStatus", "TokenLogprobs", "EngineError", "EngineModelMismatch",
    "EngineResponseError", "EngineTimeout", "EngineUnreachable", "LogprobsLimitError", "EngineTokenSource",
    "NextTokenLogprobs", "engine_from_settings",
]

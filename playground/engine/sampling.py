"""The Sampling tab's numbers when an engine serves the tokens: the prompt's next-token distribution
(the top N the engine returns, as a PromptLogits the views take unchanged) and step-through generation
from per-token log-probabilities (a GenerationTrace the trace views take unchanged).

The engine draws each token with its own sampler and the same settings (temperature, top-k, top-p,
min-p, repetition penalty, seed); every step is then analysed with the one pipeline on that step's
returned log-probabilities, exactly as a local step is (`analyse_step`).
"""

from __future__ import annotations

import time

import torch

from playground.engine.source import EngineTokenSource, NextTokenLogprobs
from playground.sampling import GenerationTrace, PromptLogits, SamplingSettings, analyse_step
from playground.sampling.traces import MAX_TRACE_TOKENS
from playground.sampling_pipeline import SamplingSettingsError

ENGINE_TOP_N = 100  # log-probabilities asked per token; vLLM must run with --max-logprobs >= this


def engine_prompt_logits(source: EngineTokenSource, prompt: str, chat: bool, top_n: int = ENGINE_TOP_N) -> PromptLogits:
    """The engine's next-token top-N after the prompt, as the [vocab] logits the views take (see
    NextTokenLogprobs.logits for the unreturned tail); its note says what was not returned."""
    if not prompt.strip():
        raise SamplingSettingsError("The prompt is empty: type something for the model to continue.")
    ids = source.prompt_ids(prompt, chat)
    returned = source.next_token(ids, top_n)
    return PromptLogits(torch.tensor([ids]), returned.logits(), (returned.note(),))


def _engine_sampling(settings: SamplingSettings) -> dict[str, float | int]:
    """Our settings in the engine's request fields (vLLM's names; top_k -1 = off)."""
    return {"temperature": settings.temperature, "top_k": settings.top_k or -1, "top_p": settings.top_p,
            "min_p": settings.min_p, "repetition_penalty": settings.repetition_penalty}


def engine_trace(source: EngineTokenSource, prompt_ids: torch.Tensor, settings: SamplingSettings,
                 max_new_tokens: int, top_n: int = ENGINE_TOP_N, shown: int = 10) -> GenerationTrace:
    """Generate on the engine with the settings and record every step like trace_generation does.
    prompt_ids: [1, n]."""
    if not 1 <= max_new_tokens <= MAX_TRACE_TOKENS:
        raise SamplingSettingsError(f"max_new_tokens must be a whole number in 1..{MAX_TRACE_TOKENS}, got {max_new_tokens}")
    started = time.perf_counter()
    history = prompt_ids[0].tolist()
    completion = source.client.complete(history, max_tokens=max_new_tokens, logprobs=top_n, seed=settings.seed,
                                        extra=_engine_sampling(settings))[0]
    steps = []
    for index, token in enumerate(completion.tokens):
        returned = NextTokenLogprobs(tuple(history), token.top, source.vocab_size, top_n)
        last = index == len(completion.tokens) - 1
        finish = {"stop": "eos", "length": "length"}.get(completion.finish_reason or "", completion.finish_reason)
        steps.append(analyse_step(returned.logits(), token.token_id, source.tokenizer.token_text(token.token_id), index,
                                  settings, torch.tensor(history), source.tokenizer, shown,
                                  finish if last else None))
        history.append(token.token_id)
    return GenerationTrace(source.key, settings, max_new_tokens, tuple(prompt_ids[0].tolist()), tuple(steps),
                           completion.text, steps[-1].finish_reason or "length" if steps else "length",
                           time.perf_counter() - started)


"""The app's one generation loop: prompt ids -> tokens, streamed one at a time.

KV cache, stop on EOS or stop strings, max_new_tokens, seeded sampling through `SamplingSettings`,
and cancellation. Every tab that generates text calls `generate_tokens` (or `generate_text`), so
what the sampling tab shows is what the RAG answer and the LoRA comparison actually do.

Greedy output equals `model.generate(do_sample=False)` token for token (tested).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from playground.runtime.decode import decode_forward
from playground.sampling_pipeline import SamplingSettings, draw_next_token

FINISH_REASONS = ("eos", "stop_string", "length", "cancelled")


@dataclass(frozen=True)
class GeneratedToken:
    """One step of generation. `text` is what this token added to the decoded output (it may be ""
    while a multi-byte character is incomplete; the next token's text then carries it)."""

    index: int  # 0-based position in the continuation
    token_id: int
    text: str
    logits: torch.Tensor | None  # raw next-token logits that produced this token: [vocab] float32 cpu
    finish_reason: str | None  # set on the last token: eos | stop_string | length | cancelled
    # The final distribution it was drawn from ([vocab] float32 cpu), kept with the logits; None when greedy.
    probs: torch.Tensor | None = None


@dataclass
class GenerationResult:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"
    seconds: float = 0.0
    steps: list[GeneratedToken] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.seconds if self.seconds > 0 else 0.0


def encode_prompt(tokenizer: Any, prompt: str | Sequence[dict[str, str]], chat: bool = True,
                  system: str | None = None) -> torch.Tensor:
    """Prompt -> input ids [1, n]. With chat=True the tokenizer's chat template wraps the prompt
    (a string becomes one user message) and appends the assistant turn header."""
    if chat and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if system:
            messages = [{"role": "system", "content": system}, *messages]
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
        return encoded["input_ids"]
    text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    return tokenizer(text, return_tensors="pt")["input_ids"]


def _model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


def generate_tokens(
    model: Any,
    tokenizer: Any,
    input_ids: torch.Tensor,
    settings: SamplingSettings = SamplingSettings(temperature=0.0),
    max_new_tokens: int = 64,
    eos_token_ids: Sequence[int] = (),
    stop_strings: Sequence[str] = (),
    cancel: threading.Event | None = None,
    lock: Any = None,
    keep_logits: bool = False,
) -> Iterator[GeneratedToken]:
    """Yield generated tokens one by one. input_ids: [1, prompt_len].

    The prompt is run once (prefill); each later step feeds only the new token and reuses the
    KV cache, so a step costs one token's worth of compute. `lock` (if given) is held around each
    forward, not the whole generation, so other users' requests interleave between steps.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape [1, n], got {tuple(input_ids.shape)}")
    if max_new_tokens < 1:
        return
    device = _model_device(model)
    generator = settings.generator()
    eos = set(int(i) for i in eos_token_ids)
    guard = lock if lock is not None else contextlib.nullcontext()
    all_ids = input_ids[0].tolist()
    prompt_length = len(all_ids)
    emitted_text = ""
    # Buffers made once, filled in place at every step (no new tensor per token):
    # history[:prompt_length + index] is prompt + tokens so far, what the repetition penalty sees
    # [prompt_len + max_new_tokens]; next_input holds the token just chosen, the next step's input [1, 1].
    history = None
    if settings.repetition_penalty != 1.0:
        history = torch.empty(prompt_length + max_new_tokens, dtype=torch.long, device=device)
        history[:prompt_length] = input_ids[0]
    next_input = torch.empty((1, 1), dtype=torch.long, device=device)
    step_input = input_ids.to(device)  # [1, prompt_len] for prefill, then next_input
    past = None
    for index in range(max_new_tokens):
        if cancel is not None and cancel.is_set():
            return
        with guard, torch.inference_mode():
            # keep=1: only the last position's logits are needed; for a prefill of n tokens this skips n-1 rows
            # of the [hidden x vocab] output projection (49152 wide here). A decoding step (runtime/decode.py):
            # the default's lean int4 pass, and its head finds the top candidates in int8 (runtime/head.py).
            step_logits, past = decode_forward(model, step_input, past, keep=1)
        logits = step_logits[0, -1].float()  # [vocab]
        seen = history[:prompt_length + index] if history is not None else None
        token_id, probs = draw_next_token(logits, settings, generator, seen)
        all_ids.append(token_id)
        if history is not None:
            history[prompt_length + index] = token_id
        # Decode the whole continuation, then diff, so multi-token characters come out whole.
        decoded = tokenizer.decode(all_ids[prompt_length:], skip_special_tokens=False)
        piece = ""
        if not decoded.endswith("\ufffd"):  # hold back an incomplete UTF-8 sequence
            piece = decoded[len(emitted_text):]
            emitted_text = decoded
        finish = None
        if token_id in eos:
            finish = "eos"
        elif stop_strings and any(stop in emitted_text for stop in stop_strings):
            finish = "stop_string"
        elif cancel is not None and cancel.is_set():
            finish = "cancelled"
        elif index == max_new_tokens - 1:
            finish = "length"
        yield GeneratedToken(index, token_id, piece, logits.cpu() if keep_logits else None, finish,
                             probs if keep_logits else None)
        if finish is not None:
            return
        next_input.fill_(token_id)
        step_input = next_input


def generate_text(
    model: Any,
    tokenizer: Any,
    input_ids: torch.Tensor,
    settings: SamplingSettings = SamplingSettings(temperature=0.0),
    max_new_tokens: int = 64,
    eos_token_ids: Sequence[int] = (),
    stop_strings: Sequence[str] = (),
    cancel: threading.Event | None = None,
    lock: Any = None,
    keep_logits: bool = False,
) -> GenerationResult:
    """Run `generate_tokens` to the end and collect the result. The text excludes a trailing EOS
    token's text and anything from the first stop string on."""
    result = GenerationResult(finish_reason="cancelled")
    started = time.perf_counter()
    text = ""
    for step in generate_tokens(model, tokenizer, input_ids, settings, max_new_tokens, eos_token_ids,
                                stop_strings, cancel, lock, keep_logits):
        result.token_ids.append(step.token_id)
        result.steps.append(step)
        if step.finish_reason != "eos":
            text += step.text
        if step.finish_reason is not None:
            result.finish_reason = step.finish_reason
    for stop in stop_strings:
        if stop in text:
            text = text[: text.index(stop)]
    result.text = text
    result.seconds = time.perf_counter() - started
    return result

"""The prompt's next-token logits, cached per prompt so the Sampling tab's sliders never wait for the
model. The logits come from the first step of the one generation loop (`generate_tokens`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from playground.generation import encode_prompt, generate_tokens
from playground.limits import LIMITS
from playground.sampling_pipeline import SamplingSettings, SamplingSettingsError

MAX_PROMPT_TOKENS = LIMITS.sampling_prompt_tokens  # longer prompts keep their last 512 tokens (prefill stays ~1-2 s on CPU)


def encode_capped_prompt(tokenizer: Any, prompt: str, chat: bool,
                         max_tokens: int = MAX_PROMPT_TOKENS) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Prompt -> input ids [1, n], keeping only the last max_tokens tokens of a long prompt text
    (the end is what the next token depends on most); the chat template is applied after the cut,
    so it stays whole."""
    if not prompt.strip():
        raise SamplingSettingsError("The prompt is empty: type something for the model to continue.")
    notes: tuple[str, ...] = ()
    text_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(text_ids) > max_tokens:
        prompt = tokenizer.decode(text_ids[-max_tokens:])
        notes = (f"The prompt is {len(text_ids)} tokens long; only its last {max_tokens} tokens are used.",)
    return encode_prompt(tokenizer, prompt, chat=chat), notes


@dataclass(frozen=True)
class PromptLogits:
    input_ids: torch.Tensor  # [1, n] what the model saw (chat template applied, long prompts cut)
    logits: torch.Tensor  # [vocab] float32 cpu: the raw next-token logits after the prompt
    notes: tuple[str, ...]


class PromptLogitsCache:
    """A small LRU of prompt -> next-token logits, keyed by (model key, prompt, chat flag).

    The logits come from the first step of `generate_tokens` (the same prefill a trace starts with),
    so the next-token view and the trace's first step agree to the bit.
    """

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[Any, str, bool], PromptLogits] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, model_key: Any, model: Any, tokenizer: Any, prompt: str, chat: bool,
            lock: Any = None) -> PromptLogits:
        key = (model_key, prompt, bool(chat))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        entry = compute_prompt_logits(model, tokenizer, prompt, chat, lock)  # outside the cache lock
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry


def compute_prompt_logits(model: Any, tokenizer: Any, prompt: str, chat: bool, lock: Any = None) -> PromptLogits:
    input_ids, notes = encode_capped_prompt(tokenizer, prompt, chat)
    first = next(generate_tokens(model, tokenizer, input_ids, SamplingSettings(temperature=0.0), 1,
                                 lock=lock, keep_logits=True))
    return PromptLogits(input_ids, first.logits, notes)

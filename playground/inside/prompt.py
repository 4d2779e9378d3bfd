"""The Inside tab's inputs: a prompt as token ids (capped, keeping the last tokens) and a token the user names.

    >>> InsideInputError("x").args
    ('x',)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from playground.attention import AttentionShape, token_labels
from playground.limits import shown


class InsideInputError(ValueError):
    """A prompt, token or part the Inside tab cannot use; the message says what to change."""


class InsideCancelled(RuntimeError):
    """The visitor pressed Stop: a long computation ends between two of its steps (layers, step batches)."""

    def __init__(self, done: int, total: int, unit: str) -> None:
        super().__init__(f"Stopped after {done} of {total} {unit}.")
        self.done, self.total, self.unit = done, total, unit


def stop_if_asked(cancel: Any, done: int, total: int, unit: str) -> None:
    """Raise InsideCancelled when `cancel` (a threading.Event, or None) is set; called between steps, outside
    the model's lock, so a stopped job frees the model for the next visitor at once."""
    if cancel is not None and cancel.is_set():
        raise InsideCancelled(done, total, unit)


@dataclass(frozen=True)
class EncodedPrompt:
    ids: torch.Tensor  # [1, n] long
    tokens: tuple[str, ...]  # each token drawn as every tab draws one
    total_tokens: int  # before the cap
    note: str  # "" unless the prompt was cut

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


def encode(tokenizer: Any, text: str, max_tokens: int, minimum: int = 1) -> EncodedPrompt:
    """The prompt's token ids, the last `max_tokens` of them when it is longer (said in `note`)."""
    if not (text or "").strip():
        raise InsideInputError("Type a prompt first: the tab reads the model on your prompt.")
    ids = list(tokenizer(text)["input_ids"])
    total = len(ids)
    note = ""
    if total > max_tokens:
        ids = ids[-max_tokens:]
        note = f"The prompt has {total:,} tokens; this view reads its last {max_tokens} (the server's limit)."
    if len(ids) < minimum:
        raise InsideInputError(f"This view needs a prompt of at least {minimum} tokens; yours has {len(ids)}.")
    return EncodedPrompt(torch.tensor([ids]), tuple(token_labels(tokenizer, ids)), total, note)


def resolve_token(tokenizer: Any, text: str) -> tuple[int, str]:
    """A token the user names -> (id, how it was read). Tries the text as typed, then with a leading space (the
    form a word takes after another word in byte-level BPE); it must be exactly one token of the vocabulary."""
    if not text:
        raise InsideInputError("Name a token (for example ' Paris'), or leave the box empty for the default.")
    for candidate in (text, " " + text.lstrip()):
        ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            note = "" if candidate == text else f"read as {candidate!r} (with its leading space), one token"
            return int(ids[0]), note
    pieces = token_labels(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])
    raise InsideInputError(f"{shown(text, 40)} is not one token of this vocabulary: it splits into {len(pieces)} "
                           f"({' | '.join(pieces[:8])}). Name a single token, e.g. its first piece.")


def model_shape(model: Any) -> AttentionShape:
    """Layers, query heads, KV heads and head size of the model (one reading of its config for the app)."""
    return AttentionShape.from_config(model.config)


def decoder(model: Any) -> Any:
    """The decoder stack (`model.model` for Llama, Qwen, Mistral, Gemma): embeddings, `layers`, final `norm`."""
    return model.get_decoder()

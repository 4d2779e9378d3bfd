"""Before / after: the base and the adapted model side by side (greedy answers, the next token's shift)."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import torch

from playground.generation import encode_prompt, generate_text
from playground.lora.errors import LoraError
from playground.lora.job import TrainedAdapter
from playground.lora.training import model_device


@contextlib.contextmanager
def base_behaviour(adapter: TrainedAdapter) -> Iterator[Any]:
    """The adapted model with its LoRA layers switched off: exactly the base model (B @ A not added)."""
    with adapter.lock, adapter.model.disable_adapter():
        yield adapter.model


@dataclass(frozen=True)
class AnswerPair:
    prompt: str
    before: str
    after: str
    before_tokens: int
    after_tokens: int


def compare_answers(adapter: TrainedAdapter, prompts: Sequence[str], max_new_tokens: int = 48) -> tuple[AnswerPair, ...]:
    """Greedy answers of the base and the adapted model to the same prompts, through the app's one
    generation loop."""
    model, tokenizer, eos = adapter.model, adapter.tokenizer, adapter.base.eos_token_ids

    def answer(prompt: str) -> Any:
        return generate_text(model, tokenizer, encode_prompt(tokenizer, prompt), max_new_tokens=max_new_tokens,
                             eos_token_ids=eos)

    pairs = []
    with adapter.lock:
        model.eval()
        for prompt in prompts:
            with base_behaviour(adapter):
                before = answer(prompt)
            after = answer(prompt)
            pairs.append(AnswerPair(prompt, before.text, after.text, len(before.token_ids), len(after.token_ids)))
    return tuple(pairs)


@dataclass(frozen=True)
class TokenShift:
    token_id: int
    text: str
    before: float  # probability under the base model
    after: float  # probability under the adapted model

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class NextTokenShift:
    prompt: str
    tokens: tuple[TokenShift, ...]  # the union of both models' top tokens, biggest gain first
    kl_bits: float  # KL(after || before) over the whole vocabulary
    top_before: str
    top_after: str

    def as_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "kl_bits": self.kl_bits, "top_before": self.top_before,
                "top_after": self.top_after,
                "tokens": [{**asdict(t), "delta": t.delta} for t in self.tokens]}


@torch.no_grad()
def next_token_logits(model: Any, tokenizer: Any, prompt: str) -> torch.Tensor:
    """Logits [vocab] (float32, cpu) for the first token of the answer to `prompt`."""
    ids = encode_prompt(tokenizer, prompt).to(model_device(model))  # [1, n]
    return model(input_ids=ids, use_cache=False).logits[0, -1].float().cpu()


def next_token_shift(adapter: TrainedAdapter, prompt: str, top_n: int = 8) -> NextTokenShift:
    """How the first answer token's distribution moved: which tokens gained and lost probability."""
    if not prompt.strip():
        raise LoraError("Enter a prompt to compare the next-token distributions.")
    with adapter.lock:
        adapter.model.eval()
        with base_behaviour(adapter):
            before = next_token_logits(adapter.model, adapter.tokenizer, prompt).softmax(-1)  # [vocab]
        after = next_token_logits(adapter.model, adapter.tokenizer, prompt).softmax(-1)
    ids = set(torch.topk(before, top_n).indices.tolist()) | set(torch.topk(after, top_n).indices.tolist())

    def text(token_id: int) -> str:
        return adapter.tokenizer.decode([token_id], skip_special_tokens=False)

    tokens = sorted((TokenShift(i, text(i), float(before[i]), float(after[i])) for i in ids),
                    key=lambda t: -t.delta)
    log_ratio = torch.log2(after.double().clamp_min(1e-30)) - torch.log2(before.double().clamp_min(1e-30))
    kl_bits = float((after.double() * log_ratio).sum())
    return NextTokenShift(prompt, tuple(tokens), kl_bits, text(int(before.argmax())), text(int(after.argmax())))

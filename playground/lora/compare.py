"""Before / after: the base and the adapted model side by side (greedy answers, the next token's shift)."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import torch

from playground.generation import encode_prompt, generate_text
from playground.lora.errors import LoraError
from playground.lora.job import TrainedAdapter, TrainingProgress, summarize_events
from playground.lora.settings import LoraSettings
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


# A run whose loss fell by less than this share of its starting value has barely trained (the demo's default
# 40 steps at 2e-3 take the pirate set's eval loss down by about half).
MEANINGFUL_LOSS_DROP = 0.10


def run_losses(progress: TrainingProgress) -> tuple[str, float, float] | None:
    """Which loss the run moved, and from where to where: the held-out (eval) loss when it was measured at least
    twice (step 0 and later), else the smoothed train loss; None before any step.

    >>> run_losses(summarize_events([{"event": "queued", "job_id": "j", "total_steps": 2, "time": 0.0}]))
    """
    if len(progress.eval_loss) >= 2:
        return "eval loss", progress.eval_loss[0], progress.eval_loss[-1]
    if progress.smoothed_loss:
        return "train loss", progress.smoothed_loss[0], progress.smoothed_loss[-1]
    return None


def why_unchanged(identical_answers: bool, steps: int, learning_rate: float, loss: tuple[str, float, float] | None,
                  default_steps: int = LoraSettings.steps, default_learning_rate: float = LoraSettings.learning_rate) -> str:
    """One plain sentence when the run was too short to change the answers (or its loss barely moved): why, from
    the run's own numbers, and what to try; "" when the answers changed and the loss moved.

    >>> why_unchanged(True, 5, 2e-4, ("eval loss", 2.31, 2.29))  # doctest: +NORMALIZE_WHITESPACE
    'The greedy answers did not change: this run trained only 5 steps at learning rate 0.0002, and its eval loss
    moved only from 2.31 to 2.29 (-0.9%). Try at least 40 steps and a learning rate near 0.002, then compare again.'
    >>> why_unchanged(False, 40, 2e-3, ("eval loss", 3.0, 1.4))
    ''
    """
    name, start, end = loss if loss is not None else ("loss", float("nan"), float("nan"))
    drop = (start - end) / start if start > 0 else 0.0
    barely = loss is None or drop < MEANINGFUL_LOSS_DROP
    if not (identical_answers or barely):
        return ""
    what = "The greedy answers did not change" if identical_answers else "The adapter has barely trained"
    moved = (f"its {name} moved only from {start:.2f} to {end:.2f} ({-100 * drop:+.1f}%)" if barely and loss
             else f"its {name} fell from {start:.2f} to {end:.2f} ({-100 * drop:+.1f}%)" if loss
             else "no loss was recorded")
    tries = []
    if steps < default_steps:
        tries.append(f"at least {default_steps} steps")
    if learning_rate < default_learning_rate / 2:
        tries.append(f"a learning rate near {default_learning_rate:g}")
    if not tries:
        tries.append(f"more steps (say {2 * steps}) or more new tokens per answer")
    only = "only " if steps < default_steps else ""
    if identical_answers and not barely:
        # the loss fell, yet no greedy token flipped: the probabilities moved (the chart), the top choices did not
        return (f"{what} although {moved}: the adapter moved the probabilities (the chart below) but not yet the "
                f"most likely token at any step. Try {' and '.join(tries)}, then compare again.")
    return (f"{what}: this run trained {only}{steps} step{'s' if steps != 1 else ''} at learning rate "
            f"{learning_rate:g}, and {moved}. Try {' and '.join(tries)}, then compare again.")


def answers_verdict(pairs: Sequence[AnswerPair], progress: TrainingProgress, learning_rate: float) -> str:
    """`why_unchanged` for a comparison, from the run's own log: its steps, learning rate and loss."""
    identical = bool(pairs) and all(pair.before == pair.after for pair in pairs)
    return why_unchanged(identical, progress.step, learning_rate, run_losses(progress))

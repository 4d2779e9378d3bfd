"""Batched decoding on the loaded model, timed: why batching is nearly free until it is not.

One decode step reads every weight of the model once, whatever the batch: at batch 1 the step is
memory-bound (135 M weights streamed from memory to produce one token). Putting B sequences in the
step multiplies the tokens per weight read by B, so the total tokens/s grows almost B-fold while the
step time barely moves, until the arithmetic (B x 2 x parameters FLOPs) or the attention over a
growing KV cache becomes the bottleneck and the step time starts growing with B.

`measure_batching` times real decode steps: the prompt repeated B times, one prefill into a
transformers DynamicCache, then `decode_steps` steps feeding one token per sequence ([B, 1]).
`batched_greedy` decodes different prompts together (left-padded, masked, positions per row); its
tokens equal each prompt decoded alone (tested), which is what makes batching a free lunch for a server.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import DynamicCache

from playground.attention.shape import AttentionShape
from playground.serving.errors import MeasurementCancelled, ServingInputError
from playground.serving.kv_memory import KVPoint, kv_point

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class BatchPoint:
    """Decode timing at one batch size. step_seconds: the median of the timed steps (robust to a noisy one)."""

    batch: int
    step_seconds: float
    step_times: tuple[float, ...]
    kv: KVPoint  # the cache after the last step, measured against the formula

    @property
    def total_tokens_per_second(self) -> float:
        return self.batch / self.step_seconds

    @property
    def sequence_tokens_per_second(self) -> float:
        """What one user sees: one token per step."""
        return 1.0 / self.step_seconds


@dataclass(frozen=True)
class BatchingCurve:
    points: tuple[BatchPoint, ...]  # in increasing batch order
    prompt_tokens: int
    decode_steps: int
    device: str

    def point(self, batch: int) -> BatchPoint:
        return next(p for p in self.points if p.batch == batch)

    def speedup(self, point: BatchPoint) -> float:
        """Total tokens/s relative to the smallest batch measured (batch 1 when it was picked)."""
        base = self.points[0]
        return point.total_tokens_per_second / base.total_tokens_per_second * base.batch

    def step_costs(self) -> dict[int, float]:
        """batch -> seconds per decode step: the cost model the scheduling simulation uses."""
        return {p.batch: p.step_seconds for p in self.points}

    def as_json(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "decode_steps": self.decode_steps, "device": self.device,
                "points": [{"batch": p.batch, "step_seconds": p.step_seconds, "step_times": list(p.step_times),
                            "total_tokens_per_second": p.total_tokens_per_second,
                            "sequence_tokens_per_second": p.sequence_tokens_per_second,
                            "speedup_vs_first": self.speedup(p), "kv_cache": p.kv.as_json()} for p in self.points]}


def model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


def check_batch_sizes(batch_sizes: Sequence[int], cap: int) -> tuple[int, ...]:
    sizes = tuple(sorted({int(b) for b in batch_sizes}))
    if not sizes:
        raise ServingInputError("Pick at least one batch size.")
    if sizes[0] < 1 or sizes[-1] > cap:
        raise ServingInputError(f"Batch sizes must be in 1..{cap} on this server, got {list(sizes)}.")
    return sizes


def measure_batch(model: Any, prompt_ids: torch.Tensor, batch: int, decode_steps: int, shape: AttentionShape,
                  lock: Any = None, tick: Callable[[], None] = lambda: None) -> BatchPoint:
    """Prefill `prompt_ids` ([1, n]) repeated `batch` times, one untimed decode step, then `decode_steps` timed
    ones; the cache then holds n + decode_steps + 1 positions per sequence."""
    guard = lock if lock is not None else contextlib.nullcontext()
    device = model_device(model)
    ids = prompt_ids.to(device).expand(batch, -1).contiguous()  # [batch, n]
    cache = DynamicCache()
    with guard, torch.inference_mode():
        # logits_to_keep=1: only the last position's logits, [batch, 1, vocab]
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    times = []
    for step in range(decode_steps + 1):  # step 0 warms up (the first [batch, 1] forward allocates): not timed
        next_ids = logits[:, -1].argmax(-1, keepdim=True)  # [batch, 1]: greedy, one token per sequence
        with guard, torch.inference_mode():
            start = time.perf_counter()  # inside the lock: other visitors' forwards are not counted
            logits = model(input_ids=next_ids, past_key_values=cache, use_cache=True).logits
            if step > 0:
                times.append(time.perf_counter() - start)
        if step > 0:
            tick()
    return BatchPoint(batch, statistics.median(times), tuple(times), kv_point(cache, shape, batch))


def measure_batching(model: Any, prompt_ids: torch.Tensor, batch_sizes: Sequence[int], decode_steps: int,
                     lock: Any = None, cancel: threading.Event | None = None,
                     progress: ProgressCallback | None = None) -> BatchingCurve:
    """The batching curve: one BatchPoint per batch size. Raises MeasurementCancelled when `cancel` is set."""
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1 or prompt_ids.shape[1] < 1:
        raise ServingInputError(f"The prompt must have shape [1, n>=1], got {tuple(prompt_ids.shape)}.")
    if decode_steps < 1:
        raise ServingInputError("Decode at least one step per batch size.")
    shape = AttentionShape.from_config(model.config)
    total, done = len(batch_sizes) * decode_steps, [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    points = []
    for batch in batch_sizes:
        if cancel is not None and cancel.is_set():
            raise MeasurementCancelled(f"Stopped after batch sizes {[p.batch for p in points] or 'none'}.")
        points.append(measure_batch(model, prompt_ids, batch, decode_steps, shape, lock, tick))
    return BatchingCurve(tuple(points), int(prompt_ids.shape[1]), decode_steps, str(model_device(model)))


def batched_greedy(model: Any, prompts: Sequence[Sequence[int]], new_tokens: int, pad_id: int,
                   lock: Any = None) -> list[list[int]]:
    """Greedy-decode several prompts of different lengths in one batch; returns each one's new tokens.

    Prompts are left-padded so every row's last token sits in the last column. The attention mask
    ([batch, past + new]) hides the padding, and each row's positions count only its real tokens,
    so row i sees exactly what prompt i decoded alone would see."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ServingInputError("Every prompt needs at least one token.")
    guard = lock if lock is not None else contextlib.nullcontext()
    device = model_device(model)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)  # [batch, width]
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)  # [batch, width]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [batch, width]: 0.. over real tokens only
    cache = DynamicCache()
    generated: list[list[int]] = [[] for _ in prompts]
    for _ in range(new_tokens):
        with guard, torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                           use_cache=True, logits_to_keep=1).logits  # [batch, 1, vocab]
        ids = logits[:, -1].argmax(-1, keepdim=True)  # [batch, 1]
        for row, token in zip(generated, ids[:, 0].tolist()):
            row.append(token)
        mask = torch.cat([mask, torch.ones_like(ids)], dim=-1)  # the new token is real for every row
        positions = positions[:, -1:] + 1  # [batch, 1]
    return generated

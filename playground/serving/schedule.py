"""Static vs continuous batching, simulated step by step (pure and deterministic: no model, no clock).

Requests all arrive at time 0 (a room pressing "run" together) and are served first come, first
served on `slots` batch slots. Each request needs `length` decode steps (one token per step; prefill
is left out). A step with b running sequences costs `step_cost(b)` seconds: the costs measured on the
loaded model, interpolated between the measured batch sizes.

- static: take the next `slots` requests as a batch and run it until its longest request is done;
  finished rows stay in the batch as padding (they still cost compute) and new requests wait.
- continuous (iteration-level, Orca/vLLM style): after every step a finished request leaves and the
  next waiting one takes its slot, so the batch stays full while there is work.

    >>> costs = StepCostModel({1: 1.0})
    >>> static = simulate([3, 1, 2], slots=2, policy="static", step_cost=costs)
    >>> [(r.start_step, r.finish_step) for r in static.requests], static.total_steps
    ([(0, 3), (0, 1), (3, 5)], 5)
    >>> continuous = simulate([3, 1, 2], slots=2, policy="continuous", step_cost=costs)
    >>> [(r.start_step, r.finish_step) for r in continuous.requests], continuous.total_steps
    ([(0, 3), (0, 1), (1, 3)], 3)
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from playground.serving.errors import ServingInputError

POLICIES = ("static", "continuous")


class StepCostModel:
    """Seconds per decode step as a function of the batch size: linear between measured points, the
    nearest measured point outside them (flat: an honest "not measured" rather than an extrapolation)."""

    def __init__(self, costs: Mapping[int, float]) -> None:
        if not costs or any(b < 1 or not s > 0 for b, s in costs.items()):
            raise ServingInputError("Step costs need at least one batch size >= 1 with a positive time.")
        self.batches = sorted(int(b) for b in costs)
        self.seconds = [float(costs[b]) for b in self.batches]

    def __call__(self, batch: int) -> float:
        i = bisect.bisect_left(self.batches, batch)
        if i < len(self.batches) and self.batches[i] == batch:
            return self.seconds[i]
        if i == 0:
            return self.seconds[0]
        if i == len(self.batches):
            return self.seconds[-1]
        b0, b1, s0, s1 = self.batches[i - 1], self.batches[i], self.seconds[i - 1], self.seconds[i]
        return s0 + (s1 - s0) * (batch - b0) / (b1 - b0)

    def as_json(self) -> dict[str, float]:
        return {str(b): s for b, s in zip(self.batches, self.seconds)}


@dataclass(frozen=True)
class ScheduledRequest:
    index: int
    length: int  # tokens to generate
    start_step: int  # the step it entered the batch (it waited the steps before)
    finish_step: int  # the step after its last token
    start_seconds: float
    finish_seconds: float

    @property
    def waiting_seconds(self) -> float:
        return self.start_seconds


@dataclass(frozen=True)
class Schedule:
    policy: str
    slots: int
    requests: tuple[ScheduledRequest, ...]
    step_batches: tuple[int, ...]  # rows computed at each step (static: the padded batch)
    step_seconds: tuple[float, ...]

    @property
    def total_steps(self) -> int:
        return len(self.step_batches)

    @property
    def total_seconds(self) -> float:
        return sum(self.step_seconds)

    @property
    def tokens(self) -> int:
        return sum(r.length for r in self.requests)

    @property
    def throughput(self) -> float:
        """Useful tokens per second over the whole run (padding rows do not count)."""
        return self.tokens / self.total_seconds

    @property
    def mean_waiting_seconds(self) -> float:
        return sum(r.waiting_seconds for r in self.requests) / len(self.requests)

    @property
    def mean_latency_seconds(self) -> float:
        """Arrival (time 0) to last token, averaged over requests."""
        return sum(r.finish_seconds for r in self.requests) / len(self.requests)

    @property
    def slot_utilisation(self) -> float:
        """Useful tokens / (slots x steps): 1.0 means no idle or padded slot at any step."""
        return self.tokens / (self.slots * self.total_steps)

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "slots": self.slots, "total_steps": self.total_steps,
                "total_seconds": self.total_seconds, "tokens": self.tokens, "throughput": self.throughput,
                "mean_waiting_seconds": self.mean_waiting_seconds,
                "mean_latency_seconds": self.mean_latency_seconds, "slot_utilisation": self.slot_utilisation,
                "requests": [{"index": r.index, "length": r.length, "start_step": r.start_step,
                              "finish_step": r.finish_step, "start_seconds": r.start_seconds,
                              "finish_seconds": r.finish_seconds} for r in self.requests],
                "step_batches": list(self.step_batches)}


def check_requests(lengths: Sequence[int], slots: int) -> None:
    if not lengths:
        raise ServingInputError("Give at least one request length.")
    if any(int(n) != n or n < 1 for n in lengths):
        raise ServingInputError("Request lengths must be whole numbers of tokens, at least 1.")
    if slots < 1:
        raise ServingInputError("The batch needs at least one slot.")


def _static_steps(lengths: Sequence[int], slots: int) -> tuple[list[tuple[int, int]], list[int]]:
    """(start, finish) per request and the batch rows per step: groups of `slots`, each as long as its longest."""
    spans, batches, now = [], [], 0
    for first in range(0, len(lengths), slots):
        group = lengths[first:first + slots]
        spans += [(now, now + n) for n in group]
        batches += [len(group)] * max(group)
        now += max(group)
    return spans, batches


def _continuous_steps(lengths: Sequence[int], slots: int) -> tuple[list[tuple[int, int]], list[int]]:
    """(start, finish) per request and the rows per step: a free slot takes the next waiting request."""
    spans: list[tuple[int, int]] = [(0, 0)] * len(lengths)
    running: dict[int, int] = {}  # request -> tokens still to generate
    waiting, batches, step = list(range(len(lengths))), [], 0
    while waiting or running:
        while waiting and len(running) < slots:
            request = waiting.pop(0)
            running[request] = lengths[request]
            spans[request] = (step, 0)
        batches.append(len(running))
        step += 1
        for request in list(running):
            running[request] -= 1
            if running[request] == 0:
                del running[request]
                spans[request] = (spans[request][0], step)
    return spans, batches


def simulate(lengths: Sequence[int], slots: int, policy: str, step_cost: StepCostModel) -> Schedule:
    """Serve requests of `lengths` tokens on `slots` slots under `policy`, timing each step by `step_cost`."""
    check_requests(lengths, slots)
    if policy not in POLICIES:
        raise ServingInputError(f"Policy must be one of {', '.join(POLICIES)}, got {policy!r}.")
    lengths = [int(n) for n in lengths]
    spans, batches = (_static_steps if policy == "static" else _continuous_steps)(lengths, slots)
    seconds = [step_cost(b) for b in batches]
    clock = [0.0]  # clock[s]: seconds elapsed before step s
    for s in seconds:
        clock.append(clock[-1] + s)
    requests = tuple(ScheduledRequest(i, n, start, finish, clock[start], clock[finish])
                     for i, (n, (start, finish)) in enumerate(zip(lengths, spans)))
    return Schedule(policy, slots, requests, tuple(batches), tuple(seconds))


def parse_lengths(text: str, max_requests: int, max_tokens: int) -> list[int]:
    """"12, 40 8" -> [12, 40, 8]; a clear error for anything else."""
    parts = [p for p in re.split(r"[\s,;]+", str(text).strip()) if p]
    if not parts:
        raise ServingInputError("Type the requests' lengths in tokens, e.g. 12, 40, 8.")
    if len(parts) > max_requests:
        raise ServingInputError(f"At most {max_requests} requests on this server, got {len(parts)}.")
    lengths = []
    for part in parts:
        if not part.isdigit() or not 1 <= int(part) <= max_tokens:
            raise ServingInputError(f"Each request length must be a whole number of tokens in 1..{max_tokens:,}; "
                                    f"got {part[:20]!r}.")
        lengths.append(int(part))
    return lengths


def parse_step_costs(text: str) -> StepCostModel:
    """"1:25, 8:27.5, 64:90" (batch: milliseconds per step) -> StepCostModel."""
    costs = {}
    for part in [p for p in re.split(r"[\s,;]+", str(text).strip()) if p]:
        match = re.fullmatch(r"(\d+):(\d+(?:\.\d+)?)", part)
        if match is None or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise ServingInputError(f"Step costs are 'batch:milliseconds' pairs like 1:25, 64:90; got "
                                    f"{part[:20]!r}.")
        costs[int(match.group(1))] = float(match.group(2)) / 1000
    if not costs:
        raise ServingInputError("Give step costs as 'batch:milliseconds' pairs, or measure the batching curve first.")
    return StepCostModel(costs)


def format_step_costs(costs: Mapping[int, float]) -> str:
    """The inverse of parse_step_costs (milliseconds to 0.01)."""
    return ", ".join(f"{b}:{s * 1000:.2f}" for b, s in sorted(costs.items()))

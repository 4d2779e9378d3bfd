"""One training run's hyperparameters (LoraSettings), their allowed ranges, and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from playground.limits import LIMITS as SERVER_LIMITS
from playground.limits import shown
from playground.lora.errors import LoraSettingsError

SCHEDULES = ("constant", "cosine")

# (low, high), inclusive: the UI sliders and the error messages read the same ranges.
LIMITS: dict[str, tuple[float, float]] = {
    "rank": (1, 64),
    "alpha": (0.5, 1024),
    "dropout": (0.0, 0.5),
    "learning_rate": (1e-6, 0.1),
    "warmup_steps": (0, 1000),
    "steps": (1, SERVER_LIMITS.training_steps),
    "epochs": (0, 20),
    "batch_size": (1, 64),
    "grad_accumulation": (1, 64),
    "max_length": (16, 2048),
    "seed": (0, 2**31 - 1),
    "eval_every": (1, 1000),
    "max_grad_norm": (0.01, 100.0),
}
INTEGER_FIELDS = ("rank", "warmup_steps", "steps", "batch_size", "grad_accumulation", "max_length", "seed",
                  "eval_every")


def check_limit(name: str, value: Any) -> float:
    """`value` if it is a number within LIMITS[name] (a whole number where one is needed); else a
    LoraSettingsError that gives the range."""
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LoraSettingsError(f"{name} must be a number between {low:g} and {high:g}, got {shown(value)}")
    if name in INTEGER_FIELDS and value != int(value):
        raise LoraSettingsError(f"{name} must be a whole number, got {value}")
    if not low <= value <= high:
        raise LoraSettingsError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return int(value) if name in INTEGER_FIELDS else value


@dataclass(frozen=True)
class LoraSettings:
    """One training run's hyperparameters. The defaults are the demo run: the pirate style on
    SmolLM2-135M, a clearly falling loss in under 3 minutes on 2 CPU cores."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 2e-3
    schedule: str = "cosine"  # constant | cosine, both after a linear warmup
    warmup_steps: int = 3
    steps: int = 40
    epochs: float = 0.0  # > 0: train this many passes over the train split instead of `steps`
    batch_size: int = 4
    grad_accumulation: int = 1
    max_length: int = 96
    seed: int = 0
    mask_prompt: bool = True  # loss on the response tokens only
    eval_every: int = 10
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        for name in LIMITS:
            object.__setattr__(self, name, check_limit(name, getattr(self, name)))
        if self.schedule not in SCHEDULES:
            raise LoraSettingsError(f"schedule must be one of {SCHEDULES}, got {shown(self.schedule)}")
        if not self.target_modules:
            raise LoraSettingsError("Pick at least one target module (e.g. q_proj and v_proj).")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of the run: `steps`, or enough steps for `epochs` passes over n_train examples."""
        if self.epochs > 0:
            return max(1, math.ceil(self.epochs * n_train / (self.batch_size * self.grad_accumulation)))
        return self.steps

    @property
    def scaling(self) -> float:
        """alpha / r: how strongly B @ A is added to W."""
        return self.alpha / self.rank

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}


def learning_rate_at(step: int, total_steps: int, settings: LoraSettings) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup from 0, then constant or a cosine
    decay to 0 at `total_steps` — the same numbers as transformers' get_constant_schedule_with_warmup /
    get_cosine_schedule_with_warmup (tested)."""
    warmup = settings.warmup_steps
    if step < warmup:
        return settings.learning_rate * step / max(1, warmup)
    if settings.schedule == "constant":
        return settings.learning_rate
    progress = (step - warmup) / max(1, total_steps - warmup)
    return settings.learning_rate * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

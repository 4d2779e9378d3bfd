"""Independent references for the sampling pipeline: transformers' own logits processors.

One implementation, used by the unit tests (tests/unit/test_sampling*.py), the real-model tests
(tests/integration/test_sampling_real.py) and the device suite (tests/device). Import it like tests/tiny.py:
`from reference import ...` (tests/conftest.py puts tests/ on sys.path).

    >>> settings = SamplingSettings(temperature=0.7, top_k=50)
    >>> reference = transformers_stage_logits(logits, input_ids, settings)   # {"raw", "repetition_penalty", ...}
    >>> assert_stages_match(pipeline_stages(logits, settings, input_ids)["min_p"], reference["min_p"])
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# The order `generate` builds them in, and the names playground.sampling.STAGE_NAMES gives the stages.
PROCESSORS = {
    "repetition_penalty": RepetitionPenaltyLogitsProcessor,
    "temperature": TemperatureLogitsWarper,
    "top_k": TopKLogitsWarper,
    "top_p": TopPLogitsWarper,
    "min_p": MinPLogitsWarper,
}
STAGES = tuple(PROCESSORS)


def transformers_processor(stage: str, value: float) -> Any:
    """transformers' processor for one stage (e.g. ("top_p", 0.9) -> TopPLogitsWarper(0.9))."""
    return PROCESSORS[stage](value)


def transformers_stage(stage: str, value: float, logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """One stage applied by transformers. logits: [batch, vocab]; input_ids: [batch, n] (only the penalty reads
    them). The logits are not changed in place."""
    return transformers_processor(stage, value)(input_ids, logits.clone())


def transformers_processors(settings: Any) -> dict[str, Any]:
    """The processors `generate` would apply for these SamplingSettings, per stage; None where the stage is
    off (top-k 0, top-p 1, min-p 0). The penalty and the temperature are always applied (1.0 is the identity)."""
    return {
        "repetition_penalty": RepetitionPenaltyLogitsProcessor(settings.repetition_penalty),
        "temperature": TemperatureLogitsWarper(settings.temperature),
        "top_k": TopKLogitsWarper(settings.top_k) if settings.top_k else None,
        "top_p": TopPLogitsWarper(settings.top_p) if settings.top_p < 1 else None,
        "min_p": MinPLogitsWarper(settings.min_p) if settings.min_p else None,
    }


def transformers_stage_logits(logits: torch.Tensor, input_ids: torch.Tensor, settings: Any) -> dict[str, torch.Tensor]:
    """The logits after each stage, transformers' processors applied one at a time in generate's order.

    logits: [vocab] or [batch, vocab]; input_ids: [n] or [batch, n] (the history the penalty reads).
    Returns {"raw", "repetition_penalty", "temperature", "top_k", "top_p", "min_p"} -> tensors shaped like
    `logits`; a stage that is off repeats the previous one. "min_p" is the whole chain's result."""
    single = logits.dim() == 1
    scores = logits[None].clone() if single else logits.clone()  # [batch, vocab]
    history = input_ids[None] if input_ids.dim() == 1 else input_ids  # [batch, n]
    stages = {"raw": logits.clone()}
    for name, processor in transformers_processors(settings).items():
        if processor is not None:
            scores = processor(history, scores)
        stages[name] = scores[0] if single else scores
    return stages


def stage_difference(ours: torch.Tensor, reference: torch.Tensor, atol: float = 1e-6,
                     rtol: float = 1e-6) -> tuple[bool, bool, float]:
    """(same -inf mask, |ours - reference| <= atol + rtol |reference| where finite, the worst difference there):
    the numbers assert_stages_match checks, for a report that records them."""
    same_mask = torch.equal(torch.isinf(ours), torch.isinf(reference))
    finite = torch.isfinite(reference)
    difference = (ours[finite] - reference[finite]).abs()
    worst = float(difference.max()) if difference.numel() else 0.0
    close = bool((difference <= atol + rtol * reference[finite].abs()).all())
    return same_mask, close, worst


def assert_stages_match(ours: torch.Tensor, reference: torch.Tensor, atol: float = 1e-6, rtol: float = 1e-6) -> None:
    """Cut (-inf) at exactly the same places, and equal to atol + rtol |reference| where finite."""
    assert torch.equal(torch.isinf(ours), torch.isinf(reference))
    finite = torch.isfinite(reference)
    torch.testing.assert_close(ours[finite], reference[finite], atol=atol, rtol=rtol)

"""Why this token: which input tokens push the model towards its chosen token rather than a runner-up.

The quantity explained is the logit difference at the last position, f(x) = logit_target(x) − logit_contrast(x),
a function of the input embeddings x [n, hidden]. Two answers, side by side:

- integrated gradients (Sundararajan et al. 2017) from a baseline x⁰ = the padding token's embedding at
  every position:
      IG_i = Σ_j (x_ij − x⁰_ij) · ∫₀¹ ∂f/∂x_ij (x⁰ + α(x − x⁰)) dα,
  the integral by Gauss-Legendre quadrature over `steps` points (exact for polynomials of degree 2·steps−1, so
  far closer than the Riemann sum at the same cost). Completeness: Σ_i IG_i = f(x) − f(x⁰), up to the
  quadrature error, which the tab shows;
- leave one out: LOO_i = f(prompt) − f(prompt without token i), a real forward of the shorter prompt.

Their agreement is Spearman's rank correlation over the input tokens.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import spearmanr

from playground.attention import token_labels
from playground.inside.prompt import EncodedPrompt, InsideInputError, stop_if_asked

STEP_BATCH = 16  # interpolation points per forward + backward


@dataclass(frozen=True)
class Attribution:
    prompt: EncodedPrompt
    target_id: int
    contrast_id: int
    target: str
    contrast: str
    logit_diff: float  # f(x)
    baseline_diff: float  # f(x⁰): the baseline token's embedding at every position
    baseline_id: int
    ig: np.ndarray  # [n] per input token (summed over the embedding dimensions)
    loo: np.ndarray  # [n]
    steps: int
    spearman: float | None  # None when either side is constant (a one-token prompt, say)

    @property
    def ig_sum(self) -> float:
        return float(self.ig.sum())

    @property
    def completeness_error(self) -> float:
        """|Σ IG − (f(x) − f(x⁰))| relative to |f(x) − f(x⁰)|."""
        change = self.logit_diff - self.baseline_diff
        return abs(self.ig_sum - change) / max(abs(change), 1e-12)


def default_pair(model: Any, prompt: EncodedPrompt, lock: Any = None) -> tuple[int, int]:
    """The model's top next token and its runner-up."""
    guard = lock if lock is not None else contextlib.nullcontext()
    with guard, torch.inference_mode():
        logits = model(prompt.ids, use_cache=False, logits_to_keep=1).logits[0, -1]
    top2 = logits.topk(2).indices.tolist()
    return int(top2[0]), int(top2[1])


def logit_difference(logits: torch.Tensor, target: int, contrast: int) -> torch.Tensor:
    """logits [batch, vocab] -> f [batch]."""
    return logits[:, target] - logits[:, contrast]


def baseline_token(tokenizer: Any) -> int:
    """The token whose embedding is the IG baseline: padding, else end of text (a token that carries no content)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if token_id is not None:
            return int(token_id)
    return 0


def integrated_gradients(model: Any, ids: torch.Tensor, target: int, contrast: int, steps: int, baseline_id: int,
                         lock: Any = None, progress: Callable[[int, int], None] | None = None, cancel: Any = None
                         ) -> tuple[np.ndarray, float, float]:
    """(IG per token [n], f(x), f(x⁰)) for ids [1, n]. The model's weights must be float (gradients). A set
    `cancel` (threading.Event) ends it before the next batch of steps (InsideCancelled)."""
    guard = lock if lock is not None else contextlib.nullcontext()
    embeddings = model.get_input_embeddings()
    with torch.no_grad():
        x = embeddings(ids)[0].float()  # [n, hidden]
        x0 = embeddings(torch.full_like(ids, baseline_id))[0].float()  # [n, hidden]
        x0[0] = x[0]  # the first token stays: see the module docstring
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
    alphas = torch.tensor((nodes + 1) / 2, dtype=x.dtype)  # on [0, 1]
    step_weights = torch.tensor(weights / 2, dtype=torch.float64)  # sum to 1
    gradient_integral = torch.zeros(x.shape, dtype=torch.float64)  # ∫ ∂f/∂x dα: [n, hidden]
    for first in range(0, steps, STEP_BATCH):
        stop_if_asked(cancel, first, steps, "steps")
        alpha = alphas[first:first + STEP_BATCH]
        points = (x0[None] + alpha[:, None, None] * (x - x0)[None]).requires_grad_(True)  # [batch, n, hidden]
        with guard:
            logits = model(inputs_embeds=points, use_cache=False, logits_to_keep=1).logits[:, -1]
            # rows are independent, so the gradient of the sum is each row's own gradient
            (gradient,) = torch.autograd.grad(logit_difference(logits, target, contrast).sum(), points)
        gradient_integral += (step_weights[first:first + STEP_BATCH, None, None] * gradient.double()).sum(0)
        if progress is not None:
            progress(min(first + STEP_BATCH, steps), steps)
    attributions = ((x - x0).double() * gradient_integral).sum(-1)  # (x − x⁰)·∫∇f, summed over hidden: [n]
    with guard, torch.no_grad():
        ends = torch.stack([x, x0])  # f(x) and f(x⁰) in one forward
        f = logit_difference(model(inputs_embeds=ends, use_cache=False, logits_to_keep=1).logits[:, -1],
                             target, contrast).double()
    return attributions.numpy(), float(f[0]), float(f[1])


def leave_one_out(model: Any, ids: torch.Tensor, target: int, contrast: int, lock: Any = None) -> np.ndarray:
    """f(prompt) − f(prompt without token i) for each i, in one batched forward of n prompts of n − 1 tokens."""
    n = ids.shape[1]
    if n < 2:
        raise InsideInputError("Leave-one-out needs a prompt of at least 2 tokens.")
    keep = ~torch.eye(n, dtype=torch.bool)  # row i: every position but i
    shorter = ids[0].expand(n, n)[keep].reshape(n, n - 1)  # [n, n-1]
    guard = lock if lock is not None else contextlib.nullcontext()
    with guard, torch.inference_mode():
        full = logit_difference(model(ids, use_cache=False, logits_to_keep=1).logits[:, -1], target, contrast)
        edited = logit_difference(model(shorter, use_cache=False, logits_to_keep=1).logits[:, -1], target, contrast)
    return (full - edited).double().numpy()


def attribute(model: Any, tokenizer: Any, prompt: EncodedPrompt, target: int | None, contrast: int | None,
              steps: int, lock: Any = None, progress: Callable[[int, int], None] | None = None,
              cancel: Any = None) -> Attribution:
    """Both attributions of the logit difference target − contrast (defaults: the top token and its runner-up)."""
    if target is None or contrast is None:
        top, runner_up = default_pair(model, prompt, lock)
        target = top if target is None else target
        contrast = (runner_up if target == top else top) if contrast is None else contrast
    if target == contrast:
        raise InsideInputError("The token and the one it is compared with are the same token: pick two different ones.")
    baseline_id = baseline_token(tokenizer)
    ig, f_x, f_base = integrated_gradients(model, prompt.ids, target, contrast, steps, baseline_id, lock, progress,
                                           cancel)
    loo = leave_one_out(model, prompt.ids, target, contrast, lock)
    rho = spearmanr(ig, loo).statistic if np.ptp(ig) > 0 and np.ptp(loo) > 0 else None
    target_label, contrast_label = token_labels(tokenizer, [target, contrast])
    return Attribution(prompt, target, contrast, target_label, contrast_label, f_x, f_base, baseline_id, ig, loo, steps,
                       None if rho is None else float(rho))


def attribution_json(result: Attribution) -> dict[str, Any]:
    return {"tokens": list(result.prompt.tokens), "token_ids": result.prompt.ids[0].tolist(),
            "note": result.prompt.note, "target": {"id": result.target_id, "token": result.target},
            "contrast": {"id": result.contrast_id, "token": result.contrast}, "steps": result.steps,
            "logit_diff": round(result.logit_diff, 6), "baseline_logit_diff": round(result.baseline_diff, 6),
            "baseline_token_id": result.baseline_id,
            "integrated_gradients": np.round(result.ig, 6).tolist(), "ig_sum": round(result.ig_sum, 6),
            "completeness_error": round(result.completeness_error, 6),
            "leave_one_out": np.round(result.loo, 6).tolist(), "spearman": result.spearman}

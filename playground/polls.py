"""What the model says for each classroom poll (the answers the room's guesses are held against).

Every poll starts from the model's real next-token logits after the poll's prompt (one forward, the
same prefill the Sampling tab shows) and reuses the one sampling pipeline and the one speculative
acceptance rule, so a poll can never disagree with the tab that teaches the idea.

- next_token: the model's top tokens, and for each guess of the room the token it maps to, that token's
  probability and its rank among the vocabulary.
- top_p_keeps: does top-p keep a named token? (it does if the tokens ranked before it hold less than p)
- draft_accepted: a draft proposed a token with probability q; the target accepts with min(1, p / q).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

from playground.sampling import SamplingSettings, final_probabilities


class PollInputError(ValueError):
    """A poll that cannot be set up (a token the vocabulary cannot express in one token...)."""


@dataclass(frozen=True)
class TokenProbability:
    text: str  # the token's text as decoded ('·' is not substituted: the UI renders it)
    token_id: int
    prob: float  # softmax of the raw logits (temperature 1, no filter)
    rank: int  # 1 = the model's top token

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """logits: [vocab] -> probs: [vocab] in float64 (rare tokens keep their digits)."""
    return torch.softmax(logits.double(), dim=-1)


def _rank(probs: torch.Tensor, token_id: int) -> int:
    return int((probs > probs[token_id]).sum().item()) + 1


def token_probability(probs: torch.Tensor, tokenizer: Any, token_id: int) -> TokenProbability:
    return TokenProbability(tokenizer.decode([token_id]), token_id, float(probs[token_id]), _rank(probs, token_id))


def top_tokens(probs: torch.Tensor, tokenizer: Any, n: int = 10) -> list[TokenProbability]:
    values, ids = torch.topk(probs, min(n, probs.numel()))
    return [TokenProbability(tokenizer.decode([int(i)]), int(i), float(v), rank)
            for rank, (v, i) in enumerate(zip(values.tolist(), ids.tolist()), start=1)]


def guess_token(probs: torch.Tensor, tokenizer: Any, guess: str) -> TokenProbability:
    """The token a typed guess stands for: a guess is typed without the leading space most tokens after a
    word carry, so both ' Paris' and 'Paris' are tried and the likelier first token wins."""
    candidates = []
    for text in dict.fromkeys((" " + guess.strip(), guess.strip(), guess)):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if ids:
            candidates.append(int(ids[0]))
    if not candidates:
        raise PollInputError(f"{guess!r} is no token of this model's vocabulary.")
    best = max(candidates, key=lambda token_id: float(probs[token_id]))
    return token_probability(probs, tokenizer, best)


def score_guesses(probs: torch.Tensor, tokenizer: Any, tally: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    """One row per distinct guess: how many gave it, their share, and the model's view of its token."""
    total = sum(count for _, count in tally) or 1
    rows = []
    for guess, count in tally:
        token = guess_token(probs, tokenizer, guess)
        rows.append({"guess": guess, "count": count, "share": count / total, **token.as_dict()})
    return rows


def room_rank(rows: Sequence[dict[str, Any]]) -> int | None:
    """The model's rank of the room's favourite guess (1 = the room agreed with the model's top token)."""
    return rows[0]["rank"] if rows else None


def single_token(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise PollInputError(f"{text!r} is {len(ids)} tokens for this model; pick one token (e.g. ' Paris').")
    return int(ids[0])


def top_p_truth(logits: torch.Tensor, tokenizer: Any, token_text: str, top_p: float) -> dict[str, Any]:
    """Whether top-p keeps `token_text`, through the sampling pipeline itself (temperature 1, top-p only)."""
    if not 0.0 < top_p <= 1.0:
        raise PollInputError(f"top-p must be in (0, 1], got {top_p}.")
    token_id = single_token(tokenizer, token_text)
    probs = probabilities(logits)
    kept = final_probabilities(logits.float(), SamplingSettings(temperature=1.0, top_p=top_p))  # [vocab]
    before = float(probs[probs > probs[token_id]].sum())  # mass of the tokens ranked above it
    return {"answer": "yes" if float(kept[token_id]) > 0 else "no", "token": token_text, "top_p": top_p,
            **token_probability(probs, tokenizer, token_id).as_dict(), "mass_before": before,
            "kept_tokens": int((kept > 0).sum())}


def draft_truth(logits: torch.Tensor, tokenizer: Any, token_text: str, draft_prob: float) -> dict[str, Any]:
    """A draft proposed `token_text` with probability q; speculative sampling accepts it with min(1, p / q)."""
    if not 0.0 < draft_prob <= 1.0:
        raise PollInputError(f"the draft's probability q must be in (0, 1], got {draft_prob}.")
    token_id = single_token(tokenizer, token_text)
    probs = probabilities(logits)
    p = float(probs[token_id])
    acceptance = min(1.0, p / draft_prob)
    return {"answer": "yes" if acceptance >= 0.5 else "no", "token": token_text, "q": draft_prob,
            **token_probability(probs, tokenizer, token_id).as_dict(), "acceptance": acceptance}

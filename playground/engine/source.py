"""The token source the compute functions accept when an engine serves the tokens: the prompt's ids (the
engine's own tokenizer and chat template), the next token's top-N log-probabilities, token texts.

An engine returns only the top N of V next-token log-probabilities. `NextTokenLogprobs.logits()` turns
them into a full [V] logit vector the one sampling pipeline can take: the N returned tokens keep their
log-probabilities exactly, and the missing mass (1 - sum of the N probabilities) is spread evenly over
the other V - N tokens. That keeps every returned token's probability and the raw order exact (the
even share, the mean of the unreturned probabilities, is never above the N-th returned one), so top-k
(k <= N), top-p and min-p decide the returned tokens exactly; temperature's renormalisation assumes
that flat tail, and the view says so.

    >>> top = NextTokenLogprobs((1,), {0: math.log(0.5), 1: math.log(0.3)}, vocab_size=4, asked=2)
    >>> round(top.rest_mass, 3)
    0.2
    >>> [round(p, 3) for p in top.logits().softmax(-1).tolist()]
    [0.5, 0.3, 0.1, 0.1]
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from playground.engine.client import EngineClient
from playground.engine.errors import EngineError, EngineResponseError

MAX_CACHED_TEXTS = 100_000  # token id -> text; a 150k vocabulary's texts are a few MB at most


@dataclass(frozen=True)
class NextTokenLogprobs:
    """What the engine returned for one next token: the top N of V log-probabilities (natural log)."""

    prompt_ids: tuple[int, ...]
    top: dict[int, float]  # token id -> log p, N entries
    vocab_size: int
    asked: int

    @property
    def rest_mass(self) -> float:
        """Probability of every token the engine did not return, together (>= 0 up to rounding)."""
        return max(0.0, 1.0 - math.fsum(math.exp(value) for value in self.top.values()))

    def logits(self) -> torch.Tensor:
        """[vocab] float32 log-probabilities: the N returned exactly, the rest an even share of the missing mass
        (-inf when nothing is missing)."""
        missing = self.vocab_size - len(self.top)
        share = self.rest_mass / missing if missing else 0.0
        logits = torch.full((self.vocab_size,), math.log(share) if share > 0 else -math.inf, dtype=torch.float64)
        ids = torch.tensor(list(self.top), dtype=torch.long)
        logits[ids] = torch.tensor(list(self.top.values()), dtype=torch.float64)
        return logits.float()

    def note(self) -> str:
        """The sentence every engine-backed view shows: what was returned and what was not."""
        return (f"Engine: top {len(self.top)} of {self.vocab_size:,} tokens; the rest, p = {self.rest_mass:.4f}, "
                f"not returned by the engine (spread evenly over the other {self.vocab_size - len(self.top):,} tokens "
                "here: the returned tokens' probabilities and order are exact, temperature's effect on the tail is not).")


class EngineVocabulary:
    """Token id -> text through the engine's /detokenize, cached: what `tokenizer.decode([id])` is for the
    local model (the sampling views call `decode` on whatever tokenizer they are given)."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self._texts: dict[int, str] = {}
        self._lock = threading.Lock()

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.token_text(int(token_id)) for token_id in ids)

    def token_text(self, token_id: int) -> str:
        with self._lock:
            if token_id in self._texts:
                return self._texts[token_id]
        text = self.client.detokenize([token_id])
        with self._lock:
            if len(self._texts) < MAX_CACHED_TEXTS:
                self._texts[token_id] = text
        return text


class EngineTokenSource:
    """One engine as the source of tokens and log-probabilities (one per app: thread-safe, caches shared)."""

    def __init__(self, client: EngineClient, vocab_size: int | None = None) -> None:
        self.client = client
        self.tokenizer = EngineVocabulary(client)  # duck-types the part of a tokenizer the views use
        self._vocab_size = vocab_size

    @property
    def key(self) -> str:
        """Names the source in caches and traces, like model_key() does for a local model."""
        return f"engine:{self.client.url}|{self.client.model()}"

    @property
    def vocab_size(self) -> int:
        """V: from the operator's setting, else found once with /detokenize (the largest id it accepts)."""
        if self._vocab_size is None:
            self._vocab_size = self._find_vocab_size()
        return self._vocab_size

    def _find_vocab_size(self) -> int:
        """Binary search for the first token id the engine refuses in a prompt (~22 one-token requests, once per
        engine: /v1/models does not say V, and vLLM's /detokenize answers "" for any id)."""
        def accepts(token_id: int) -> bool:
            try:
                self.client.complete([token_id], max_tokens=1, logprobs=0)
                return True
            except EngineResponseError:  # vLLM: HTTP 400 "Token id N is out of vocabulary"
                return False

        low, high = 0, 1 << 22  # accepts(low) holds; 4M ids is beyond any tokenizer
        if not accepts(low) or accepts(high):
            raise EngineError(f"Cannot find the vocabulary size of the engine at {self.client.url}: set "
                              "PLAYGROUND_ENGINE_VOCAB_SIZE (the model's vocab_size).")
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if accepts(middle) else (low, middle)
        return high

    def prompt_ids(self, prompt: str | list[dict[str, str]], chat: bool) -> list[int]:
        """The ids the engine will see: chat (a string becomes one user message) through its own template."""
        if chat:
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            return self.client.tokenize(messages=messages, add_generation_prompt=True)[0]
        assert isinstance(prompt, str)
        return self.client.tokenize(prompt)[0]

    def next_token(self, prompt_ids: Sequence[int], top_n: int) -> NextTokenLogprobs:
        """The next token's top-`top_n` log-probabilities after prompt_ids (one engine step, greedy)."""
        completion = self.client.complete(list(prompt_ids), max_tokens=1, logprobs=top_n)[0]
        if not completion.tokens:
            raise EngineResponseError(f"The engine at {self.client.url} returned no token for this prompt.")
        first = completion.tokens[0]
        top = dict(sorted(first.top.items(), key=lambda item: -item[1])[:top_n])  # vLLM may add the sampled one
        return NextTokenLogprobs(tuple(int(i) for i in prompt_ids), top, self.vocab_size, top_n)


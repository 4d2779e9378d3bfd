"""Drafts for speculative decoding, and the KV-cached model session that both models use.

A draft proposes the next few tokens cheaply; the target then checks them all in one forward
(playground/speculative.py). Every draft returns the tokens *and* the distribution q each one was
drawn from, because exact speculative sampling needs q. Three drafts run offline on a CPU:

- `ModelDraft` over another model with the same tokenizer: the target's int4 or int8 copy (loaded
  by playground/runtime), or a smaller model of the same family (with a network / GPU);
- `ModelDraft` with `skip_layers`: the target itself with some decoder layers skipped (no new weights);
- `PromptLookupDraft`: copy what followed the last n-gram's earlier occurrence in the text (no model).
  Its q is a one-hot: it proposes deterministically.

Tiny worked example of prompt lookup (the last 2 tokens `7 8` occurred before, followed by `9 4`):

    >>> lookup_continuation([7, 8, 9, 4, 5, 7, 8], 2)
    [9, 4]

`build_draft` builds the draft the tab picked; which models play target and draft (and loading them) is
runtime/variants.py's `speculative_target` and `draft_model`. The benchmarks and the device check call
them too.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import torch

from playground.limits import shown
from playground.runtime import LoadedModel
from playground.runtime.decode import decode_forward, new_cache
from playground.runtime.variants import QUANTIZED_SELF_DRAFTS
from playground.sampling_pipeline import SamplingSettings, final_probabilities, sample_from


class SpeculativeError(ValueError):
    """Bad input for speculative decoding; the message names the problem and the allowed values."""


class DraftTokenizerError(SpeculativeError):
    """The draft and the target do not share token ids, so the draft's tokens mean nothing to the target."""


# ---------------------------------------------------------------------------------------------
# A model with its own KV cache: feed tokens, get logits; roll back by cropping the cache
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def skipping_layers(model: Any, skip: frozenset[int]) -> Iterator[None]:
    """Run `model` with the decoder layers in `skip` left out, then put them back.

    The decoder loops over `decoder.layers`, so a shorter ModuleList of the kept layers is all it
    takes. Each kept layer keeps its own `layer_idx`, so its keys/values land in its own cache slot.
    The caller holds the model's lock: other users must never see the shortened model.
    """
    if not skip:
        yield
        return
    decoder = model.get_decoder()
    all_layers = decoder.layers
    decoder.layers = torch.nn.ModuleList([layer for index, layer in enumerate(all_layers) if index not in skip])
    try:
        yield
    finally:
        decoder.layers = all_layers


class CachedModel:
    """A causal LM and its own KV cache (runtime/decode.py's `new_cache`). `ids` are the tokens whose keys/values
    are cached.

    `feed(tokens)` runs only the new tokens (the cache holds the rest) and returns their logits;
    `crop(n)` rolls the cache back to its first n tokens, which is how rejected drafts are undone.
    """

    def __init__(self, model: Any, lock: Any = None, skip_layers: Sequence[int] = ()) -> None:
        self.model = model
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.skip_layers = frozenset(int(i) for i in skip_layers)
        self.cache = new_cache(model)
        self.ids: list[int] = []
        self.forwards = 0
        self.device = next(model.parameters()).device
        self.embedding_rows = int(model.get_input_embeddings().num_embeddings)

    def feed(self, tokens: Sequence[int], keep: int = 1) -> torch.Tensor:
        """Run `tokens` after the cached ones -> the logits of the last `keep` of them [keep, vocab],
        float32 on the CPU. Row -1 is the model's next-token logits after `ids + tokens`.

        Only the rows needed are computed: the output head over a whole prompt would cost
        prompt_length x vocab x hidden multiply-adds for nothing.
        """
        if not tokens:
            raise ValueError("feed() needs at least one token")
        if not 1 <= keep <= len(tokens):
            raise ValueError(f"keep must be in 1..{len(tokens)}, got {keep}")
        if max(tokens) >= self.embedding_rows:  # e.g. a padding id of a larger sibling model
            raise SpeculativeError(f"Token id {max(tokens)} is outside this model's vocabulary "
                                   f"({self.embedding_rows} ids): the draft and the target must share token ids.")
        input_ids = torch.tensor([list(tokens)], device=self.device)  # [1, n]
        # a decoding step of the race (a draft's token or the target's check of k + 1 rows): runtime/decode.py
        with self.lock, torch.inference_mode(), skipping_layers(self.model, self.skip_layers):
            logits, _ = decode_forward(self.model, input_ids, self.cache, keep)
        self.ids.extend(int(t) for t in tokens)
        self.forwards += 1
        return logits[0].float().cpu()  # [keep, vocab]

    def crop(self, length: int) -> None:
        """Forget every cached token from position `length` on (DynamicCache.crop takes how many to remove)."""
        extra = len(self.ids) - length
        if extra > 0:
            self.cache.crop(-extra)
            del self.ids[length:]

    def pending(self, sequence: Sequence[int]) -> list[int]:
        """Roll back to the longest cached prefix of `sequence` and return the tokens still to feed.

        At least the last token is always returned: its logits (the prediction for what comes
        next) are not kept, so it is fed again when the cache already holds it.
        """
        common = 0
        for cached, wanted in zip(self.ids, sequence):
            if cached != wanted:
                break
            common += 1
        self.crop(min(common, len(sequence) - 1))
        return list(sequence[len(self.ids):])


# ---------------------------------------------------------------------------------------------
# Drafts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """What a draft proposes for one step."""

    token_ids: tuple[int, ...]  # up to k tokens
    q: torch.Tensor  # [len(token_ids), vocab]: row i is the distribution token i was drawn from
    seconds: float  # wall time spent drafting
    forwards: int  # model forwards spent (0 for prompt lookup)


class Draft(Protocol):
    label: str

    def propose(self, sequence: Sequence[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None, stop_ids: frozenset[int]) -> Proposal: ...


def penalty_history(sequence: Sequence[int], settings: SamplingSettings) -> torch.Tensor | None:
    """The ids a repetition penalty looks at (None when there is no penalty, to skip the work)."""
    return torch.tensor(list(sequence)) if settings.repetition_penalty != 1.0 else None


def draw_token(probs: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> int:
    """One token from probs [vocab]. Greedy distributions are one-hot: take the argmax, as the
    generation loop does, instead of spending a random number (and a multinomial) on a certainty."""
    return int(probs.argmax()) if settings.is_greedy else int(sample_from(probs, generator))


class ModelDraft:
    """A draft model with its own KV cache: k one-token forwards, each token drawn from q through
    the app's one sampling pipeline (so temperature, top-k and top-p shape q exactly like p)."""

    def __init__(self, model: Any, lock: Any = None, label: str = "draft model", skip_layers: Sequence[int] = (),
                 target_vocab_size: int | None = None) -> None:
        self.label = label
        self.session = CachedModel(model, lock, skip_layers)
        # A draft from the same family may have more output rows than the target (padded embeddings):
        # it may only propose ids the target can read, so its q is restricted to the target's width.
        self.target_vocab_size = target_vocab_size

    def propose(self, sequence: Sequence[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None, stop_ids: frozenset[int]) -> Proposal:
        started = time.perf_counter()
        forwards_before = self.session.forwards
        history = list(sequence)
        to_feed = self.session.pending(history)  # after a rejection: the cache is cropped here
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        for _ in range(k):
            logits = self.session.feed(to_feed)[-1, : self.target_vocab_size]  # [vocab]: what the draft expects next
            q = final_probabilities(logits, settings, penalty_history(history, settings))  # [vocab]
            token = draw_token(q, settings, generator)
            tokens.append(token)
            rows.append(q)
            history.append(token)
            if token in stop_ids:  # nothing follows an end of turn
                break
            to_feed = [token]
        q_rows = torch.stack(rows) if rows else torch.zeros(0, 0)
        return Proposal(tuple(tokens), q_rows, time.perf_counter() - started, self.session.forwards - forwards_before)


def lookup_continuation(sequence: Sequence[int], k: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Prompt lookup: find the last n tokens (n = max_ngram down to min_ngram) earlier in `sequence`
    and return up to k tokens that followed the first such occurrence ([] when none is found).

    Like transformers' PromptLookupCandidateGenerator: the longest n-gram wins, then the earliest match.
    """
    length = len(sequence)
    for n in range(min(max_ngram, length - 1), min_ngram - 1, -1):
        suffix = list(sequence[length - n:])
        for start in range(length - n):  # occurrences that end before the suffix itself
            if list(sequence[start:start + n]) == suffix:
                return list(sequence[start + n: start + n + k])
    return []


class PromptLookupDraft:
    """Drafts copied from earlier in the text. No model: q is the one-hot of the copied token, so
    a copied token is accepted with probability p(token) and a rejection resamples from p without it."""

    def __init__(self, vocab_size: int, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise SpeculativeError(f"n-gram sizes must satisfy 1 <= min <= max, got min={min_ngram}, max={max_ngram}")
        self.label = f"prompt lookup ({min_ngram}..{max_ngram}-gram)"
        self.vocab_size = vocab_size
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def propose(self, sequence: Sequence[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None, stop_ids: frozenset[int]) -> Proposal:
        started = time.perf_counter()
        tokens = lookup_continuation(sequence, k, self.max_ngram, self.min_ngram)
        for index, token in enumerate(tokens):
            if token in stop_ids:
                tokens = tokens[: index + 1]
                break
        q = torch.nn.functional.one_hot(torch.tensor(tokens, dtype=torch.long), self.vocab_size).float()
        return Proposal(tuple(tokens), q, time.perf_counter() - started, 0)


# ---------------------------------------------------------------------------------------------
# Checks and settings for the drafts
# ---------------------------------------------------------------------------------------------


def check_same_tokenizer(target_tokenizer: Any, draft_tokenizer: Any, draft_name: str = "the draft") -> None:
    """Refuse a draft whose token ids differ from the target's: its tokens would be other words."""
    target_vocab = target_tokenizer.get_vocab()
    draft_vocab = draft_tokenizer.get_vocab()
    if target_vocab == draft_vocab:
        return
    differing = sum(1 for token, index in draft_vocab.items() if target_vocab.get(token) != index)
    differing += sum(1 for token in target_vocab if token not in draft_vocab)
    raise DraftTokenizerError(
        f"The tokenizer of {draft_name} differs from the target's ({len(draft_vocab)} vs {len(target_vocab)} "
        f"tokens, {differing} token ids differ). Speculative decoding needs both models to give every token "
        "the same id: pick a draft from the target's model family (e.g. SmolLM2-135M for SmolLM2-1.7B)."
    )


_LAYER_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_layers(text: str, num_layers: int) -> tuple[int, ...]:
    """'20-27, 29' -> (20, ..., 27, 29): the decoder layers to skip, 0-based, checked against the model.

    Layer 0 always runs: the cache counts positions in layer 0's slot, and a model without its first
    layer has little idea what the tokens are.
    """
    layers: set[int] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _LAYER_ITEM.match(item)
        if match is None:
            raise SpeculativeError(f"Could not read {shown(item)} as a layer or a range: write e.g. '20-27, 29'")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first > last:
            raise SpeculativeError(f"The range {shown(item)} runs backwards: write the smaller layer first")
        layers.update(range(first, last + 1))
    if not layers:
        raise SpeculativeError("Name at least one layer to skip, e.g. '24-29'")
    if max(layers) >= num_layers:
        raise SpeculativeError(f"Layer {max(layers)} does not exist: the model has layers 0..{num_layers - 1}")
    if 0 in layers:
        raise SpeculativeError("Layer 0 cannot be skipped: the draft needs the first layer (skip from layer 1 on)")
    return tuple(sorted(layers))


# ---------------------------------------------------------------------------------------------
# Building the draft the tab picked (which models play target and draft: runtime/variants.py)
# ---------------------------------------------------------------------------------------------

DRAFT_KINDS = (*QUANTIZED_SELF_DRAFTS, "layer_skip", "ngram", "model")
DEFAULT_SKIP = "24-29"
OPEN_PROMPT = "Explain in a few sentences why the sky is blue."  # the tab's default prompt


def build_draft(kind: str, target: LoadedModel, skip_layers: str = DEFAULT_SKIP,
                model: LoadedModel | None = None) -> Draft:
    """The draft of `kind` (DRAFT_KINDS) for `target`. A self-draft or a draft model runs on `model`, the copy
    runtime.variants.draft_model loaded for it."""
    if kind in QUANTIZED_SELF_DRAFTS or kind == "model":
        if model is None:
            raise SpeculativeError(f"The {kind} draft needs its model: load it with runtime.variants.draft_model")
        if kind in QUANTIZED_SELF_DRAFTS:
            return ModelDraft(model.model, model.lock, f"{kind} copy of the target")
        check_same_tokenizer(target.tokenizer, model.tokenizer, model.spec.label)
        return ModelDraft(model.model, model.lock, model.spec.label,
                          target_vocab_size=int(target.model.config.vocab_size))
    if kind == "layer_skip":
        layers = parse_layers(skip_layers or "", int(target.model.config.num_hidden_layers))
        return ModelDraft(target.model, target.lock, f"target skipping layers {skip_layers.strip()}", layers)
    if kind == "ngram":
        return PromptLookupDraft(int(target.model.config.vocab_size))
    raise SpeculativeError(f"Unknown draft {shown(kind)}; pick one of {', '.join(DRAFT_KINDS)}")

"""The loaded LLM as a pointwise relevance judge: P("Yes") to "Is this passage relevant to the question?".

One forward per (question, passage) pair, batched with left padding: the next-token distribution at
the last prompt position gives P(Yes) and P(No). The rerank score is P(Yes) / (P(Yes) + P(No)),
which ignores the probability the model puts on other tokens (" yes", "The", ...).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from playground.rag.embedding import ProgressFn, no_progress

# Of three wordings tried on 20 (question, passage) pairs from our question set, this one and a
# question-first variant separated relevant from irrelevant passages best (AUC ~0.6 for SmolLM2-135M;
# a system prompt saying "judge relevance" did worse, AUC ~0.4). A 135M model is a weak judge.
JUDGE_SYSTEM = "You are a helpful assistant."
JUDGE_QUESTION = "Is this passage relevant to the question \"{question}\"? Answer with Yes or No."
MAX_PASSAGE_TOKENS = 384  # longer passages are cut for the judge (prefill cost grows with length)


class RerankError(ValueError):
    """The model cannot act as a Yes/No judge (e.g. "Yes" is not one token in its vocabulary)."""


@dataclass(frozen=True)
class Judgement:
    p_yes: float  # P(next token = "Yes") over the whole vocabulary
    p_no: float

    @property
    def score(self) -> float:
        """P(Yes) renormalised over {Yes, No}; 0.5 when the model puts no mass on either."""
        total = self.p_yes + self.p_no
        return self.p_yes / total if total > 0 else 0.5


def answer_token_ids(tokenizer: Any) -> tuple[int, int]:
    """Token ids of "Yes" and "No" as the first token of the assistant's reply."""
    ids = []
    for word in ("Yes", "No"):
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded) != 1:
            raise RerankError(f"the model's tokenizer splits {word!r} into {len(encoded)} tokens; "
                              "the Yes/No judge needs it as one token")
        ids.append(encoded[0])
    return ids[0], ids[1]


def judge_messages(question: str, passage: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Here is a passage:\n{passage}\n\n{JUDGE_QUESTION.format(question=question)}"}]


def judge_prompt_ids(tokenizer: Any, question: str, passage: str) -> list[int]:
    """Chat-templated prompt ids ending with the assistant header, passage cut to MAX_PASSAGE_TOKENS."""
    passage_ids = tokenizer.encode(passage, add_special_tokens=False)
    if len(passage_ids) > MAX_PASSAGE_TOKENS:
        passage = tokenizer.decode(passage_ids[:MAX_PASSAGE_TOKENS]) + " …"
    encoded = tokenizer.apply_chat_template(judge_messages(question, passage), add_generation_prompt=True,
                                            return_dict=True)
    return list(encoded["input_ids"])


def _left_padded(sequences: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and position_ids, each [batch, longest]; real tokens at the right so
    the last position is every row's next-token position."""
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, longest - len(ids):] = torch.tensor(ids)
        mask[row, longest - len(ids):] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # each row counts positions from its first real token
    return input_ids, mask, positions


def judge_relevance(model: Any, tokenizer: Any, question: str, passages: Sequence[str], batch_size: int = 4,
                    lock: Any = None, progress: ProgressFn = no_progress) -> list[Judgement]:
    """One Judgement per passage, in the order given."""
    yes_id, no_id = answer_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [judge_prompt_ids(tokenizer, question, passage) for passage in passages]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    device = next(model.parameters()).device
    judgements: dict[int, Judgement] = {}
    guard = lock if lock is not None else contextlib.nullcontext()
    for begin in range(0, len(order), batch_size):
        progress(begin / max(len(order), 1), f"Judging passages {begin + 1}-{min(begin + batch_size, len(order))} "
                 f"of {len(order)} with the LLM")
        members = order[begin:begin + batch_size]
        input_ids, mask, positions = _left_padded([prompts[i] for i in members], pad_id)
        with guard, torch.inference_mode():
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device), use_cache=False).logits[:, -1, :]  # [batch, vocab]
        probabilities = torch.softmax(logits.float(), dim=-1)
        for row, i in enumerate(members):
            judgements[i] = Judgement(float(probabilities[row, yes_id]), float(probabilities[row, no_id]))
    progress(1.0, f"Judged {len(order)} passages")
    return [judgements[i] for i in range(len(passages))]


class JudgementCache:
    """Judgements already computed, keyed by (model, question, passage), least recently used dropped."""

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, str, str], Judgement] = OrderedDict()
        self._lock = threading.Lock()  # guards the dict only, never held during forwards

    def judge(self, model_key: str, question: str, passages: Sequence[str],
              compute: Callable[[Sequence[str]], list[Judgement]]) -> list[Judgement]:
        """The judgements of `passages`, computing only the missing ones. The lock guards the dict only:
        `compute` (LLM forwards, seconds) runs outside it, so another visitor's cached judgements never wait
        for these forwards (two visitors asking the same new pair at once may both compute it; same result)."""
        with self._lock:
            known = {p: self._items[(model_key, question, p)] for p in dict.fromkeys(passages)
                     if (model_key, question, p) in self._items}
        missing = [p for p in dict.fromkeys(passages) if p not in known]
        known.update(zip(missing, compute(missing) if missing else []))
        with self._lock:
            for passage in passages:
                self._items[(model_key, question, passage)] = known[passage]
                self._items.move_to_end((model_key, question, passage))
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return [known[passage] for passage in passages]

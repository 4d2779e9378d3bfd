"""Training data: shipped and uploaded JSONL -> chat examples (with a report of what was rejected), then
token ids with the prompt masked out of the loss, and padded batches.

    >>> parse_jsonl('{"instruction": "Hi", "response": "Ahoy"}\\nnot json')[1][0].reason[:14]
    'not valid JSON'
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from playground.generation import encode_prompt
from playground.limits import LIMITS as SERVER_LIMITS
from playground.limits import lone_surrogate_at, shown
from playground.lora.errors import DatasetError

IGNORE_INDEX = -100  # label of a token the loss skips (the prompt, padding): transformers' convention
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "lora"
BUILTIN_DATASETS = {"pirate": "Pirate voice (a response style)", "json": "Answer as JSON (structured output)"}
MAX_UPLOAD_LINES = SERVER_LIMITS.lora_upload_lines  # a bigger upload is cut here (with a note)
EVAL_FRACTION = 0.1  # share of an uploaded dataset held out for eval


# ---------------------------------------------------------------------------------------------
# Datasets: JSONL -> chat examples, with a report of what was accepted and rejected
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatExample:
    """A conversation whose last message is the assistant's response (what the loss is taken on)."""

    messages: tuple[dict[str, str], ...]
    line: int = 0  # 1-based line in the uploaded file

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        return list(self.messages[:-1])

    @property
    def prompt(self) -> str:
        return self.messages[-2]["content"]

    @property
    def response(self) -> str:
        return self.messages[-1]["content"]


@dataclass(frozen=True)
class RejectedLine:
    line: int
    reason: str


@dataclass(frozen=True)
class Dataset:
    name: str
    train: tuple[ChatExample, ...]
    eval: tuple[ChatExample, ...]
    rejected: tuple[RejectedLine, ...] = ()
    notes: tuple[str, ...] = ()

    def report(self) -> dict[str, Any]:
        """What the UI shows after a dataset is chosen or uploaded (also part of the API JSON)."""
        return {
            "name": self.name,
            "accepted": len(self.train) + len(self.eval),
            "train": len(self.train),
            "eval": len(self.eval),
            "rejected": [asdict(r) for r in self.rejected],
            "notes": list(self.notes),
            "first_example": {"prompt": self.train[0].prompt, "response": self.train[0].response},
        }


ROLES = ("system", "user", "assistant")


def example_from_record(record: Any, line: int = 0) -> ChatExample:
    """One JSON object -> ChatExample. Accepted shapes:
    {"instruction": str, "input": str (optional), "response" or "output": str}, or
    {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]} ending with the assistant.
    Raises ValueError naming what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or len(messages) < 2:
            raise ValueError("'messages' must be a list of at least a user and an assistant message")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES \
                    or not isinstance(message.get("content"), str):
                raise ValueError(f"each message needs a role in {ROLES} and a string content, got {shown(message)}")
        if messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
            raise ValueError("the last message must be the assistant's answer to a user message")
        if not messages[-1]["content"].strip():
            raise ValueError("the assistant's answer is empty")
        return ChatExample(tuple({"role": m["role"], "content": m["content"]} for m in messages), line)
    instruction = record.get("instruction")
    response = record.get("response", record.get("output"))
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("missing a non-empty 'instruction' (or use 'messages')")
    if not isinstance(response, str) or not response.strip():
        raise ValueError("missing a non-empty 'response' (or 'output')")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise ValueError("'input' must be a string")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return ChatExample(({"role": "user", "content": prompt}, {"role": "assistant", "content": response}), line)


def parse_jsonl(text: str) -> tuple[list[ChatExample], list[RejectedLine], list[str]]:
    """Parse JSONL text: (accepted examples, rejected lines with reasons, notes). Blank lines are skipped."""
    lines = text.splitlines()
    notes = []
    if len(lines) > MAX_UPLOAD_LINES:
        notes.append(f"The file has {len(lines)} lines; only the first {MAX_UPLOAD_LINES} are used.")
        lines = lines[:MAX_UPLOAD_LINES]
    accepted, rejected = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            example = example_from_record(json.loads(raw), number)
            surrogate = next((message["content"][at] for message in example.messages
                              if (at := lone_surrogate_at(message["content"])) is not None), None)
            if surrogate is not None:
                raise ValueError(f"a text contains a lone surrogate (U+{ord(surrogate):04X}), which is not valid "
                                 "Unicode text; remove it")
            accepted.append(example)
        except json.JSONDecodeError as error:
            rejected.append(RejectedLine(number, f"not valid JSON ({error.msg} at column {error.colno})"))
        except RecursionError:
            rejected.append(RejectedLine(number, "nested too deeply to read (JSON arrays/objects inside each other)"))
        except ValueError as error:
            rejected.append(RejectedLine(number, str(error)))
    return accepted, rejected, notes


def dataset_from_jsonl(text: str, name: str = "upload", seed: int = 0) -> Dataset:
    """A user's JSONL upload, validated and split train/eval (EVAL_FRACTION held out, at least one)."""
    examples, rejected, notes = parse_jsonl(text)
    if len(examples) < 2:
        detail = "; ".join(f"line {r.line}: {r.reason}" for r in rejected[:3])
        raise DatasetError(f"The dataset needs at least 2 usable examples (one is held out for eval); found "
                           f"{len(examples)}, rejected {len(rejected)}" + (f" ({detail})" if detail else "") + ". "
                           'Each line should be {"instruction": ..., "response": ...} or {"messages": [...]}.')
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    n_eval = max(1, round(len(shuffled) * EVAL_FRACTION))
    return Dataset(name, tuple(shuffled[n_eval:]), tuple(shuffled[:n_eval]), tuple(rejected), tuple(notes))


def builtin_dataset(name: str) -> Dataset:
    """One of the shipped datasets (assets/lora/<name>/{train,eval}.jsonl, written by make_datasets.py)."""
    if name not in BUILTIN_DATASETS:
        raise DatasetError(f"Unknown dataset {shown(name)}; the shipped ones are {sorted(BUILTIN_DATASETS)}.")
    splits = {}
    for split in ("train", "eval"):
        examples, rejected, _ = parse_jsonl((ASSETS / name / f"{split}.jsonl").read_text(encoding="utf-8"))
        assert not rejected, f"shipped dataset {name}/{split} has bad lines: {rejected[:3]}"
        splits[split] = tuple(examples)
    return Dataset(name, splits["train"], splits["eval"])


# ---------------------------------------------------------------------------------------------
# Tokenization with prompt masking, and batches
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenizedExample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE_INDEX where no loss is taken; else equal to input_ids
    prompt_length: int  # tokens before the response (the chat template's prompt part)
    truncated: bool


@dataclass(frozen=True)
class TokenizedSplit:
    examples: tuple[TokenizedExample, ...]
    truncated: int  # examples cut at max_length
    dropped: int  # examples whose response was cut away entirely (nothing left to learn from)

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def target_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for e in self.examples for label in e.labels[1:])


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def conversation_ids(tokenizer: Any, example: ChatExample) -> tuple[list[int], int]:
    """(ids of the whole conversation, length of its prompt part). The prompt is encoded exactly as the
    generation loop encodes a question (`encode_prompt`), so training and answering see the same text.
    The response part is whatever the full rendering adds after the prompt (longest common prefix)."""
    prompt_ids = encode_prompt(tokenizer, example.prompt_messages)[0].tolist()
    if getattr(tokenizer, "chat_template", None):
        full_ids = tokenizer.apply_chat_template(list(example.messages), return_dict=True)["input_ids"]
    else:  # a base model without a template: prompt, response, then EOS so it learns to stop
        full_ids = prompt_ids + tokenizer(example.response, add_special_tokens=False)["input_ids"]
        full_ids.append(tokenizer.eos_token_id)
    return list(full_ids), _common_prefix_length(prompt_ids, full_ids)


def tokenize_example(tokenizer: Any, example: ChatExample, max_length: int, mask_prompt: bool) -> TokenizedExample:
    full_ids, prompt_length = conversation_ids(tokenizer, example)
    ids = full_ids[:max_length]
    labels = [IGNORE_INDEX if mask_prompt and i < prompt_length else token for i, token in enumerate(ids)]
    return TokenizedExample(tuple(ids), tuple(labels), prompt_length, len(full_ids) > max_length)


def tokenize_split(tokenizer: Any, examples: Sequence[ChatExample], max_length: int,
                   mask_prompt: bool) -> TokenizedSplit:
    """Tokenize, truncate to max_length, and drop examples with no target token left."""
    kept, truncated, dropped = [], 0, 0
    for example in examples:
        tokenized = tokenize_example(tokenizer, example, max_length, mask_prompt)
        truncated += tokenized.truncated
        if all(label == IGNORE_INDEX for label in tokenized.labels[1:]):
            dropped += 1
            continue
        kept.append(tokenized)
    return TokenizedSplit(tuple(kept), truncated, dropped)


def token_report(tokenizer: Any, dataset: Dataset, max_length: int, mask_prompt: bool) -> dict[str, Any]:
    """How the dataset tokenizes at max_length: sizes, truncated and dropped examples, loss share."""
    splits = {name: tokenize_split(tokenizer, examples, max_length, mask_prompt)
              for name, examples in (("train", dataset.train), ("eval", dataset.eval))}
    lengths = [len(e.input_ids) for split in splits.values() for e in split.examples]
    tokens = sum(split.tokens for split in splits.values())
    return {"max_length": max_length, "mask_prompt": mask_prompt,
            "truncated": sum(split.truncated for split in splits.values()),
            "dropped": sum(split.dropped for split in splits.values()),
            "mean_tokens": sum(lengths) / len(lengths) if lengths else 0.0, "longest_tokens": max(lengths, default=0),
            "loss_token_share": sum(split.target_tokens for split in splits.values()) / tokens if tokens else 0.0}


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [batch, seq] right-padded
    attention_mask: torch.Tensor  # [batch, seq] 1 on real tokens
    labels: torch.Tensor  # [batch, seq] IGNORE_INDEX on padding and masked prompt tokens

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def target_tokens(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def collate(examples: Sequence[TokenizedExample], pad_token_id: int) -> Batch:
    """Right-pad to the longest example of the batch (not to max_length: less padding, less compute)."""
    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        attention_mask[row, :n] = 1
        labels[row, :n] = torch.tensor(example.labels)
    return Batch(input_ids, attention_mask, labels)


def batch_order(n_examples: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless example indices, batch_size at a time: each epoch a fresh seeded permutation; a short last
    batch is filled from the next epoch."""
    generator = torch.Generator().manual_seed(seed)
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            pending += torch.randperm(n_examples, generator=generator).tolist()
        indices, pending = pending[:batch_size], pending[batch_size:]
        yield indices


def shuffled_batches(examples: Sequence[TokenizedExample], batch_size: int, seed: int,
                     pad_token_id: int) -> Iterator[Batch]:
    for indices in batch_order(len(examples), batch_size, seed):
        yield collate([examples[i] for i in indices], pad_token_id)


def fixed_batches(examples: Sequence[TokenizedExample], batch_size: int, pad_token_id: int) -> list[Batch]:
    return [collate(examples[i:i + batch_size], pad_token_id) for i in range(0, len(examples), batch_size)]

"""LoRA fine-tuning: datasets, the training loop, the background job and its JSONL progress log.

LoRA freezes every weight W (d x k) of the model and learns a low-rank update beside the chosen ones:

    W' = W + (alpha / r) * B @ A,    B: [d, r] starts at zero,  A: [r, k] random

so the adapted model starts out *identical* to the base model (B = 0) and trains r * (d + k) numbers
per matrix instead of d * k. The loss is the mean next-token cross-entropy over the response tokens
only (the prompt is masked with label -100), which teaches the model how to answer, not how to ask.

Everything here takes plain Python / torch values and returns frozen dataclasses or dicts; the UI
(playground/ui/lora_tab.py) polls the JSONL log that a `TrainingJob` writes, like LLaMA-Factory's
`Runner.monitor`, so a reloaded page can re-attach to a running job.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psutil
import torch
import torch.nn.functional as F

from playground.generation import encode_prompt, generate_text
from playground.runtime.int4 import quantize_int4_weights
from playground.runtime.loading import LoadedModel, count_parameters, memory_footprint_bytes, quantize_dynamic_int8
from playground.runtime.manager import ModelManager
from playground.limits import LIMITS as SERVER_LIMITS

IGNORE_INDEX = -100  # label of a token the loss skips (the prompt, padding): transformers' convention
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "lora"
BUILTIN_DATASETS = {"pirate": "Pirate voice (a response style)", "json": "Answer as JSON (structured output)"}
SCHEDULES = ("constant", "cosine")
MAX_UPLOAD_LINES = SERVER_LIMITS.lora_upload_lines  # a bigger upload is cut here (with a note)
MAX_EVAL_EXAMPLES = 16  # eval loss on at most this many eval examples, so an evaluation costs seconds
EVAL_FRACTION = 0.1  # share of an uploaded dataset held out for eval
SMOOTHING = 0.8  # EMA weight of the smoothed train-loss curve (debiased like TensorBoard's)


class LoraError(ValueError):
    """A user-facing problem with the data, the settings or the job; the message says what to change."""


class DatasetError(LoraError):
    pass


class LoraSettingsError(LoraError):
    pass


class JobBusyError(LoraError):
    pass


class NoAdapterError(LoraError):
    pass


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

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
        raise LoraSettingsError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")
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
            raise LoraSettingsError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
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
                raise ValueError(f"each message needs a role in {ROLES} and a string content, got {message!r}")
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
            accepted.append(example_from_record(json.loads(raw), number))
        except json.JSONDecodeError as error:
            rejected.append(RejectedLine(number, f"not valid JSON ({error.msg} at column {error.colno})"))
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
        raise DatasetError(f"Unknown dataset {name!r}; the shipped ones are {sorted(BUILTIN_DATASETS)}.")
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


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------


def loss_sum(model: Any, batch: Batch) -> tuple[torch.Tensor, int]:
    """(sum of next-token cross-entropy over the target tokens, number of target tokens).

    Position p predicts token p + 1, so targets = labels[:, 1:]. The LM head (576 x 49152 for SmolLM2,
    a fifth of the forward) runs only from the first position that predicts a target on
    (`logits_to_keep`): the masked prompt, ~40 tokens of the chat template, needs no logits. The model's
    own forward computes those logits, so any final soft-capping or scaling it does is kept.
    """
    targets = batch.labels[:, 1:]  # [batch, seq - 1]
    has_target = (targets != IGNORE_INDEX).any(dim=0)  # [seq - 1]
    first = int(has_target.nonzero()[0]) if bool(has_target.any()) else targets.shape[1]
    keep = batch.input_ids.shape[1] - first  # positions first .. seq-1
    output = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=keep,
                   use_cache=False)
    logits = output.logits[:, :-1].float()  # [batch, keep - 1, vocab]: positions first .. seq-2
    kept_targets = targets[:, first:]  # [batch, keep - 1]
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), kept_targets.reshape(-1),
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total, int((kept_targets != IGNORE_INDEX).sum())


@torch.no_grad()
def evaluate_loss(model: Any, batches: Sequence[Batch]) -> float:
    """Mean cross-entropy per target token (nats) over the batches, dropout off."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    total, count = 0.0, 0
    for batch in batches:
        batch_loss, n = loss_sum(model, batch.to(device))
        total += float(batch_loss)
        count += n
    model.train(was_training)
    return total / max(count, 1)


def model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------------------------
# LoRA parameter arithmetic ("why LoRA") and attaching adapters
# ---------------------------------------------------------------------------------------------


def _is_linear(module: torch.nn.Module) -> bool:
    """nn.Linear and its quantized stand-ins (torch.ao dynamic int8, bitsandbytes 4/8-bit) that keep
    in_features / out_features."""
    return isinstance(module, torch.nn.Linear) or (
        "Linear" in type(module).__name__ and hasattr(module, "in_features") and hasattr(module, "out_features"))


def linear_layer_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The distinct names of the model's linear layers that LoRA can target (q_proj, v_proj, ...), in
    model order; the output head is left out (it is tied to the embeddings in small models)."""
    output_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names: dict[str, None] = {}
    for name, module in model.named_modules():
        if _is_linear(module) and module is not output_head:
            names.setdefault(name.rsplit(".", 1)[-1], None)
    return tuple(names)


def _targeted(name: str, target_modules: Sequence[str]) -> bool:
    """PEFT's rule for a list of target names: the module's name ends with '.<target>' (or is it)."""
    return any(name == target or name.endswith("." + target) for target in target_modules)


@dataclass(frozen=True)
class MatrixBudget:
    name: str  # e.g. "q_proj"
    d_out: int
    k_in: int
    count: int  # how many such matrices (one per layer)
    full: int  # count * d * k: what full fine-tuning would train
    lora: int  # count * r * (d + k): what LoRA trains


@dataclass(frozen=True)
class LoraBudget:
    rank: int
    matrices: tuple[MatrixBudget, ...]
    full_total: int
    lora_total: int
    model_parameters: int
    bytes_per_parameter: int  # adapter dtype size (fp32: 4)
    model_bytes: int

    @property
    def reduction_factor(self) -> float:
        return self.full_total / self.lora_total

    @property
    def percent_of_model(self) -> float:
        return 100.0 * self.lora_total / self.model_parameters

    @property
    def adapter_bytes(self) -> int:
        return self.lora_total * self.bytes_per_parameter

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reduction_factor": self.reduction_factor, "percent_of_model": self.percent_of_model,
                "adapter_mb": self.adapter_bytes / 2**20, "model_mb": self.model_bytes / 2**20}


def lora_budget(model: torch.nn.Module, target_modules: Sequence[str], rank: int,
                model_parameters: int | None = None, bytes_per_parameter: int = 4) -> LoraBudget:
    """For each targeted matrix d x k: full parameters d * k vs LoRA's r * (d + k), from the real model.

    Works on the active (possibly int8 / 4-bit) model too: shapes come from in_features / out_features.
    Pass `model_parameters` for a quantized model, whose packed weights `parameters()` does not see
    (LoadedModel.parameters is counted before quantization).
    """
    groups: dict[tuple[str, int, int], int] = {}
    for name, module in model.named_modules():
        if _is_linear(module) and _targeted(name, target_modules):
            key = (name.rsplit(".", 1)[-1], int(module.out_features), int(module.in_features))
            groups[key] = groups.get(key, 0) + 1
    if not groups:
        raise LoraSettingsError(f"None of the target modules {list(target_modules)} is a linear layer of this "
                                f"model; its linear layers are {list(linear_layer_names(model))}.")
    matrices = tuple(MatrixBudget(name, d, k, n, n * d * k, n * rank * (d + k)) for (name, d, k), n in groups.items())
    return LoraBudget(rank, matrices, sum(m.full for m in matrices), sum(m.lora for m in matrices),
                      model_parameters or count_parameters(model), bytes_per_parameter, memory_footprint_bytes(model))


def is_4bit(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False))


def attach_lora(base_model: torch.nn.Module, settings: LoraSettings) -> Any:
    """A PeftModel on a deep copy of base_model: the cached base stays clean for everyone else.

    On a 4-bit (bitsandbytes NF4) base this is QLoRA: prepare_model_for_kbit_training casts norms to
    fp32 and turns on gradient checkpointing; the adapters train in fp32 beside the 4-bit weights.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    missing = [t for t in settings.target_modules if t not in linear_layer_names(base_model)]
    if missing:
        raise LoraSettingsError(f"Target modules {missing} are not linear layers of this model; pick from "
                                f"{list(linear_layer_names(base_model))}.")
    model = copy.deepcopy(base_model)
    if is_4bit(model):
        model = prepare_model_for_kbit_training(model)
    torch.manual_seed(settings.seed)  # A's random init is part of the run's reproducibility
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


# ---------------------------------------------------------------------------------------------
# Memory meter: peak RSS on CPU (sampled), peak allocated on CUDA
# ---------------------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory while the block runs. CUDA: torch's allocator peak. CPU: the process's resident set
    size, sampled every 10 ms by a thread (ru_maxrss is a lifetime peak, so it can't see one run)."""

    def __init__(self, device: torch.device | str, interval: float = 0.01) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.interval = interval
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start_bytes = self.peak_bytes = torch.cuda.memory_allocated()
        else:
            self.start_bytes = self.peak_bytes = psutil.Process().memory_info().rss
            self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

    def read(self) -> int:
        if self.cuda:
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated())
        return self.peak_bytes

    def __exit__(self, *exc: object) -> None:
        self.read()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def increase_bytes(self) -> int:
        return max(0, self.read() - self.start_bytes)


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------

EventFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainingRun:
    """What the loop needs besides the model: data, hyperparameters, where to report, when to stop."""

    train: TokenizedSplit
    eval: TokenizedSplit
    settings: LoraSettings
    pad_token_id: int
    emit: EventFn = lambda event: None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def total_steps(self) -> int:
        return self.settings.total_steps(len(self.train.examples))


def train_lora(model: Any, run: TrainingRun) -> str:
    """Train the LoRA parameters of `model` (a PeftModel) in place; return "completed" or "cancelled".

    Every optimizer step emits {"event": "step", ...}; evaluations emit {"event": "eval", ...} at step 0,
    every `eval_every` steps and at the end. `run.cancel` is checked before every micro-batch, so a
    cancel takes effect within one step (its partial gradients are discarded).
    Gradient accumulation weights micro-batches by target tokens: the step's loss is
    sum(token losses) / sum(target tokens) over all its micro-batches, as one big batch would give.
    """
    settings, total = run.settings, run.total_steps
    device = model_device(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    batches = shuffled_batches(run.train.examples, settings.batch_size, settings.seed, run.pad_token_id)
    eval_batches = fixed_batches(run.eval.examples[:MAX_EVAL_EXAMPLES], settings.batch_size, run.pad_token_id)

    def evaluate(step: int) -> None:
        if eval_batches:
            run.emit({"event": "eval", "step": step, "eval_loss": evaluate_loss(model, eval_batches)})

    evaluate(0)
    model.train()
    for step in range(total):
        started = time.perf_counter()
        micro = [next(batches).to(device) for _ in range(settings.grad_accumulation)]
        n_target = sum(b.target_tokens for b in micro)
        step_loss = 0.0
        for batch in micro:
            if run.cancel.is_set():
                optimizer.zero_grad(set_to_none=True)
                model.eval()
                return "cancelled"
            batch_loss, _ = loss_sum(model, batch)
            (batch_loss / n_target).backward()
            step_loss += batch_loss.detach().item()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm))
        learning_rate = learning_rate_at(step, total, settings)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        tokens = sum(b.tokens for b in micro)
        run.emit({"event": "step", "step": step + 1, "total_steps": total, "loss": step_loss / n_target,
                  "learning_rate": learning_rate, "grad_norm": grad_norm, "tokens": tokens,
                  "target_tokens": n_target, "seconds": seconds, "tokens_per_second": tokens / seconds})
        if (step + 1) % settings.eval_every == 0 or step + 1 == total:
            evaluate(step + 1)
    model.eval()
    return "completed"


# ---------------------------------------------------------------------------------------------
# The background job: one at a time, JSONL progress log, cancel
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainedAdapter:
    """A finished (or cancelled) run's PeftModel, kept in memory for before/after, download and merge."""

    job_id: str
    model: Any  # peft.PeftModel on a private copy of the base
    tokenizer: Any
    base: LoadedModel  # the trainable base the copy was made from (fp32 on CPU, NF4 on CUDA)
    settings: LoraSettings
    dataset: str
    eval_prompts: tuple[str, ...]
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)


@dataclass
class TrainingJob:
    id: str
    log_path: Path
    run: TrainingRun
    thread: threading.Thread | None = None
    status: str = "running"  # running | completed | cancelled | failed
    adapter: TrainedAdapter | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


def _jsonl_writer(path: Path) -> EventFn:
    """Append events as JSON lines, flushed at once so a polling reader sees each event whole."""
    lock = threading.Lock()

    def write(event: dict[str, Any]) -> None:
        line = json.dumps({**event, "time": time.time()}) + "\n"
        with lock, path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    return write


def _failure_message(error: BaseException) -> str:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return ("Out of memory during training. Try a smaller batch size, a shorter max length, a lower rank, "
                "or fewer target modules. The app is still running.")
    if isinstance(error, LoraError):
        return str(error)
    return f"Training failed ({type(error).__name__}: {error}). The app is still running."


class LoraRunner:
    """Owns the app's training job: one at a time; each writes <log_dir>/<job id>.jsonl."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self._lock = threading.Lock()
        self._job: TrainingJob | None = None

    @property
    def job(self) -> TrainingJob | None:
        """The running job, or the last one (finished jobs keep their adapter until the next run)."""
        return self._job

    def start(self, base: LoadedModel, dataset: Dataset, settings: LoraSettings,
              max_steps: int = SERVER_LIMITS.training_steps) -> TrainingJob:
        """Tokenize (errors raise here, in the caller's thread), then train in a daemon thread.

        `max_steps` caps the run's optimizer steps however they are set (steps, or epochs x data)."""
        if settings.max_length > base.context_length > 0:
            raise LoraSettingsError(f"max_length must be at most the model's context length "
                                    f"{base.context_length}, got {settings.max_length}")
        train = tokenize_split(base.tokenizer, dataset.train, settings.max_length, settings.mask_prompt)
        evaluation = tokenize_split(base.tokenizer, dataset.eval, settings.max_length, settings.mask_prompt)
        if not train.examples:
            raise DatasetError(f"No training example has a response token left within max_length "
                               f"{settings.max_length} ({train.dropped} dropped). Raise max_length.")
        total_steps = settings.total_steps(len(train.examples))
        if total_steps > max_steps:
            raise LoraSettingsError(f"This run would take {total_steps:,} optimizer steps; this server allows at "
                                    f"most {max_steps:,}. Lower steps or epochs, or raise the batch size.")
        with self._lock:
            if self._job is not None and self._job.running:
                raise JobBusyError(f"A training job is already running (job {self._job.id}); one job at a time. "
                                   "Wait for it to finish or press Cancel.")
            job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{job_id}.jsonl"
            run = TrainingRun(train, evaluation, settings, int(base.tokenizer.pad_token_id), _jsonl_writer(log_path))
            job = TrainingJob(job_id, log_path, run)
            self._job = job
        run.emit({"event": "queued", "job_id": job_id, "total_steps": run.total_steps})
        job.thread = threading.Thread(target=self._train, args=(job, base, dataset), name=f"lora-{job_id}",
                                      daemon=True)
        job.thread.start()
        return job

    def cancel(self) -> bool:
        """Ask the running job to stop; True if there was one."""
        job = self._job
        if job is None or not job.running:
            return False
        job.run.cancel.set()
        return True

    def adapter(self) -> TrainedAdapter:
        job = self._job
        if job is None or job.adapter is None:
            raise NoAdapterError("No adapter yet: train one first (press Train).")
        if job.running:
            raise NoAdapterError(f"Job {job.id} is still training; wait for it to finish (or cancel it).")
        return job.adapter

    def _train(self, job: TrainingJob, base: LoadedModel, dataset: Dataset) -> None:
        run, settings = job.run, job.run.settings
        status, message, peak = "failed", "", None
        try:
            with PeakMemory(model_device(base.model)) as peak:
                with base.lock:  # the base may be the active model: copy it between forwards, not mid-switch
                    model = attach_lora(base.model, settings)
                trainable, all_parameters = model.get_nb_trainable_parameters()
                budget = lora_budget(base.model, settings.target_modules, settings.rank)
                run.emit({"event": "start", "job_id": job.id, "base_model": base.spec.key, "base_label": base.spec.label,
                          "device": base.device, "qlora": is_4bit(base.model), "dataset": dataset.name,
                          "train_examples": len(run.train.examples), "eval_examples":
                          min(len(run.eval.examples), MAX_EVAL_EXAMPLES), "truncated": run.train.truncated +
                          run.eval.truncated, "dropped": run.train.dropped + run.eval.dropped,
                          "total_steps": run.total_steps, "settings": settings.as_dict(),
                          "trainable_parameters": trainable, "all_parameters": all_parameters,
                          "trainable_percent": 100.0 * trainable / all_parameters,
                          "adapter_mb": budget.adapter_bytes / 2**20, "model_mb": budget.model_bytes / 2**20})
                job.adapter = TrainedAdapter(job.id, model, base.tokenizer, base, settings, dataset.name,
                                             tuple(e.prompt for e in dataset.eval[:4]))
                status = train_lora(model, run)
                message = "Cancelled; the adapter keeps what it learned so far." if status == "cancelled" else "Done."
        except BaseException as error:  # the app must keep running whatever happens in the job
            message = _failure_message(error)
            job.adapter = None
        finally:
            job.status = status  # before the end event: a reader that sees "end" may use the adapter at once
            peak_mb = peak.peak_bytes / 2**20 if peak is not None else None
            increase_mb = peak.increase_bytes / 2**20 if peak is not None else None
            run.emit({"event": "end", "status": status, "message": message, "peak_memory_mb": peak_mb,
                      "memory_increase_mb": increase_mb})


# ---------------------------------------------------------------------------------------------
# Reading the log back: progress for the UI (and for a reloaded page)
# ---------------------------------------------------------------------------------------------


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines from byte `offset` on, and the offset after the last complete line."""
    with Path(path).open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1  # a line still being written is left for the next read
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, offset + end


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, debiased so the first points are not pulled toward 0:
    s_t = w s_{t-1} + (1 - w) x_t,  shown as s_t / (1 - w^t)."""
    out, running = [], 0.0
    for t, value in enumerate(values, start=1):
        running = weight * running + (1 - weight) * value
        out.append(running / (1 - weight ** t))
    return out


@dataclass(frozen=True)
class TrainingProgress:
    job_id: str
    status: str  # queued | running | completed | cancelled | failed
    message: str
    step: int
    total_steps: int
    elapsed_seconds: float
    eta_seconds: float | None
    steps: tuple[int, ...]
    train_loss: tuple[float, ...]
    smoothed_loss: tuple[float, ...]
    learning_rate: tuple[float, ...]
    grad_norm: tuple[float, ...]
    tokens_per_second: tuple[float, ...]
    eval_steps: tuple[int, ...]
    eval_loss: tuple[float, ...]
    start: dict[str, Any]  # the job's start event: model, dataset, parameter counts, settings
    end: dict[str, Any]  # the end event ({} while running): status, peak memory

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_events(events: Sequence[dict[str, Any]], now: float | None = None) -> TrainingProgress:
    """Fold a job's events into what the UI draws. `now` (unix time) sets the live elapsed time."""
    if not events:
        raise LoraError("This training log is empty.")
    first = events[0]
    start = next((e for e in events if e["event"] == "start"), {})
    end = next((e for e in events if e["event"] == "end"), {})
    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval"]
    total = int(first["total_steps"])
    status = end.get("status") or ("running" if start else "queued")
    finished_at = end.get("time", now if now is not None else time.time())
    elapsed = max(0.0, finished_at - first["time"])
    done = steps[-1]["step"] if steps else 0
    eta = None
    if status == "running" and done:
        seconds_per_step = (steps[-1]["time"] - start["time"]) / done
        eta = seconds_per_step * (total - done)
    losses = [e["loss"] for e in steps]
    return TrainingProgress(
        job_id=first["job_id"], status=status, message=end.get("message", ""), step=done, total_steps=total,
        elapsed_seconds=elapsed, eta_seconds=eta, steps=tuple(e["step"] for e in steps), train_loss=tuple(losses),
        smoothed_loss=tuple(smoothed(losses)), learning_rate=tuple(e["learning_rate"] for e in steps),
        grad_norm=tuple(e["grad_norm"] for e in steps), tokens_per_second=tuple(e["tokens_per_second"] for e in steps),
        eval_steps=tuple(e["step"] for e in evals), eval_loss=tuple(e["eval_loss"] for e in evals),
        start=start, end=end)


# ---------------------------------------------------------------------------------------------
# Before / after
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def base_behaviour(adapter: TrainedAdapter) -> Iterator[Any]:
    """The adapted model with its LoRA layers switched off: exactly the base model (B @ A not added)."""
    with adapter.lock, adapter.model.disable_adapter():
        yield adapter.model


@dataclass(frozen=True)
class AnswerPair:
    prompt: str
    before: str
    after: str
    before_tokens: int
    after_tokens: int


def compare_answers(adapter: TrainedAdapter, prompts: Sequence[str], max_new_tokens: int = 48) -> tuple[AnswerPair, ...]:
    """Greedy answers of the base and the adapted model to the same prompts, through the app's one
    generation loop."""
    model, tokenizer, eos = adapter.model, adapter.tokenizer, adapter.base.eos_token_ids

    def answer(prompt: str) -> Any:
        return generate_text(model, tokenizer, encode_prompt(tokenizer, prompt), max_new_tokens=max_new_tokens,
                             eos_token_ids=eos)

    pairs = []
    with adapter.lock:
        model.eval()
        for prompt in prompts:
            with base_behaviour(adapter):
                before = answer(prompt)
            after = answer(prompt)
            pairs.append(AnswerPair(prompt, before.text, after.text, len(before.token_ids), len(after.token_ids)))
    return tuple(pairs)


@dataclass(frozen=True)
class TokenShift:
    token_id: int
    text: str
    before: float  # probability under the base model
    after: float  # probability under the adapted model

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class NextTokenShift:
    prompt: str
    tokens: tuple[TokenShift, ...]  # the union of both models' top tokens, biggest gain first
    kl_bits: float  # KL(after || before) over the whole vocabulary
    top_before: str
    top_after: str

    def as_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "kl_bits": self.kl_bits, "top_before": self.top_before,
                "top_after": self.top_after,
                "tokens": [{**asdict(t), "delta": t.delta} for t in self.tokens]}


@torch.no_grad()
def next_token_logits(model: Any, tokenizer: Any, prompt: str) -> torch.Tensor:
    """Logits [vocab] (float32, cpu) for the first token of the answer to `prompt`."""
    ids = encode_prompt(tokenizer, prompt).to(model_device(model))  # [1, n]
    return model(input_ids=ids, use_cache=False).logits[0, -1].float().cpu()


def next_token_shift(adapter: TrainedAdapter, prompt: str, top_n: int = 8) -> NextTokenShift:
    """How the first answer token's distribution moved: which tokens gained and lost probability."""
    if not prompt.strip():
        raise LoraError("Enter a prompt to compare the next-token distributions.")
    with adapter.lock:
        adapter.model.eval()
        with base_behaviour(adapter):
            before = next_token_logits(adapter.model, adapter.tokenizer, prompt).softmax(-1)  # [vocab]
        after = next_token_logits(adapter.model, adapter.tokenizer, prompt).softmax(-1)
    ids = set(torch.topk(before, top_n).indices.tolist()) | set(torch.topk(after, top_n).indices.tolist())

    def text(token_id: int) -> str:
        return adapter.tokenizer.decode([token_id], skip_special_tokens=False)

    tokens = sorted((TokenShift(i, text(i), float(before[i]), float(after[i])) for i in ids),
                    key=lambda t: -t.delta)
    log_ratio = torch.log2(after.double().clamp_min(1e-30)) - torch.log2(before.double().clamp_min(1e-30))
    kl_bits = float((after.double() * log_ratio).sum())
    return NextTokenShift(prompt, tuple(tokens), kl_bits, text(int(before.argmax())), text(int(after.argmax())))


# ---------------------------------------------------------------------------------------------
# Download, merge
# ---------------------------------------------------------------------------------------------


def save_adapter_zip(adapter: TrainedAdapter, folder: Path) -> Path:
    """adapter_model.safetensors + adapter_config.json (loadable with PeftModel.from_pretrained), zipped."""
    target = Path(folder) / f"lora-{adapter.job_id}"
    shutil.rmtree(target, ignore_errors=True)
    with adapter.lock:
        adapter.model.save_pretrained(target, safe_serialization=True)
    archive = target.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(target.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(target))
    return archive


def merged_key(adapter: TrainedAdapter) -> str:
    """The manager key of the merged model: '<base>+lora:<job id>'."""
    return f"{adapter.base.spec.key}+lora:{adapter.job_id}"


# CPU precisions a merged model is re-quantized to, so the app keeps the speed it had (key: quantization).
CPU_REQUANTIZERS = {"int8": quantize_dynamic_int8, "int4": quantize_int4_weights}


def merge_adapter(adapter: TrainedAdapter, like: LoadedModel) -> LoadedModel:
    """W + (alpha/r) B A folded into a copy of the base, as a LoadedModel the other tabs can use.

    `like` is the model the app was using: a dynamic-int8 or int4 CPU model gets a merged model in the same
    precision, so the other tabs stay as fast as before (the merge itself is done in fp32).
    """
    started = time.perf_counter()
    with adapter.lock:
        merged = copy.deepcopy(adapter.model).merge_and_unload()
    merged.eval()
    base = adapter.base
    precision = base.precision
    if like.device == "cpu" and like.precision.quantization in CPU_REQUANTIZERS:
        merged = CPU_REQUANTIZERS[like.precision.quantization](merged)
        precision = like.precision
    spec = replace(base.spec, key=merged_key(adapter), label=f"{base.spec.label} + LoRA {adapter.job_id}")
    return LoadedModel(spec=spec, model=merged, tokenizer=adapter.tokenizer, device=base.device,
                       precision=precision, parameters=base.parameters, memory_bytes=memory_footprint_bytes(merged),
                       load_seconds=time.perf_counter() - started)


def base_model_key(model_key: str) -> str:
    """The base of a merged model's key ('smollm2-135m-instruct+lora:x' -> 'smollm2-135m-instruct')."""
    return model_key.split("+lora:", 1)[0]


def trainable_base(models: ModelManager, active: LoadedModel) -> LoadedModel:
    """The model to train: the active model's base in a trainable precision, loaded through `models`
    without changing the active model (fp32 on CPU: int4 and dynamic int8 layers
    are not trainable; NF4 on CUDA: QLoRA)."""
    quantization = "nf4" if active.device == "cuda" else "none"
    return models.load(base_model_key(active.spec.key), quantization, active.device, activate=False)

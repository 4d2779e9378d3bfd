"""Training: the masked next-token loss, LoRA's parameter budget and attaching adapters (PEFT), the peak
memory meter, and the training loop that reports every step as an event."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import psutil
import torch
import torch.nn.functional as F

from playground.lora.data import IGNORE_INDEX, Batch, TokenizedSplit, fixed_batches, shuffled_batches
from playground.lora.errors import LoraSettingsError
from playground.lora.settings import LoraSettings, learning_rate_at
from playground.runtime.loading import count_parameters, memory_footprint_bytes

MAX_EVAL_EXAMPLES = 16  # eval loss on at most this many eval examples, so an evaluation costs seconds


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

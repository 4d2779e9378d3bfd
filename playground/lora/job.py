"""The background jobs that train in threads and write JSONL progress logs, and reading a log back into what
the UI draws. Each job has an owner (a visitor's session): a visitor runs their own job, sees and cancels
only their own (the presenter may cancel any); at most `max_running` train at once and the rest wait in
line, their position written to their log."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from playground.limits import LIMITS as SERVER_LIMITS
from playground.lora.data import Dataset, tokenize_split
from playground.lora.errors import DatasetError, JobBusyError, LoraError, LoraSettingsError, NoAdapterError
from playground.lora.settings import LoraSettings
from playground.lora.training import (
    MAX_EVAL_EXAMPLES,
    EventFn,
    PeakMemory,
    TrainingRun,
    attach_lora,
    is_4bit,
    lora_budget,
    model_device,
    train_lora,
)
from playground.runtime.loading import LoadedModel

SMOOTHING = 0.8  # EMA weight of the smoothed train-loss curve (debiased like TensorBoard's)


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
    owner: str = "local"  # the session that started it
    thread: threading.Thread | None = None
    status: str = "running"  # running (waiting in line or training) | completed | cancelled | failed
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
    """The app's training jobs, one per owner (a new run replaces the owner's last job and its adapter);
    at most `max_running` train at once, the others wait in line (first come, first served). Each job
    writes <log_dir>/<job id>.jsonl."""

    def __init__(self, log_dir: Path, max_running: int = 1) -> None:
        self.log_dir = Path(log_dir)
        self.max_running = max_running
        self._lock = threading.Condition()
        self._jobs: dict[str, TrainingJob] = {}  # owner -> their latest job
        self._line: list[TrainingJob] = []  # started, waiting for a training slot, in order
        self._training = 0

    def job(self, owner: str = "local") -> TrainingJob | None:
        """The owner's running job, or their last one (finished jobs keep their adapter until the next run)."""
        return self._jobs.get(owner)

    def find(self, job_id: str) -> TrainingJob | None:
        return next((job for job in list(self._jobs.values()) if job.id == job_id), None)

    def running_jobs(self) -> list[TrainingJob]:
        return [job for job in list(self._jobs.values()) if job.running]

    def position(self, job: TrainingJob) -> int:
        """0 = training now; k = k-th in line."""
        with self._lock:
            return self._line.index(job) + 1 if job in self._line else 0

    def start(self, base: LoadedModel, dataset: Dataset, settings: LoraSettings,
              max_steps: int = SERVER_LIMITS.training_steps, owner: str = "local") -> TrainingJob:
        """Tokenize (errors raise here, in the caller's thread), then train in a daemon thread once a slot
        is free.

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
            previous = self._jobs.get(owner)
            if previous is not None and previous.running:
                raise JobBusyError(f"Your training job {previous.id} is still running; one job per visitor. "
                                   "Wait for it to finish or press Cancel.")
            job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{job_id}.jsonl"
            run = TrainingRun(train, evaluation, settings, int(base.tokenizer.pad_token_id), _jsonl_writer(log_path))
            job = TrainingJob(job_id, log_path, run, owner)
            self._jobs[owner] = job  # the previous job's adapter is dropped with it
            self._line.append(job)
        run.emit({"event": "queued", "job_id": job_id, "total_steps": run.total_steps,
                  "position": self.position(job)})
        job.thread = threading.Thread(target=self._wait_then_train, args=(job, base, dataset), name=f"lora-{job_id}",
                                      daemon=True)
        job.thread.start()
        return job

    def cancel(self, owner: str = "local", job_id: str | None = None) -> TrainingJob | None:
        """Ask a job to stop (the owner's, or the one with `job_id`: the caller checks who may); returns it
        if it was running. A job still waiting in line leaves the line at once."""
        job = self.find(job_id) if job_id else self._jobs.get(owner)
        if job is None or not job.running:
            return None
        job.run.cancel.set()
        with self._lock:
            self._lock.notify_all()
        return job

    def forget(self, owner: str) -> None:
        """The owner left: cancel their running job and drop their adapter (frees its memory)."""
        self.cancel(owner)
        with self._lock:
            self._jobs.pop(owner, None)

    def adapter(self, owner: str = "local") -> TrainedAdapter:
        job = self._jobs.get(owner)
        if job is None or job.adapter is None:
            raise NoAdapterError("No adapter of yours yet: train one first (press Train).")
        if job.running:
            raise NoAdapterError(f"Your job {job.id} is still training; wait for it to finish (or cancel it).")
        return job.adapter

    def _wait_then_train(self, job: TrainingJob, base: LoadedModel, dataset: Dataset) -> None:
        """Wait for a training slot (first come, first served), writing the position while it changes."""
        shown = None
        with self._lock:
            while (self._training >= self.max_running or self._line[0] is not job) and not job.run.cancel.is_set():
                position = self._line.index(job) + 1
                if position != shown:
                    job.run.emit({"event": "queued", "job_id": job.id, "position": position,
                                  "running": self._training})
                    shown = position
                self._lock.wait(1.0)
            self._line.remove(job)
            cancelled = job.run.cancel.is_set()
            if not cancelled:
                self._training += 1
            self._lock.notify_all()
        if cancelled:
            job.status = "cancelled"
            job.run.emit({"event": "end", "status": "cancelled", "message": "Cancelled while waiting in line.",
                          "peak_memory_mb": None, "memory_increase_mb": None})
            return
        try:
            self._train(job, base, dataset)
        finally:
            with self._lock:
                self._training -= 1
                self._lock.notify_all()

    def _train(self, job: TrainingJob, base: LoadedModel, dataset: Dataset) -> None:
        run, settings = job.run, job.run.settings
        status, message, peak = "failed", "", None
        try:
            with PeakMemory(model_device(base.model)) as peak:
                run.emit({"event": "phase", "phase": f"attaching rank-{settings.rank} LoRA matrices to "
                          f"{', '.join(settings.target_modules)}"})
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
                evaluated = min(len(run.eval.examples), MAX_EVAL_EXAMPLES)
                run.emit({"event": "phase", "phase": f"measuring the loss on {evaluated} held-out examples before "
                          "step 1" if evaluated else "computing step 1"})
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
    queue_position: int = 0  # while queued: 1 = next to train
    phase: str = ""  # before the first step: what the job is doing (attaching the adapter, the first evaluation)

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
    waiting = [e.get("position", 0) for e in events if e["event"] == "queued"]
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    return TrainingProgress(
        job_id=first["job_id"], status=status, message=end.get("message", ""), step=done, total_steps=total,
        elapsed_seconds=elapsed, eta_seconds=eta, steps=tuple(e["step"] for e in steps), train_loss=tuple(losses),
        smoothed_loss=tuple(smoothed(losses)), learning_rate=tuple(e["learning_rate"] for e in steps),
        grad_norm=tuple(e["grad_norm"] for e in steps), tokens_per_second=tuple(e["tokens_per_second"] for e in steps),
        eval_steps=tuple(e["step"] for e in evals), eval_loss=tuple(e["eval_loss"] for e in evals),
        start=start, end=end, queue_position=waiting[-1] if status == "queued" and waiting else 0,
        phase=phases[-1] if phases and not steps and not end else "")

"""LoRA training benchmark: our loop (playground.lora.train_lora) vs the same configuration through
transformers' `Trainer` + PEFT, same model, same batches, same run. Target: >= 1.0x steps/s.

Both sides train a fresh LoRA copy (same seed, so the same A init) on the pirate dataset with the same
optimizer (AdamW), schedule, gradient clipping and per-step loss logging; the Trainer is fed exactly
our batch order (sequential sampler over our shuffled order, our collate), so step k of both sides
sees the same padded batch.

Speed: the two loops run in one process in lockstep — our step 1, the Trainer's step 1, our step 2,
... — so both see the same machine load step by step (this machine is shared); a step's time is its
forward + backward + clip + optimizer step (ours: the loop's own `seconds`; Trainer: on_step_begin
to on_step_end), the first `warmup` steps are dropped and the table shows medians.
Memory: each side trains once more in a fresh process (neither inherits the other's freed memory);
peak memory is the growth of that process's resident set while it trains.

`python -m benchmarks.lora [--steps N] [--demo]` prints the table; `--demo` also times the default
demo run end to end through the background job (what the LoRA tab's Train button does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import torch

from playground import lora

TURN_TIMEOUT = 900.0  # s: a side that does not hand the turn back by then has failed


def _load_base() -> Any:
    from playground.config import load_settings
    from playground.runtime import ModelManager

    return ModelManager(load_settings(["--offline"])).load(precision="none", device="cpu", activate=False)


def benchmark_setup(steps: int) -> tuple[Any, lora.TokenizedSplit, lora.LoraSettings]:
    base = _load_base()
    settings = lora.LoraSettings(steps=steps, warmup_steps=1, dropout=0.05)
    train = lora.tokenize_split(base.tokenizer, lora.builtin_dataset("pirate").train, settings.max_length,
                              settings.mask_prompt)
    return base, train, settings


def our_training(base: Any, train: lora.TokenizedSplit, settings: lora.LoraSettings,
                 on_step: Callable[[float], None]) -> Callable[[], None]:
    """Our loop, ready to run; on_step gets each step's seconds."""
    model = lora.attach_lora(base.model, settings)

    def emit(event: dict[str, Any]) -> None:
        if event["event"] == "step":
            on_step(event["seconds"])

    run = lora.TrainingRun(train, lora.TokenizedSplit((), 0, 0), settings, base.tokenizer.pad_token_id, emit)
    return lambda: lora.train_lora(model, run)


def trainer_training(base: Any, train: lora.TokenizedSplit, settings: lora.LoraSettings, callbacks: list[Any],
                     output_dir: str) -> Callable[[], None]:
    """The same run through transformers' Trainer + PEFT, in our batch order, ready to run."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainingArguments

    total = settings.total_steps(len(train.examples))
    order = lora.batch_order(len(train.examples), settings.batch_size, settings.seed)
    ordered = [train.examples[i] for _ in range(total) for i in next(order)]
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in ordered]
    pad = base.tokenizer.pad_token_id

    def collator(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = lora.collate([lora.TokenizedExample(tuple(r["input_ids"]), tuple(r["labels"]), 0, False) for r in rows], pad)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "labels": batch.labels}

    class InOurOrder(Trainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> SequentialSampler:
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    arguments = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accumulation, max_steps=total, learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.schedule, warmup_steps=settings.warmup_steps, weight_decay=0.0,
        max_grad_norm=settings.max_grad_norm, optim="adamw_torch", logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, seed=settings.seed, disable_tqdm=True, remove_unused_columns=False)
    trainer = InOurOrder(model=lora.attach_lora(base.model, settings), args=arguments, train_dataset=features,
                         data_collator=collator, callbacks=callbacks)
    return trainer.train


class Turns:
    """Two loops take turns, one step each: whoever holds the turn runs, the other waits.
    hand_to(None) ends the turn-taking (a side failed): nobody waits any more."""

    def __init__(self, first: str) -> None:
        self._holder: str | None = first
        self._changed = threading.Condition()

    def wait_for(self, name: str) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._holder in (name, None), timeout=TURN_TIMEOUT):
                raise TimeoutError(f"{name} waited {TURN_TIMEOUT:.0f} s for its turn")

    def hand_to(self, name: str | None) -> None:
        with self._changed:
            self._holder = name
            self._changed.notify_all()


def lockstep_step_seconds(base: Any, train: lora.TokenizedSplit, settings: lora.LoraSettings) -> dict[str, list[float]]:
    """Per-step seconds of both loops, run alternately step by step in this process."""
    from transformers import TrainerCallback

    turns = Turns("ours")
    seconds: dict[str, list[float]] = {"ours": [], "trainer": []}

    def our_step_done(step_seconds: float) -> None:
        seconds["ours"].append(step_seconds)
        turns.hand_to("trainer")
        turns.wait_for("ours")

    class TrainerTurn(TrainerCallback):
        started = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            turns.wait_for("trainer")
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seconds["trainer"].append(time.perf_counter() - self.started)
            turns.hand_to("ours")

    failure: list[BaseException] = []
    with tempfile.TemporaryDirectory() as output_dir:
        trainer_run = trainer_training(base, train, settings, [TrainerTurn()], output_dir)

        def run_trainer() -> None:
            try:
                trainer_run()
            except BaseException as error:  # reported below, in the main thread
                failure.append(error)
                turns.hand_to(None)

        thread = threading.Thread(target=run_trainer, name="trainer-baseline")
        thread.start()
        our_training(base, train, settings, our_step_done)()
        thread.join()
    if failure:
        raise failure[0]
    return seconds


def peak_memory_session(side: str, steps: int) -> int:
    """(In a fresh process) train one side and return the growth of the resident set, in bytes."""
    base, train, settings = benchmark_setup(steps)
    with tempfile.TemporaryDirectory() as output_dir:
        run = (our_training(base, train, settings, lambda s: None) if side == "ours"
               else trainer_training(base, train, settings, [], output_dir))
        with lora.PeakMemory("cpu") as peak:
            run()
    return peak.increase_bytes


def peak_memory_in_subprocess(side: str, steps: int) -> int:
    command = [sys.executable, "-m", "benchmarks.lora", "--memory-session", side, "--steps", str(steps)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_growth_bytes"])


def demo_run(base: Any) -> dict[str, Any]:
    """The default demo (LoraSettings() on the pirate dataset) through the background job, end to end."""
    with tempfile.TemporaryDirectory() as log_dir:
        runner = lora.LoraRunner(log_dir)
        started = time.perf_counter()
        job = runner.start(base, lora.builtin_dataset("pirate"), lora.LoraSettings())
        job.thread.join()
        seconds = time.perf_counter() - started
        events, _ = lora.read_events(job.log_path)
    progress = lora.summarize_events(events)
    return {"seconds": seconds, "steps": progress.step, "eval_loss": progress.eval_loss,
            "smoothed_loss": (progress.smoothed_loss[0], progress.smoothed_loss[-1]),
            "tokens_per_second": statistics.median(progress.tokens_per_second)}


def run(steps: int = 12, warmup: int = 2, demo: bool = False) -> list[dict[str, Any]]:
    base, train, settings = benchmark_setup(steps)
    threads = torch.get_num_threads()
    seconds = lockstep_step_seconds(base, train, settings)
    ours_step = statistics.median(seconds["ours"][warmup:])
    trainer_step = statistics.median(seconds["trainer"][warmup:])
    memory = {side: peak_memory_in_subprocess(side, steps) for side in ("ours", "trainer")}
    tokens_per_step = statistics.mean(len(e.input_ids) for e in train.examples) * settings.batch_size
    conditions = (f"{base.spec.label} fp32 CPU, {threads} torch threads, LoRA r={settings.rank} on "
                  f"{'/'.join(settings.target_modules)}, batch {settings.batch_size}, pirate dataset "
                  f"(~{tokens_per_step / settings.batch_size:.0f} tokens/example), {steps} steps each in lockstep, "
                  f"median of the last {steps - warmup}, load average {os.getloadavg()[0]:.1f}")
    rows = [
        {"name": "LoRA training steps/s (higher is better)", "ours": 1 / ours_step, "baseline": 1 / trainer_step,
         "ratio": trainer_step / ours_step, "unit": "steps/s", "conditions": conditions},
        {"name": "training tokens/s (padded batch tokens)", "ours": tokens_per_step / ours_step,
         "baseline": tokens_per_step / trainer_step, "ratio": trainer_step / ours_step, "unit": "tokens/s",
         "conditions": conditions},
        {"name": "peak memory growth while training (lower is better)", "ours": memory["ours"] / 2**20,
         "baseline": memory["trainer"] / 2**20, "ratio": memory["ours"] / max(memory["trainer"], 1), "unit": "MB",
         "conditions": conditions + "; memory: one fresh process per side"},
    ]
    if demo:
        result = demo_run(base)
        rows.append({"name": f"default demo run ({result['steps']} steps + evals), wall time", "ours": result["seconds"],
                     "baseline": 180.0, "ratio": result["seconds"] / 180.0, "unit": "s (baseline = 3 min target)",
                     "conditions": f"eval loss {result['eval_loss'][0]:.3f} -> {result['eval_loss'][-1]:.3f}, smoothed "
                                   f"train loss {result['smoothed_loss'][0]:.3f} -> {result['smoothed_loss'][1]:.3f}, "
                                   f"median {result['tokens_per_second']:.0f} tokens/s, {threads} torch threads, "
                                   f"load average {os.getloadavg()[0]:.1f}"})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'benchmark':56} {'ours':>9} {'baseline':>9} {'ratio':>7}")
    for row in rows:
        print(f"{row['name']:56} {row['ours']:9.3f} {row['baseline']:9.3f} {row['ratio']:6.2f}x  ({row['unit']})")
    for row in rows:
        print(f"conditions ({row['name']}): {row['conditions']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--demo", action="store_true", help="also time the default demo run end to end")
    parser.add_argument("--memory-session", choices=("ours", "trainer"), help=argparse.SUPPRESS)  # used by run()
    arguments = parser.parse_args()
    if arguments.memory_session:
        print(json.dumps({"peak_growth_bytes": peak_memory_session(arguments.memory_session, arguments.steps)}))
    else:
        print_table(run(arguments.steps, arguments.warmup, arguments.demo))

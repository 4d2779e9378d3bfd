"""The background training job on the tiny model: the JSONL log, one job at a time, cancel, failures,
and reading the log back into progress (what a reloaded page re-attaches to)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from playground import lora
from playground.config import Settings
from playground.runtime import ModelManager


@pytest.fixture(scope="module")
def base(tiny_model_dir, tmp_path_factory):
    manager = ModelManager(Settings(model=str(tiny_model_dir), precision="none", device="cpu", offline=True,
                                    cache_dir=tmp_path_factory.mktemp("cache")))
    return manager.load()


@pytest.fixture(scope="module")
def dataset():
    pirate = lora.builtin_dataset("pirate")
    return lora.Dataset("pirate-small", pirate.train[:16], pirate.eval[:4])


@pytest.fixture
def runner(tmp_path):
    return lora.LoraRunner(tmp_path / "lora")


def wait(job: lora.TrainingJob, seconds: float = 120) -> None:
    job.thread.join(seconds)
    assert not job.thread.is_alive(), "the training thread did not finish"


def log_events(job: lora.TrainingJob) -> list[dict]:
    return [json.loads(line) for line in job.log_path.read_text().splitlines()]


def test_a_job_writes_its_progress_as_jsonl_and_keeps_the_adapter(runner, base, dataset):
    settings = lora.LoraSettings(steps=4, eval_every=2, warmup_steps=1)
    job = runner.start(base, dataset, settings)
    assert job.log_path.parent == runner.log_dir and job.log_path.name == f"{job.id}.jsonl"
    wait(job)
    events = log_events(job)
    kinds = [e["event"] for e in events]
    assert kinds == ["queued", "phase", "start", "phase", "eval", "step", "step", "eval", "step", "step", "eval", "end"]
    # before step 1 the log says what the job is doing (a run showed "Step 0 · ETA –" for 30 s)
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["attaching rank-8 LoRA matrices to " + ", ".join(settings.target_modules),
                      "measuring the loss on 4 held-out examples before step 1"]
    assert lora.summarize_events(events[:4]).phase == phases[1]  # the latest phase, until the first step
    assert lora.summarize_events(events[:6]).phase == ""
    start, end = events[2], events[-1]
    assert start["trainable_parameters"] == lora.lora_budget(base.model, settings.target_modules, 8).lora_total
    assert start["trainable_percent"] == pytest.approx(100 * start["trainable_parameters"] / start["all_parameters"])
    assert start["settings"]["rank"] == 8 and start["train_examples"] == 16 and start["eval_examples"] == 4
    assert end["status"] == "completed" and end["peak_memory_mb"] > 0
    assert job.status == "completed" and runner.adapter() is job.adapter
    progress = lora.summarize_events(events)
    assert (progress.status, progress.step, progress.total_steps) == ("completed", 4, 4)
    assert progress.eval_steps == (0, 2, 4) and progress.eta_seconds is None
    assert progress.train_loss == tuple(e["loss"] for e in events if e["event"] == "step")


def test_one_job_at_a_time_and_cancel_stops_it(runner, base, dataset):
    job = runner.start(base, dataset, lora.LoraSettings(steps=2000, eval_every=1000))
    deadline = time.monotonic() + 60
    while not any(e["event"] == "step" for e in log_events(job)) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(lora.JobBusyError, match="still running; one job per visitor"):
        runner.start(base, dataset, lora.LoraSettings(steps=1))
    with pytest.raises(lora.NoAdapterError, match="still training"):
        runner.adapter()
    assert runner.cancel() is job
    wait(job, 30)
    end = log_events(job)[-1]
    assert end["event"] == "end" and end["status"] == "cancelled"
    steps = [e["step"] for e in log_events(job) if e["event"] == "step"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 2000
    assert runner.cancel() is None and runner.adapter() is job.adapter  # a cancelled run keeps its adapter
    again = runner.start(base, dataset, lora.LoraSettings(steps=1))  # the app can train again
    wait(again)
    assert again.status == "completed"


def wait_for_event(job: lora.TrainingJob, kind: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not any(e["event"] == kind for e in log_events(job)) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_each_visitor_has_their_own_job_and_the_second_waits_in_line(runner, base, dataset):
    first = runner.start(base, dataset, lora.LoraSettings(steps=2000, eval_every=1000), owner="a")
    wait_for_event(first, "step")
    second = runner.start(base, dataset, lora.LoraSettings(steps=1), owner="b")
    time.sleep(0.3)
    assert runner.position(first) == 0 and runner.position(second) == 1
    progress = lora.summarize_events(log_events(second))
    assert progress.status == "queued" and progress.queue_position == 1
    with pytest.raises(lora.NoAdapterError, match="train one first"):
        runner.adapter("c")  # nobody else's adapter is yours
    assert runner.job("a") is first and runner.job("b") is second and runner.job("c") is None
    runner.cancel("a")
    wait(first, 30)
    wait(second, 60)  # the slot freed: b's job trained
    assert second.status == "completed" and runner.adapter("b") is second.adapter
    assert runner.adapter("a") is first.adapter  # a's cancelled run keeps its adapter, for a only


def test_a_job_waiting_in_line_can_be_cancelled_and_a_leaving_owner_frees_theirs(runner, base, dataset):
    first = runner.start(base, dataset, lora.LoraSettings(steps=2000, eval_every=1000), owner="a")
    wait_for_event(first, "step")
    waiting = runner.start(base, dataset, lora.LoraSettings(steps=1), owner="b")
    assert runner.cancel("b") is waiting
    wait(waiting, 30)
    assert waiting.status == "cancelled" and log_events(waiting)[-1]["message"] == "Cancelled while waiting in line."
    runner.forget("a")  # the owner's tab closed
    wait(first, 30)
    assert first.status == "cancelled" and runner.job("a") is None


def test_out_of_memory_is_reported_and_the_app_can_train_again(runner, base, dataset, monkeypatch):
    def out_of_memory(model, run):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(lora.job, "train_lora", out_of_memory)
    job = runner.start(base, dataset, lora.LoraSettings(steps=1))
    wait(job)
    end = log_events(job)[-1]
    assert end["status"] == "failed" and end["message"].startswith("Out of memory during training")
    assert "smaller batch size" in end["message"] and job.adapter is None
    with pytest.raises(lora.NoAdapterError, match="train one first"):
        runner.adapter()
    monkeypatch.undo()
    job = runner.start(base, dataset, lora.LoraSettings(steps=1))
    wait(job)
    assert job.status == "completed"


def test_bad_requests_fail_before_a_job_starts(runner, base, dataset):
    with pytest.raises(lora.LoraSettingsError, match="context length 256"):
        runner.start(base, dataset, lora.LoraSettings(max_length=512))
    with pytest.raises(lora.DatasetError, match="Raise max_length"):
        runner.start(base, dataset, lora.LoraSettings(max_length=16))
    assert runner.job() is None


def test_read_events_leaves_a_half_written_line_for_later(tmp_path):
    log = tmp_path / "job.jsonl"
    log.write_text('{"event": "queued"}\n{"event": "st')
    events, offset = lora.read_events(log)
    assert events == [{"event": "queued"}] and offset == len('{"event": "queued"}\n')
    with log.open("a") as handle:
        handle.write('ep", "step": 1}\n')
    events, offset = lora.read_events(log, offset)
    assert events == [{"event": "step", "step": 1}] and offset == log.stat().st_size


def test_smoothing_is_a_debiased_moving_average():
    values = [4.0, 2.0, 3.0, 1.0]
    expected, running = [], 0.0
    for t, value in enumerate(values, start=1):  # float64 reference written out
        running = 0.8 * running + 0.2 * value
        expected.append(running / (1 - 0.8**t))
    assert lora.smoothed(values) == pytest.approx(expected)
    assert lora.smoothed([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])  # no pull toward zero


def test_progress_of_a_running_job_has_elapsed_and_eta():
    events = [{"event": "queued", "job_id": "j", "total_steps": 10, "time": 100.0},
              {"event": "start", "time": 101.0},
              {"event": "step", "step": 1, "loss": 2.0, "learning_rate": 1e-3, "grad_norm": 1.0,
               "tokens_per_second": 50.0, "time": 103.0},
              {"event": "step", "step": 2, "loss": 1.5, "learning_rate": 1e-3, "grad_norm": 0.5,
               "tokens_per_second": 55.0, "time": 105.0}]
    progress = lora.summarize_events(events, now=106.0)
    assert progress.status == "running" and progress.elapsed_seconds == 6.0
    assert progress.eta_seconds == pytest.approx(2.0 * 8)  # 2 s per step since start, 8 steps left
    assert lora.summarize_events(events[:1], now=100.5).status == "queued"

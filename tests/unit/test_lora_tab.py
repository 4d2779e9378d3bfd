"""The LoRA tab's thin adapters: UI values -> settings, dataset choice, prompt caps, progress text."""

from __future__ import annotations

import pytest

from playground import lora
from playground.ui import lora_tab

UI_DEFAULTS = {"rank": 8, "alpha": 16, "dropout": 0.05, "targets": ["q_proj", "v_proj"], "learning_rate": 2e-3,
               "schedule": "cosine", "warmup": 3, "train_by": "steps", "steps": 40, "epochs": 1.0, "batch_size": 4,
               "grad_accumulation": 1, "max_length": 96, "seed": 0, "mask_prompt": True, "eval_every": 10}


def test_ui_defaults_are_the_demo_settings():
    assert lora_tab.lora_settings(**UI_DEFAULTS) == lora.LoraSettings()


def test_training_by_epochs_uses_epochs_and_needs_them_positive():
    settings = lora_tab.lora_settings(**{**UI_DEFAULTS, "train_by": "epochs", "epochs": 2})
    assert settings.epochs == 2 and settings.total_steps(270) == 135
    with pytest.raises(lora.LoraSettingsError, match="epochs > 0"):
        lora_tab.lora_settings(**{**UI_DEFAULTS, "train_by": "epochs", "epochs": 0})
    with pytest.raises(lora.LoraSettingsError, match="rank must be a number between 1 and 64, got None"):
        lora_tab.lora_settings(**{**UI_DEFAULTS, "rank": None})


def test_uploaded_file_is_validated(tmp_path):
    upload = tmp_path / "mine.jsonl"
    upload.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c", "response": "d"}\n{oops\n')
    dataset = lora_tab.chosen_dataset("upload", str(upload), 0)
    assert dataset.name == "mine.jsonl" and [r.line for r in dataset.rejected] == [3]
    with pytest.raises(lora.DatasetError, match="Upload a JSONL file first"):
        lora_tab.chosen_dataset("upload", None, 0)
    assert lora_tab.chosen_dataset("json", None, 0).name == "json"


def test_compare_prompts_skip_blank_lines_and_are_capped():
    text = "\n".join(f"q{i}" for i in range(6)) + "\n\n  \n"
    prompts, notes = lora_tab.compare_prompts(text)
    assert prompts == [f"q{i}" for i in range(lora_tab.MAX_COMPARE_PROMPTS)]
    assert notes == [f"Only the first {lora_tab.MAX_COMPARE_PROMPTS} of 6 prompts are compared."]
    assert lora_tab.compare_prompts("") == ([], [])


def test_progress_html_shows_step_elapsed_eta_and_status():
    events = [{"event": "queued", "job_id": "job-1", "total_steps": 40, "time": 0.0},
              {"event": "start", "time": 2.0},
              {"event": "step", "step": 10, "loss": 1.0, "learning_rate": 1e-3, "grad_norm": 1.0,
               "tokens_per_second": 100.0, "time": 22.0}]
    html = lora_tab.progress_html(lora.summarize_events(events, now=25.0))
    assert "Step 10 / 40" in html and "elapsed 0:25" in html and "ETA 1:00" in html and "running" in html
    assert 'width:25.0%' in html and "job job-1" in html


def test_progress_html_says_what_happens_before_the_first_step():
    events = [{"event": "queued", "job_id": "job-1", "total_steps": 40, "time": 0.0},
              {"event": "phase", "phase": "measuring the loss on 4 held-out examples before step 1", "time": 1.0},
              {"event": "start", "time": 2.0}]
    html = lora_tab.progress_html(lora.summarize_events(events, now=3.0))
    assert "Step 0 / 40" in html and "measuring the loss on 4 held-out examples before step 1…" in html
    box, *_, data = lora_tab.preparing("tokenizing 20 examples")
    assert "Preparing</b> — tokenizing 20 examples…" in box and data == {"status": "preparing",
                                                                        "phase": "tokenizing 20 examples"}


# -- a run too short to change the answers; the adapter message after a run -----------------------------------


@pytest.fixture(scope="module")
def tiny_base(tiny_model_dir, tmp_path_factory):
    from playground.config import Settings
    from playground.runtime import ModelManager

    manager = ModelManager(Settings(model=str(tiny_model_dir), precision="none", device="cpu", offline=True,
                                    cache_dir=tmp_path_factory.mktemp("cache")))
    return manager.load()


def test_a_run_too_short_to_change_the_answers_says_why_from_its_own_numbers(tiny_base, tmp_path):
    runner = lora.LoraRunner(tmp_path / "lora")
    assert lora_tab.adapter_note(runner, "me") == lora_tab.NO_ADAPTER  # nothing trained yet: true
    pirate = lora.builtin_dataset("pirate")
    settings = lora.LoraSettings(steps=2, eval_every=1, warmup_steps=0, learning_rate=1e-6)
    job = runner.start(tiny_base, lora.Dataset("pirate-small", pirate.train[:8], pirate.eval[:2]), settings,
                       owner="me")
    job.thread.join(120)
    assert not job.thread.is_alive()
    # the adapter message no longer says "Train an adapter first": the run left one
    note = lora_tab.adapter_note(runner, "me")
    assert note != lora_tab.NO_ADAPTER and job.id in note and "2 of 2 steps" in note and "pirate-small" in note

    adapter = runner.adapter("me")
    pairs = lora.compare_answers(adapter, [pirate.eval[0].prompt], max_new_tokens=4)
    assert pairs[0].before == pairs[0].after  # 2 steps at 1e-6 move nothing
    progress = lora_tab.run_progress(job)
    sentence = lora.compare.answers_verdict(pairs, progress, settings.learning_rate)
    start, end = progress.eval_loss[0], progress.eval_loss[-1]  # the run's own log: step 0 and the last evaluation
    assert sentence.startswith("The greedy answers did not change: this run trained only 2 steps at learning "
                               "rate 1e-06")
    assert f"eval loss moved only from {start:.2f} to {end:.2f}" in sentence
    assert "Try at least 40 steps and a learning rate near 0.002" in sentence
    assert lora_tab.verdict_markdown({"why_unchanged": sentence}) == f"⚠ {sentence}"
    assert lora_tab.verdict_markdown({"why_unchanged": ""}) == ""

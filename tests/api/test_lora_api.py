"""The LoRA tab through gradio_client: a short streamed run, before/after, the adapter download reloaded
with PEFT, merge/unload, one job per visitor with cancel, and bad input. Runs are a few steps long."""

from __future__ import annotations

import copy
import itertools
import json
import zipfile
from pathlib import Path

import pytest

from benchmarks.load import CALLS, comparable
from playground import lora
from playground.sampling import PromptLogitsCache

pytestmark = pytest.mark.slow

FINISHED = ("completed", "cancelled", "failed")
NEXT_TOKEN = next(call for call in CALLS if call.label == "next_token")  # seeded: the same answer every time


def train_args(**overrides):
    values = {"dataset": "pirate", "upload": None, "rank": 8, "alpha": 16, "dropout": 0.0,
              "targets": ["q_proj", "v_proj"], "learning_rate": 2e-3, "schedule": "constant", "warmup": 0,
              "train_by": "steps", "steps": 2, "epochs": 1, "batch_size": 2, "grad_accumulation": 1,
              "max_length": 64, "seed": 0, "mask_prompt": True, "eval_every": 2}
    values.update(overrides)
    return list(values.values())


def test_training_streams_progress_and_final_metrics(client, real_model):
    job = client.submit(*train_args(), api_name="/train_lora")
    job.result(timeout=900)
    outputs = job.outputs()
    assert len(outputs) >= 2  # streamed: at least the first poll and the final state
    html, stats, _loss_plot, _dynamics_plot, data = outputs[-1]
    assert data["status"] == "completed" and data["step"] == data["total_steps"] == 2
    assert len(data["train_loss"]) == 2 and data["eval_steps"] == [0, 2]
    config = real_model.model.config
    kv = config.num_key_value_heads * config.hidden_size // config.num_attention_heads
    by_hand = config.num_hidden_layers * 8 * ((2 * config.hidden_size) + (config.hidden_size + kv))
    assert data["start"]["trainable_parameters"] == by_hand
    assert data["start"]["device"] == "cpu" and not data["start"]["qlora"]
    assert data["end"]["peak_memory_mb"] > 0
    assert "Step 2 / 2" in html and "completed" in html and "as PEFT reports" in stats


def test_compare_and_the_downloaded_adapter_reproduce_the_in_app_numbers(client, model_manager):
    from peft import PeftModel

    rows, _figure, data = client.predict("What is the capital of Poland?", 8, api_name="/compare_lora")
    assert rows["data"][0][0] == "What is the capital of Poland?" and data["answers"][0]["before"]
    archive, info = client.predict(api_name="/download_adapter")
    with zipfile.ZipFile(archive) as bundle:
        assert {"adapter_model.safetensors", "adapter_config.json"} <= set(bundle.namelist())
        folder = Path(archive).with_suffix("")
        bundle.extractall(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 8 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert info["files"]["adapter_model.safetensors"] > 0
    fp32 = model_manager.load(precision="none", device="cpu", activate=False)
    reloaded = PeftModel.from_pretrained(copy.deepcopy(fp32.model), folder).eval()
    probs = lora.next_token_logits(reloaded, fp32.tokenizer, "What is the capital of Poland?").softmax(-1)
    for token in data["next_token"]["tokens"]:
        assert token["after"] == pytest.approx(float(probs[token["token_id"]]), abs=1e-5)


def test_merge_makes_the_adapted_model_active_and_unload_goes_back(client):
    message, status = client.predict(api_name="/merge_lora")
    merged_key = status["model"]["model"]
    assert "+lora:" in merged_key and "now the active model" in message
    _, header_status, _ = client.predict(api_name="/model_status")
    assert header_status["model"]["model"] == merged_key
    message, status = client.predict(api_name="/unload_lora")
    assert status["model"]["model"] == "smollm2-135m-instruct" and "Everyone is back on the base model" in message
    assert not any("+lora:" in key["model"] for key in status["cached"])  # unpublished: not loadable by name
    message, _ = client.predict(api_name="/unload_lora")
    assert "already in use" in message


def test_training_changes_nobody_elses_answers_until_merge(client, app_url):
    """Another visitor's seeded /next_token during a run and after it equals the answer before it (the run
    trains a deep copy); after /merge_lora it differs (app-wide, on purpose), after /unload_lora it is back.
    The prompts cycle through more than the tab's logits cache holds, so every call runs a forward."""
    from gradio_client import Client

    visitor = Client(app_url, verbose=False)
    prompts = [f"Question {number}: the capital of France is" for number in range(PromptLogitsCache().capacity + 4)]
    turn = itertools.cycle(prompts)

    def next_token(prompt: str) -> list:
        return comparable(visitor.predict(prompt, *NEXT_TOKEN.args[1:], api_name=NEXT_TOKEN.api_name))

    before = {prompt: next_token(prompt) for prompt in prompts}
    run = client.submit(*train_args(steps=4, eval_every=4, learning_rate=1e-2), api_name="/train_lora")
    during = []
    while not run.done():
        prompt = next(turn)
        answer = next_token(prompt)
        if not run.done():  # the whole call overlapped the run
            during.append(answer == before[prompt])
    assert run.outputs()[-1][4]["status"] == "completed"
    assert len(during) >= 3 and all(during)
    assert all(next_token(prompt) == before[prompt] for prompt in (next(turn), next(turn)))
    client.predict(api_name="/merge_lora")
    try:
        prompt = next(turn)
        assert next_token(prompt) != before[prompt]
    finally:
        client.predict(api_name="/unload_lora")
    prompt = next(turn)
    assert next_token(prompt) == before[prompt]


def test_one_job_per_visitor_and_cancel(client):
    long_run = client.submit(*train_args(steps=500, eval_every=500), api_name="/train_lora")
    for output in long_run:
        if output[4].get("status") == "running":
            break
    with pytest.raises(Exception, match="still running; one job per visitor"):
        client.predict(*train_args(), api_name="/train_lora")
    assert client.predict("", api_name="/cancel_lora")["cancelled"] is True
    long_run.result(timeout=600)
    final = long_run.outputs()[-1][4]
    assert final["status"] == "cancelled" and final["step"] < 500
    assert client.predict("", api_name="/cancel_lora")["cancelled"] is False


def test_bad_input_gets_specific_messages(client, tmp_path):
    from gradio_client import handle_file

    with pytest.raises(Exception, match="learning_rate must be between 1e-06 and 0.1, got 1"):
        client.predict(*train_args(learning_rate=1.0), api_name="/train_lora")
    with pytest.raises(Exception, match="steps must be between 1 and 2000, got 0"):
        client.predict(*train_args(steps=0), api_name="/train_lora")
    with pytest.raises(Exception, match="less than minimum value 1"):  # the rank slider's own range check
        client.predict(*train_args(rank=0), api_name="/train_lora")
    with pytest.raises(Exception, match="Upload a JSONL file first"):
        client.predict("upload", None, 96, True, 0, api_name="/lora_dataset")
    upload = tmp_path / "mine.jsonl"
    upload.write_text('{"instruction": "Hi", "response": "Hello"}\nnot json\n'
                      '{"instruction": "Bye", "output": "Goodbye"}\n{"messages": []}\n')
    markdown, report, _prompts = client.predict("upload", handle_file(str(upload)), 96, True, 0,
                                                api_name="/lora_dataset")
    assert report["accepted"] == 2 and [r["line"] for r in report["rejected"]] == [2, 4]
    assert "line 2: not valid JSON" in markdown and report["tokens"]["truncated"] == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(Exception, match="at least 2 usable examples"):
        client.predict("upload", handle_file(str(empty)), 96, True, 0, api_name="/lora_dataset")
    _, _, budget = client.predict(4, ["q_proj"], api_name="/lora_budget")
    assert budget["rank"] == 4 and [m["name"] for m in budget["matrices"]] == ["q_proj"]
    assert budget["reduction_factor"] == pytest.approx(budget["full_total"] / budget["lora_total"])

"""LoRA on the real embedded SmolLM2-135M (fp32 copy on CPU): a SHORT run of a few steps."""

from __future__ import annotations

import copy
import zipfile

import pytest
import torch

from playground import lora
from playground.generation import encode_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp32(model_manager):
    """The trainable base the LoRA tab uses on CPU, loaded beside (not instead of) the active model."""
    return model_manager.load(precision="none", device="cpu", activate=False)


def test_zero_b_adapter_equals_the_real_base_model(fp32):
    settings = lora.LoraSettings()
    model = lora.attach_lora(fp32.model, settings).eval()
    ids = encode_prompt(fp32.tokenizer, "What is the capital of France?")
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, fp32.model(input_ids=ids).logits)
    assert model.get_nb_trainable_parameters()[0] == lora.lora_budget(fp32.model, settings.target_modules, 8).lora_total


def test_a_short_run_on_the_style_dataset_lowers_eval_loss_and_the_adapter_round_trips(fp32, tmp_path):
    from peft import PeftModel

    pirate = lora.builtin_dataset("pirate")
    runner = lora.LoraRunner(tmp_path / "logs")
    settings = lora.LoraSettings(steps=6, warmup_steps=1, schedule="constant", eval_every=6, dropout=0.0)
    job = runner.start(fp32, lora.Dataset("pirate", pirate.train, pirate.eval[:8]), settings)
    job.thread.join(900)
    events, _ = lora.read_events(job.log_path)
    progress = lora.summarize_events(events)
    assert progress.status == "completed", progress.message
    start, end = progress.eval_loss[0], progress.eval_loss[-1]
    assert progress.eval_steps == (0, 6) and end < 0.85 * start, (start, end)

    archive = lora.save_adapter_zip(runner.adapter(), tmp_path)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(copy.deepcopy(fp32.model), tmp_path / "adapter").eval()
    ids = encode_prompt(fp32.tokenizer, "What color is the sky?")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, runner.adapter().model(input_ids=ids).logits,
                                   rtol=0, atol=1e-5)

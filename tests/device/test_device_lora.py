"""LoRA: a few (Q)LoRA steps through LoraRunner on the device, the adapter's effect, the adapter zip, merge + adopt."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from benchmarks.common import median
from harness import LORA_PROMPT, Run, Section, free_memory, is_exact, step
from playground import lora
from playground.runtime.variants import trainable_base
from playground import quantization as quant
from playground.runtime import LoadedModel, ModelLoadError

pytestmark = pytest.mark.device


MERGE_REFUSALS = (lora.LoraError, ModelLoadError, NotImplementedError)


def test_lora(run: Run, section: Section) -> None:
    loaded = run.model()
    base = trainable_base(run.manager, loaded)
    section.metric("trainable base", f"{base.precision.label} on {base.device}"
                   f"{' (QLoRA: 4-bit base, fp32 adapters)' if lora.is_4bit(base.model) else ''}")
    pirate = lora.builtin_dataset("pirate")
    steps = run.sizes.lora_steps
    settings = lora.LoraSettings(steps=steps, warmup_steps=1, schedule="constant", eval_every=steps, dropout=0.0)
    runner = lora.LoraRunner(run.scratch / "lora-logs")
    job = runner.start(base, lora.Dataset("pirate", pirate.train, pirate.eval[:8]), settings)
    try:
        while job.thread is not None and job.thread.is_alive():
            job.thread.join(1.0)  # short joins: a section time limit can interrupt between them
    finally:
        if job.thread is not None and job.thread.is_alive():
            runner.cancel()
            job.thread.join(30)
    events, _ = lora.read_events(job.log_path)
    progress = lora.summarize_events(events)
    section.data["progress"] = progress.as_dict()
    section.check("training job completed", progress.status == "completed", progress.status, "completed",
                  progress.message)
    section.check("QLoRA on the 4-bit base" if base.precision.quantization == "nf4" else "LoRA on the fp32 base",
                  bool(progress.start.get("qlora")) == (base.precision.quantization == "nf4"), f"qlora={progress.start.get('qlora')}")
    losses = list(progress.train_loss) + list(progress.eval_loss)
    section.check("losses finite", len(progress.train_loss) == steps and all(math.isfinite(x) for x in losses),
                  [round(x, 3) for x in progress.train_loss])
    if len(progress.eval_loss) >= 2:
        section.check("eval loss falls", progress.eval_loss[-1] < progress.eval_loss[0],
                      f"{progress.eval_loss[0]:.3f} -> {progress.eval_loss[-1]:.3f}", soft=True)
    step_seconds = [e["seconds"] for e in events if e["event"] == "step"]
    if step_seconds:
        section.metric("training step", median(step_seconds[1:] or step_seconds), "s",
                       f"batch {settings.batch_size}, LoRA r={settings.rank} on {'/'.join(settings.target_modules)}, "
                       f"median {median(list(progress.tokens_per_second)):.0f} tokens/s")
    section.metric("peak memory while training", progress.end.get("peak_memory_mb"), "MB",
                   f"trainable {progress.start.get('trainable_parameters')} parameters")
    adapter = runner.adapter()
    moved = max(float(parameter.detach().abs().max()) for name, parameter in adapter.model.named_parameters()
                if "lora_B" in name)  # B starts at 0: it moves only if gradients reach the adapters
    section.check("the LoRA B matrices moved from zero", moved > 0, moved, "> 0",
                  "0 means no gradient reached the adapters (e.g. a 4-bit kernel without autograd)")
    with step(section, "adapter effect"):
        shift = lora.next_token_shift(adapter, LORA_PROMPT)
        section.check("the adapter changes the next-token distribution", shift.kl_bits > 0, shift.kl_bits,
                      "KL > 0 bits", f"top token {shift.top_before!r} -> {shift.top_after!r}")
        pairs = lora.compare_answers(adapter, [LORA_PROMPT], max_new_tokens=run.sizes.answer_tokens)
        section.check("before/after answers", pairs[0].before_tokens > 0 and pairs[0].after_tokens > 0,
                      f"{pairs[0].before[:40]!r} -> {pairs[0].after[:40]!r}")
    with step(section, "adapter zip"):
        archive = lora.save_adapter_zip(adapter, run.scratch)
        section.check("adapter zip written", archive.is_file() and archive.stat().st_size > 0,
                      f"{archive.stat().st_size / 1e3:.0f} kB")
    with step(section, "merge"):
        try:
            merged = lora.merge_adapter(adapter, loaded)
        except MERGE_REFUSALS as error:
            section.check("merge", False, f"refused: {error}", detail="the module's own refusal", soft=True)
            return
        section.metric("merge", merged.load_seconds, "s", f"merged model: {merged.precision.label}")
        merge_checks(section, adapter, merged)
        run.manager.adopt(merged, merged.spec.key)
        adopted = run.manager.active() is merged
        run.manager.load()  # back to the base, as the header's Load does
        section.check("adopt the merged model, then switch back", adopted and run.manager.active() is loaded,
                      run.manager.status()["model"]["model"])
        del merged
    del adapter, runner
    free_memory(run.device)


def merge_checks(section: Section, adapter: lora.TrainedAdapter, merged: LoadedModel) -> None:
    """The merged model against base + adapter on the shipped evaluation text (the Model tab's KL / top-1).
    Exact (fp32) merges must agree to rounding. A merge into quantized weights (NF4 on a GPU; a CPU int8/int4
    app model's merged copy is re-quantized like it) re-rounds them: small KL is expected, a broken merge
    (wrongly packed weights) shows as a KL of nats. KL against the base shows how much of the adapter survived."""
    ids = quant.eval_text_ids(adapter.tokenizer)

    def eval_logits(model: Any) -> torch.Tensor:
        with torch.inference_mode():
            return model(input_ids=ids.to(lora.model_device(model))).logits[0].float().cpu()

    with adapter.lock:
        adapter.model.eval()
        adapted = eval_logits(adapter.model)
        with lora.base_behaviour(adapter) as base_model:
            base = eval_logits(base_model)
    folded = eval_logits(merged.model)
    versus_adapter = quant.quality_vs_reference(adapted, folded, ids[0])
    versus_base = quant.quality_vs_reference(base, folded, ids[0])
    adapter_effect = quant.quality_vs_reference(base, adapted, ids[0])
    detail = (f"KL merged vs base {versus_base.kl_mean:.4f}, adapter vs base {adapter_effect.kl_mean:.4f} nats; "
              f"top-1 vs adapter {versus_adapter.top1_agreement:.1%}; {merged.precision.label}")
    if is_exact(merged):
        difference = float((adapted - folded).abs().max())
        section.check("merged model == base + adapter (eval text logits)", difference <= 1e-3, difference, "<= 1e-3",
                      detail)
    else:
        kl = versus_adapter.kl_mean
        known_lossy = merged.device == "cpu" and merged.precision.quantization == "int8"  # INT8_DYNAMIC_WARNING
        section.check("merged model ~ base + adapter (eval text, KL nats)", kl <= 0.1, kl, "<= 0.1 (re-rounded weights)",
                      detail, soft=kl <= 0.5 or known_lossy)

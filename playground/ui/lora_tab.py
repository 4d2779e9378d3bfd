"""LoRA tab: fine-tune a private copy of the loaded model in the background, watch the loss fall,
compare before and after, download the adapter, merge it for the other tabs or unload it.
Handlers are thin adapters over playground.lora and playground.figures.lora."""

from __future__ import annotations

import html
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from playground import lora
from playground.figures import lora as figures
from playground.figures.style import empty_figure
from playground.lora.compare import answers_verdict
from playground.runtime import ModelLoadError
from playground.runtime.variants import base_model_key, trainable_base
from playground.limits import shown, whole_number_in
from playground.ui.common import explanation, on_page_load
from playground.sessions import AccessDenied
from playground.ui.access import current_session, require_presenter, visitor_id
from playground.ui.context import AppContext
from playground.ui.engine import weights_note
from playground.ui.errors import user_errors

EXPLANATION = r"""
### What you are seeing
**LoRA** (low-rank adaptation) leaves every weight matrix $W$ ($d \times k$) of the model frozen and learns
a small correction beside the ones you pick:

$$W' = W + \frac{\alpha}{r}\,B A, \qquad B \in \mathbb{R}^{d\times r},\; A \in \mathbb{R}^{r\times k}$$

$B$ starts at zero, so before the first step the adapted model answers exactly like the base model, and
only $r(d+k)$ numbers per matrix are trained instead of $d\,k$. Training minimises the mean cross-entropy
on the **response** tokens $R$ (the prompt is masked):
$\;\mathcal{L} = -\frac{1}{|R|}\sum_{t \in R} \log p_\theta(x_t \mid x_{<t})$. The run uses a private copy of the model in the background (fp32 on CPU, 4-bit QLoRA on a GPU), so the
other tabs keep working.

**Takeaway:** a few hundred thousand trained numbers — well under 1% of the model — are enough to change
how it answers.
"""

DATASET_CHOICES = [(label, key) for key, label in lora.BUILTIN_DATASETS.items()] + [("My JSONL file", "upload")]
POLL_SECONDS = 1.0
COMPARE_PROMPTS = 3  # default prompts from the eval split
MAX_COMPARE_PROMPTS = 4  # each prompt is answered twice on CPU: keep the comparison under a minute
FINISHED = ("completed", "cancelled", "failed")
NO_RUN = "No training run yet: pick a dataset and press Train."
NO_ADAPTER = "Train an adapter first; then compare, download or merge it here."
NO_COMPARISON = "After training, press “Compare before / after” to see how the first answer token moved."
UPLOAD_HELP = ('One JSON object per line: {"instruction": ..., "response": ...} (optional "input"; "output" '
               'works for "response"), or {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}.')


# ---------------------------------------------------------------------------------------------
# Adapters (the math is in playground.lora)
# ---------------------------------------------------------------------------------------------


def lora_settings(rank: float, alpha: float, dropout: float, targets: list[str], learning_rate: float,
                  schedule: str, warmup: float, train_by: str, steps: float, epochs: float, batch_size: float,
                  grad_accumulation: float, max_length: float, seed: float, mask_prompt: bool,
                  eval_every: float) -> lora.LoraSettings:
    """UI values -> validated settings (out-of-range values are rejected with the allowed range)."""
    if train_by == "epochs" and not (epochs or 0) > 0:
        raise lora.LoraSettingsError("Training by epochs needs epochs > 0 (up to 20).")
    return lora.LoraSettings(rank=rank, alpha=alpha, dropout=dropout, target_modules=tuple(targets or ()),
                           learning_rate=learning_rate, schedule=schedule, warmup_steps=warmup, steps=steps,
                           epochs=epochs if train_by == "epochs" else 0.0, batch_size=batch_size,
                           grad_accumulation=grad_accumulation, max_length=max_length, seed=seed,
                           mask_prompt=bool(mask_prompt), eval_every=eval_every)


def chosen_dataset(choice: str, upload: str | None, seed: float | None) -> lora.Dataset:
    if choice != "upload":
        return lora.builtin_dataset(choice)
    if not upload:
        raise lora.DatasetError("Upload a JSONL file first, or pick one of the shipped datasets.")
    text = Path(upload).read_text(encoding="utf-8", errors="replace")
    return lora.dataset_from_jsonl(text, Path(upload).name, int(seed or 0))


def dataset_markdown(report: dict[str, Any]) -> str:
    tokens = report["tokens"]
    lines = [f"**{report['name']}**: {report['accepted']} examples accepted → **{report['train']} train / "
             f"{report['eval']} eval**; {len(report['rejected'])} lines rejected.",
             f"Tokens per example: mean {tokens['mean_tokens']:.0f}, longest {tokens['longest_tokens']} "
             f"(max length {tokens['max_length']}); **{tokens['truncated']} truncated**, {tokens['dropped']} dropped "
             f"(no response token left); the loss is taken on {tokens['loss_token_share']:.0%} of the tokens "
             + ("(response only)." if tokens["mask_prompt"] else "(prompt and response).")]
    lines += [f"- line {r['line']}: {r['reason']}" for r in report["rejected"][:10]]
    if len(report["rejected"]) > 10:
        lines.append(f"- … and {len(report['rejected']) - 10} more (all in the JSON below)")
    lines += [f"ℹ️ {note}" for note in report["notes"]]
    example = report["first_example"]
    lines.append(f"First example — prompt: *{example['prompt'][:160]}* → response: *{example['response'][:160]}*")
    return "\n\n".join(lines)


def budget_markdown(budget: lora.LoraBudget) -> str:
    rows = "\n".join(f"| {m.name} | {m.d_out}×{m.k_in} ×{m.count} | {m.full:,} | {m.lora:,} | {m.full / m.lora:.0f}× |"
                     for m in budget.matrices)
    return (f"| matrix | d×k ×count | full d·k | LoRA r(d+k) | fewer |\n|---|---|---|---|---|\n"
            f"{rows}\n| **total** | | **{budget.full_total:,}** | **{budget.lora_total:,}** | "
            f"**{budget.reduction_factor:.0f}×** |\n\n"
            f"LoRA trains **{budget.lora_total:,}** parameters = **{budget.percent_of_model:.3f}%** of the model's "
            f"{budget.model_parameters:,}; the adapter is **{budget.adapter_bytes / 2**20:.2f} MB** in fp32.")


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def phase_html(phase: str) -> str:
    """The progress box before a job exists: what is being prepared (no step count, no made-up percentage)."""
    return (f'<div id="lora-progress-box" style="font-size:15px;line-height:1.6"><b>Preparing</b> — '
            f'{html.escape(phase)}…</div>')


def preparing(phase: str) -> tuple[Any, ...]:
    """The train handler's outputs while it prepares a job: the phase in the box and the JSON, plots left."""
    return phase_html(phase), gr.skip(), gr.skip(), gr.skip(), {"status": "preparing", "phase": phase}


def progress_html(progress: lora.TrainingProgress) -> str:
    colors = {"completed": "#009E73", "cancelled": "#E69F00", "failed": "#D55E00"}
    color = colors.get(progress.status, "#0072B2")
    percent = 100 * progress.step / max(progress.total_steps, 1)
    message = f" — {progress.message}" if progress.message else ""
    if progress.phase:
        message = f" — {progress.phase}…"
    if progress.queue_position:
        message = (f" — waiting for a training slot: {ordinal(progress.queue_position)} in line (this server trains "
                   "a limited number of adapters at once)")
    return (f'<div id="lora-progress-box" style="font-size:15px;line-height:1.6">'
            f'<b>Step {progress.step} / {progress.total_steps}</b> · elapsed {_clock(progress.elapsed_seconds)} · '
            f'ETA {_clock(progress.eta_seconds)} · <b style="color:{color}">{progress.status}</b>{message}'
            f'<div style="background:#E5E7EB;border-radius:6px;height:14px;margin-top:4px">'
            f'<div style="width:{percent:.1f}%;background:{color};height:14px;border-radius:6px"></div></div>'
            f'<span style="font-size:13px;color:#4B5563">job {progress.job_id}</span></div>')


def stats_markdown(progress: lora.TrainingProgress) -> str:
    start, end = progress.start, progress.end
    if not start:
        return "Preparing the model copy and the LoRA layers…"
    base_parameters = start["all_parameters"] - start["trainable_parameters"]
    lines = [
        # one share on the tab: of the base model's parameters, as the budget above (PEFT's total includes the
        # adapter, which would print a second, slightly smaller percentage)
        f"**Trainable parameters** {start['trainable_parameters']:,} = "
        f"**{100 * start['trainable_parameters'] / base_parameters:.3f}%** of the model's {base_parameters:,} "
        f"({start['all_parameters']:,} with the adapter, as PEFT reports) · **adapter** {start['adapter_mb']:.2f} MB vs "
        f"{start['model_mb']:.0f} MB for the model · on **{start['device']}**"
        + (" (QLoRA: 4-bit NF4 base)" if start["qlora"] else " (fp32)"),
        f"**Data** {start['dataset']}: {start['train_examples']} train / {start['eval_examples']} eval examples, "
        f"{start['truncated']} truncated, {start['dropped']} dropped · loss on "
        + ("response tokens only (prompt masked)" if start["settings"]["mask_prompt"] else "every token"),
    ]
    if progress.tokens_per_second:
        speed = progress.tokens_per_second[-1]
        lines.append(f"**Throughput** {speed:.0f} tokens/s (last step) · last train loss "
                     f"{progress.train_loss[-1]:.3f}" + (f" · eval loss {progress.eval_loss[0]:.3f} → "
                                                          f"**{progress.eval_loss[-1]:.3f}**" if progress.eval_loss else ""))
    if end.get("peak_memory_mb") is not None:
        lines.append(f"**Peak memory** {end['peak_memory_mb']:,.0f} MB ({'GPU allocated' if start['device'] == 'cuda' else 'process RSS'}), "
                     f"+{end['memory_increase_mb']:,.0f} MB during the run")
    return "\n\n".join(lines)


def run_progress(job: lora.TrainingJob) -> lora.TrainingProgress:
    """A job's numbers so far, from its own JSONL log."""
    events, _ = lora.read_events(job.log_path)
    return lora.summarize_events(events)


def adapter_note(runner: lora.LoraRunner, owner: str) -> str:
    """What section 4 can do now: nothing before a run ("Train an adapter first"), wait while one trains, or use
    the adapter the last run left (a message that stayed after training was no longer true)."""
    job = runner.job(owner)
    if job is None:
        return NO_ADAPTER
    if job.running:
        return f"Your job {job.id} is still training: its adapter can be compared, downloaded or used once it ends."
    if job.adapter is None:
        return f"Your job {job.id} ended without an adapter ({job.status}). " + NO_ADAPTER
    progress = run_progress(job)
    return (f"Your adapter from job {job.id} is ready ({job.status} after {progress.step} of {progress.total_steps} "
            f"steps on {job.adapter.dataset}): compare it in section 3, download it, or use it in your tabs.")


def verdict_markdown(data: dict[str, Any] | None) -> str:
    """The comparison's one sentence when the run was too short to change the answers ("" hides it)."""
    verdict = (data or {}).get("why_unchanged") or ""
    return f"⚠ {verdict}" if verdict else ""


def compare_prompts(text: str) -> tuple[list[str], list[str]]:
    """Non-empty lines, capped (with a note)."""
    prompts = [line.strip() for line in (text or "").splitlines() if line.strip()]
    notes = []
    if len(prompts) > MAX_COMPARE_PROMPTS:
        notes.append(f"Only the first {MAX_COMPARE_PROMPTS} of {len(prompts)} prompts are compared.")
    return prompts[:MAX_COMPARE_PROMPTS], notes


# ---------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------


def create_lora_tab(ctx: AppContext) -> dict[str, Any]:
    runner = lora.LoraRunner(ctx.settings.cache_dir / "lora", max_running=ctx.limits.training_runs)
    defaults = lora.LoraSettings()

    def owner() -> str:
        """The calling visitor: their job, adapter and private model are theirs alone (across reloads)."""
        return visitor_id(ctx.sessions)

    def render(progress: lora.TrainingProgress, plots: bool) -> tuple[Any, ...]:
        figs = (figures.loss_figure(progress), figures.dynamics_figure(progress)) if plots else (gr.skip(), gr.skip())
        return (progress_html(progress), stats_markdown(progress), *figs, progress.as_dict())

    def monitor(job: lora.TrainingJob) -> Iterator[tuple[Any, ...]]:
        """Poll the job's JSONL log (like LLaMA-Factory's Runner.monitor) until it ends; redraw the plots
        only when new steps or evaluations arrived."""
        events: list[dict[str, Any]] = []
        offset = 0
        while True:
            alive = job.thread is not None and job.thread.is_alive()
            new, offset = lora.read_events(job.log_path, offset)
            events += new
            progress = lora.summarize_events(events)
            yield render(progress, plots=bool(new) or not events)
            if progress.status in FINISHED or not alive:
                return
            time.sleep(POLL_SECONDS)

    @user_errors
    def train_lora(dataset: str, upload: str | None, rank: float, alpha: float, dropout: float, targets: list[str],
                 learning_rate: float, schedule: str, warmup: float, train_by: str, steps: float, epochs: float,
                 batch_size: float, grad_accumulation: float, max_length: float, seed: float, mask_prompt: bool,
                 eval_every: float) -> Iterator[tuple[Any, ...]]:
        settings = lora_settings(rank, alpha, dropout, targets, learning_rate, schedule, warmup, train_by, steps,
                                 epochs, batch_size, grad_accumulation, max_length, seed, mask_prompt, eval_every)
        data = chosen_dataset(dataset, upload, settings.seed)
        session = current_session(ctx.sessions)
        # what happens before the first step, said as it happens (a run showed "Step 0 · ETA –" for 30 s)
        yield preparing("loading the model in a trainable precision (fp32 on a CPU, NF4 on a GPU; cached after the "
                        "first run)")
        base = trainable_base(ctx.models, ctx.model())
        yield preparing(f"tokenizing {len(data.train) + len(data.eval)} examples (max length {settings.max_length} "
                        "tokens)")
        job = runner.start(base, data, settings, ctx.limits.training_steps, owner=session.id)
        if not any(getattr(release, "frees_lora", False) for release in session.on_end):
            # the owner left (tab closed or idle): their running job is cancelled and their adapter freed
            release = lambda: runner.forget(session.id)  # noqa: E731
            release.frees_lora = True  # type: ignore[attr-defined]
            session.on_end.append(release)
        yield from monitor(job)

    @user_errors
    def reattach(visitor: str | None = None) -> Iterator[tuple[Any, ...]]:
        """On page load: follow this visitor's running job (or show their last one), found again after a
        reload through the browser's visitor token; never another visitor's. Without one the page keeps what it
        opened on: the prepared example's cached run (examples.opening_example), else the empty view."""
        ctx.claim_page(visitor)
        job = runner.job(owner())
        if job is None:
            yield tuple(gr.skip() for _ in monitor_outputs)
            return
        yield from monitor(job)

    @user_errors
    def cancel(job_id: str | None = None) -> dict[str, Any]:
        """Cancel your own run; with a job id, the presenter may cancel anyone's (a runaway run in a class)."""
        target = runner.find(job_id) if job_id else runner.job(owner())
        if job_id and target is None:
            raise lora.NoAdapterError(f"No training job {shown(job_id)}.")
        if target is not None and target.owner != owner():
            require_presenter(ctx.sessions, "cancel another visitor's training run")
        cancelled = runner.cancel(owner(), target.id if target is not None else None)
        return {"cancelled": cancelled is not None, "job_id": target.id if target else None,
                "message": "Cancel requested: the job stops before its next micro-batch." if cancelled
                else "No training job of yours is running."}

    @user_errors
    def check_dataset(dataset: str, upload: str | None, max_length: float, mask_prompt: bool,
                      seed: float | None) -> tuple[str, dict[str, Any], str]:
        data = chosen_dataset(dataset, upload, seed)
        length = lora.check_limit("max_length", max_length)
        report = {**data.report(), "tokens": lora.token_report(ctx.model().tokenizer, data, length, bool(mask_prompt))}
        return dataset_markdown(report), report, "\n".join(e.prompt for e in data.eval[:COMPARE_PROMPTS])

    @user_errors
    def why_lora(rank: float, targets: list[str]) -> tuple[Any, str, dict[str, Any]]:
        if not targets:
            message = "Pick at least one target module to see what LoRA would train."
            return empty_figure(message), message, {"empty": True, "message": message}
        loaded = ctx.model()
        budget = lora.lora_budget(loaded.model, targets, lora.check_limit("rank", rank),
                                  model_parameters=loaded.parameters)
        return figures.budget_figure(budget), budget_markdown(budget), budget.as_dict()

    def model_targets(rank: float, targets: list[str]) -> tuple[Any, ...]:
        """On page load: the checkboxes list the loaded model's real linear layers."""
        try:
            loaded = ctx.models.require_active()
        except ModelLoadError as error:
            return gr.skip(), empty_figure(str(error)), str(error), {"error": str(error)}
        names = list(lora.linear_layer_names(loaded.model))
        chosen = [name for name in targets if name in names] or names[:1]
        return (gr.CheckboxGroup(choices=names, value=chosen), *why_lora(rank, chosen))

    @user_errors
    def compare(prompts_text: str, max_new_tokens: float) -> tuple[Any, Any, dict[str, Any]]:
        adapter = runner.adapter(owner())
        prompts, notes = compare_prompts(prompts_text)
        if not prompts:
            message = "Type one prompt per line to compare the base and the adapted model."
            return [], empty_figure(message), {"empty": True, "message": message}
        pairs = lora.compare_answers(adapter, prompts, whole_number_in("max_new_tokens", max_new_tokens, 1,
                                                                     ctx.limits.lora_compare_new_tokens))
        shift = lora.next_token_shift(adapter, prompts[0])
        rows = [[p.prompt, p.before, p.after] for p in pairs]
        job = runner.job(owner())
        # a run too short to change the answers says so, from its own steps, learning rate and loss
        verdict = answers_verdict(pairs, run_progress(job), adapter.settings.learning_rate) if job else ""
        data = {"job_id": adapter.job_id, "answers": [asdict(p) for p in pairs], "next_token": shift.as_dict(),
                "notes": notes, "why_unchanged": verdict}
        return rows, figures.token_shift_figure(shift), data

    @user_errors
    def download() -> tuple[str, dict[str, Any]]:
        adapter = runner.adapter(owner())  # only your own adapter can be downloaded
        archive = lora.save_adapter_zip(adapter, Path(tempfile.mkdtemp(prefix="lora-")))
        folder = archive.with_suffix("")
        files = {path.name: path.stat().st_size for path in sorted(folder.iterdir())}
        return str(archive), {"job_id": adapter.job_id, "zip": archive.name, "zip_bytes": archive.stat().st_size,
                              "files": files, "load_with": "PeftModel.from_pretrained(base_model, folder)"}

    @user_errors
    def use_mine() -> tuple[str, dict[str, Any]]:
        """Your adapter merged into a private copy that only your tabs use; nobody else's answers change."""
        adapter = runner.adapter(owner())
        session = current_session(ctx.sessions)
        held = len(ctx.sessions.sessions_using(lambda s: s.private_model is not None and s.id != session.id))
        if held >= ctx.limits.private_models:
            raise AccessDenied(f"{held} visitors already use a private adapter model, the most this server holds. "
                               "Compare before/after works without one; or ask the presenter to publish yours.")
        session.private_model = lora.merge_adapter(adapter, adapter.base)
        merged = session.private_model
        return (f"Your tabs now use **{merged.spec.label}** ({merged.precision.label}, merged in "
                f"{merged.load_seconds:.1f} s); other visitors still use the base model. **Unload** switches "
                "you back."), {"private": True, "model": merged.spec.key, "job_id": adapter.job_id}

    @user_errors
    def merge() -> tuple[str, dict[str, Any]]:
        require_presenter(ctx.sessions, "publish an adapter to everyone")
        adapter = runner.adapter(owner())
        merged = lora.merge_adapter(adapter, ctx.model())
        ctx.models.adopt(merged, merged.spec.key)
        return (f"**{merged.spec.label}** is now the active model in every tab, for everyone ({merged.precision.label}, "
                f"merged in {merged.load_seconds:.1f} s). Press ↻ in the header to see it there; **Unload** "
                "switches everyone back to the base model."), ctx.models.status()

    @user_errors
    def unload() -> tuple[str, dict[str, Any]]:
        """Your private adapter model goes; the presenter's Unload also stops publishing a merged adapter."""
        session = current_session(ctx.sessions)
        if session.private_model is not None:
            label = session.private_model.spec.label
            session.private_model = None
            return f"Your tabs are back on the base model (**{label}** freed).", ctx.models.status()
        active = ctx.models.require_active()
        base_key = base_model_key(active.spec.key)
        if base_key == active.spec.key:
            return "No adapter is in use: the base model is already in use.", ctx.models.status()
        require_presenter(ctx.sessions, "switch everyone back from the published adapter")
        ctx.models.load(base_key, active.precision.quantization, active.device)
        ctx.models.discard(active.spec.key)  # no longer published: not loadable by name either
        return f"Everyone is back on the base model **{ctx.model().spec.label}**.", ctx.models.status()

    # -- layout ----------------------------------------------------------------------------------
    limits = lora.LIMITS
    default_data = lora.builtin_dataset("pirate")
    explanation(EXPLANATION)
    gr.Markdown(weights_note(ctx), visible=ctx.engine is not None)  # an engine cannot share weights
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("#### 1 · Data")
            dataset = gr.Radio(DATASET_CHOICES, value="pirate", label="Dataset")
            upload = gr.File(label="Your JSONL (instruction/response pairs or chat messages)", type="filepath",
                             file_types=[".jsonl", ".json", ".txt"], height=110)
            gr.Markdown(UPLOAD_HELP, elem_classes=["pg-note"])
            check = gr.Button("Check dataset")
            dataset_report = gr.Markdown(elem_id="lora-dataset-report")
        with gr.Column(scale=3, min_width=420):
            gr.Markdown("#### 2 · LoRA and training settings")
            with gr.Row():
                rank = gr.Slider(*limits["rank"], value=defaults.rank, step=1, label="Rank r", min_width=150)
                alpha = gr.Number(defaults.alpha, label=f"Alpha α ({limits['alpha'][0]:g}–{limits['alpha'][1]:g})",
                                  min_width=120)
                dropout = gr.Slider(*limits["dropout"], value=defaults.dropout, step=0.01, label="Dropout", min_width=150)
            targets = gr.CheckboxGroup(list(defaults.target_modules), value=list(defaults.target_modules),
                                       label="Target modules (the loaded model's linear layers)")
            with gr.Row():
                learning_rate = gr.Number(defaults.learning_rate, label="Learning rate (1e-6–0.1)", min_width=120)
                schedule = gr.Radio(list(lora.SCHEDULES), value=defaults.schedule, label="Schedule (after warmup)",
                                    min_width=180)
                warmup = gr.Number(defaults.warmup_steps, label="Warmup steps", precision=0, min_width=100)
            with gr.Row():
                train_by = gr.Radio(["steps", "epochs"], value="steps", label="Train for", min_width=150)
                steps = gr.Number(defaults.steps, label=f"Steps (1–{limits['steps'][1]:g})", precision=0, min_width=100)
                epochs = gr.Number(1.0, label="Epochs (0–20)", min_width=100)
            with gr.Row():
                batch_size = gr.Number(defaults.batch_size, label="Batch size", precision=0, min_width=90)
                grad_accumulation = gr.Number(defaults.grad_accumulation, label="Gradient accumulation", precision=0,
                                              min_width=90)
                max_length = gr.Number(defaults.max_length, label="Max sequence length (tokens)", precision=0,
                                       min_width=90)
            with gr.Row():
                seed = gr.Number(defaults.seed, label="Seed", precision=0, min_width=90)
                eval_every = gr.Number(defaults.eval_every, label="Eval every n steps", precision=0, min_width=90)
                mask_prompt = gr.Checkbox(defaults.mask_prompt, label="Loss on the response only (prompt masked)",
                                          min_width=200)
    gr.Markdown("#### Why LoRA — computed from the loaded model")
    with gr.Row():
        budget_plot = gr.Plot(label="Full vs LoRA parameters", elem_id="lora-budget-plot", scale=3)
        with gr.Column(scale=2, min_width=440):
            budget_table = gr.Markdown(elem_id="lora-budget-table")
    with gr.Row():
        train = gr.Button("Train", variant="primary", elem_id="lora-train")
        stop = gr.Button("Cancel", variant="stop", elem_id="lora-cancel")
    progress_box = gr.HTML(f"<div id='lora-progress-box'>{NO_RUN}</div>", elem_id="lora-progress")
    stats = gr.Markdown(elem_id="lora-stats")
    with gr.Row():
        loss_plot = gr.Plot(empty_figure(NO_RUN, "Loss"), label="Loss", elem_id="lora-loss-plot")
        dynamics_plot = gr.Plot(empty_figure(NO_RUN, "Training dynamics"),
                                label="Learning rate, gradient norm, throughput", elem_id="lora-dynamics-plot")

    gr.Markdown("#### 3 · Before and after — the same prompts, base model vs adapted model (greedy)")
    with gr.Row():
        prompts = gr.Textbox("\n".join(e.prompt for e in default_data.eval[:COMPARE_PROMPTS]), lines=3, max_lines=8,
                             label=f"Prompts, one per line (up to {MAX_COMPARE_PROMPTS})", scale=3)
        with gr.Column(scale=1, min_width=200):
            max_new_tokens = gr.Slider(8, ctx.limits.lora_compare_new_tokens, value=32, step=8, label="New tokens per answer")
            compare_button = gr.Button("Compare before / after", variant="primary")
    answers = gr.Dataframe(headers=["prompt", "before (base)", "after (LoRA)"], datatype=["str", "str", "str"],
                           wrap=True, column_widths=["22%", "39%", "39%"], interactive=False, label="Answers",
                           elem_id="lora-answers")
    compare_note = gr.Markdown(elem_id="lora-compare-note")
    shift_plot = gr.Plot(empty_figure(NO_COMPARISON), label="First answer token: probability before vs after",
                         elem_id="lora-shift-plot")

    gr.Markdown("#### 4 · Use the adapter")
    with gr.Row():
        download_button = gr.Button("Download adapter (.zip)")
        use_button = gr.Button("Use my adapter in my tabs")
        merge_button = gr.Button("Publish to everyone (presenter)")
        unload_button = gr.Button("Unload (back to the base model)")
    with gr.Row():
        adapter_file = gr.File(label="Adapter: adapter_model.safetensors + adapter_config.json", interactive=False)
        adapter_message = gr.Markdown(NO_ADAPTER, elem_id="lora-adapter-message")
    with gr.Accordion("Raw numbers (JSON): training, dataset, why LoRA, compare, adapter", open=False):
        training_json = gr.JSON(label="training")
        dataset_json = gr.JSON(label="lora_dataset")
        budget_json = gr.JSON(label="lora_budget")
        compare_json = gr.JSON(label="compare_lora")
        adapter_json = gr.JSON(label="adapter")

    # -- events ----------------------------------------------------------------------------------
    setting_inputs = [rank, alpha, dropout, targets, learning_rate, schedule, warmup, train_by, steps, epochs,
                      batch_size, grad_accumulation, max_length, seed, mask_prompt, eval_every]
    monitor_outputs = [progress_box, stats, loss_plot, dynamics_plot, training_json]
    budget_outputs = [budget_plot, budget_table, budget_json]
    dataset_inputs = [dataset, upload, max_length, mask_prompt, seed]
    dataset_outputs = [dataset_report, dataset_json, prompts]
    # Streaming and polling handlers only read a log file: never queue them behind each other (the
    # runner itself allows one job and tells a second request so).
    show_adapter = lambda: adapter_note(runner, owner())  # noqa: E731
    train.click(train_lora, [dataset, upload, *setting_inputs], monitor_outputs, api_name="train_lora",
                concurrency_limit=None).then(show_adapter, None, adapter_message, api_visibility="private",
                                             queue=False)
    job_to_cancel = gr.Textbox(visible=False)  # empty: your own run (the API may name a job id)
    stop.click(cancel, job_to_cancel, training_json, api_name="cancel_lora", concurrency_limit=None)
    check.click(check_dataset, dataset_inputs, dataset_outputs, api_name="lora_dataset")
    dataset.change(check_dataset, dataset_inputs, dataset_outputs, api_visibility="private", trigger_mode="always_last")
    upload.upload(lambda: "upload", None, dataset, api_visibility="private", queue=False)  # then dataset.change checks it
    rank.change(why_lora, [rank, targets], budget_outputs, api_name="lora_budget", trigger_mode="always_last",
                show_progress="hidden")
    targets.change(why_lora, [rank, targets], budget_outputs, api_visibility="private", trigger_mode="always_last",
                   show_progress="hidden")
    compare_button.click(compare, [prompts, max_new_tokens], [answers, shift_plot, compare_json],
                         api_name="compare_lora").success(verdict_markdown, compare_json, compare_note,
                                                          api_visibility="private", queue=False)
    download_button.click(download, None, [adapter_file, adapter_json], api_name="download_adapter")
    use_button.click(use_mine, None, [adapter_message, adapter_json], api_name="use_lora")
    merge_button.click(merge, None, [adapter_message, adapter_json], api_name="merge_lora")
    unload_button.click(unload, None, [adapter_message, adapter_json], api_name="unload_lora")
    # The page-load fills below draw no progress: the tab is not in sight when the page opens, and a status per
    # output would stay in the page's loading-status table (queueing.quiet_progress_on).
    on_page_load(reattach, ctx.visitor, monitor_outputs, api_visibility="private", concurrency_limit=None,
                 show_progress="hidden").then(show_adapter, None, adapter_message, api_visibility="private",
                                              queue=False, show_progress="hidden")
    # Page load only (no inputs: gr.on(None, ...) with inputs would also fire on every rank or target change,
    # resetting the checkboxes and re-checking the dataset each time).
    initial_rank, initial_targets = rank.value, list(targets.value or [])
    gr.on(None, lambda: model_targets(initial_rank, initial_targets), None, [targets, *budget_outputs],
          api_visibility="private", concurrency_limit=None, show_progress="hidden").then(
        check_dataset, dataset_inputs, dataset_outputs, api_visibility="private", show_progress="hidden")
    return {"dataset": dataset, "upload": upload, "check": check, "dataset_report": dataset_report, "rank": rank,
            "alpha": alpha, "dropout": dropout, "targets": targets, "learning_rate": learning_rate,
            "schedule": schedule, "warmup": warmup, "train_by": train_by, "steps": steps, "epochs": epochs,
            "batch_size": batch_size, "grad_accumulation": grad_accumulation, "max_length": max_length, "seed": seed,
            "eval_every": eval_every, "mask_prompt": mask_prompt, "budget_plot": budget_plot,
            "budget_table": budget_table, "train": train, "cancel": stop, "progress": progress_box, "stats": stats,
            "loss_plot": loss_plot, "dynamics_plot": dynamics_plot, "prompts": prompts,
            "max_new_tokens": max_new_tokens, "compare": compare_button, "answers": answers, "compare_note": compare_note,
            "shift_plot": shift_plot,
            "download": download_button, "merge": merge_button, "unload": unload_button, "adapter_file": adapter_file,
            "adapter_message": adapter_message, "training_json": training_json, "dataset_json": dataset_json,
            "budget_json": budget_json, "compare_json": compare_json, "adapter_json": adapter_json}

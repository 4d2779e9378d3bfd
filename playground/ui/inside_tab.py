"""Inside the model (issue 19): the logit lens, switching parts off (and every head's importance), and why the
model picks its token (integrated gradients vs leave-one-out). Handlers are thin adapters over
playground.inside and playground.figures.inside."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import gradio as gr

from playground import inside
from playground.figures import inside as figures
from playground.figures.style import empty_figure
from playground.limits import whole_number_in
from playground.runtime import LoadedModel
from playground.runtime.variants import trainable_base
from playground.sampling_pipeline import SamplingSettings
from playground.ui.common import StopSwitches, explanation
from playground.ui.context import AppContext
from playground.ui.errors import user_errors

EXPLANATION = r"""
### What you are seeing
A model adds each layer's work to one running vector per token, the **residual stream** $h_\ell$. Only after
the last layer is it turned into next-token scores, by the final norm and the output head $W_U$. The **logit
lens** applies that same last step to the stream after *every* layer, as if the model stopped there:
$$p_\ell = \mathrm{softmax}\big(W_U\,\mathrm{norm}(h_\ell)\big),\qquad
\mathrm{KL}(p_L \,\|\, p_\ell) = \textstyle\sum_v p_L(v)\log\frac{p_L(v)}{p_\ell(v)}$$
The token *commits* at the first depth from which the model's final choice stays on top.

**Switching a part off** (ablation) asks what the prediction needs: a head $h$ writes only through its slice
of the output projection, $o = \sum_h W_O^{(h)} z_h$, so replacing $z_h$ by $0$ (or by its mean over the
prompt) removes exactly that head. The head-importance map does it for every head alone, in one batched
forward per layer.

**Why this token** explains the logit difference $f = z_\text{token} - z_\text{runner-up}$ per input token. Integrated
gradients walk from a baseline $x^0$ (the padding token's embedding) to the prompt $x$:
$$\mathrm{IG}_i = (x_i - x^0_i)\cdot\int_0^1 \nabla_{x_i} f\big(x^0 + \alpha(x - x^0)\big)\,d\alpha,
\qquad \textstyle\sum_i \mathrm{IG}_i = f(x) - f(x^0)$$
(completeness, checked on screen). Leave-one-out simply deletes token $i$ and runs the model again.

**What the lens can mislead about:** the final norm and head were trained to read the *last* layer only;
early layers may hold the answer in a form this reading cannot decode (a tuned lens learns one per layer), so a
late "commit" does not prove the model had not worked it out earlier. Attribution is not causation either:
IG depends on the baseline, and leave-one-out changes every later position.

**Takeaway:** the answer often forms in the middle-to-late layers, a few heads matter far more than the rest,
and a handful of input tokens carry the decision.
"""

DEFAULT_PROMPT = "The Eiffel Tower is in the city of"
EMPTY = "Type a prompt above and press a button to look inside the model."
FLOAT_WEIGHTS = ("none", "bf16", "fp16")  # precisions whose weights are plain float tensors (gradients flow)
COLOUR_CHOICES = [(label, key) for key, label in figures.LENS_COLOURS.items()]
MODE_CHOICES = [(f"{key}: {label}", key) for key, label in inside.MODES.items()]


def lens_markdown(lens: inside.LogitLens, model: LoadedModel) -> str:
    last = lens.prompt.length - 1
    final = lens.top_labels[-1][last][0]
    commit = lens.depth_name(int(lens.commit_depth[last]))
    cut_middle = int(lens.cut[1:-1].sum())
    lines = [f"**{lens.prompt.length} tokens × {lens.depths} depths** on {model.spec.label} ({model.precision.label}). "
             f"Next token: **{final!r}**, on top from **{commit}** on.",
             f"Sampling with T={lens.settings.temperature}, top-k={lens.settings.top_k}, top-p={lens.settings.top_p}, "
             f"min-p={lens.settings.min_p} keeps {int(lens.kept[last]):,} candidate(s) at the last position; "
             f"{cut_middle} middle-layer favourite(s) across all positions would be cut (✕)."]
    if lens.prompt.note:
        lines.insert(0, f"⚠ {lens.prompt.note}")
    return "\n\n".join(lines)


def ablation_markdown(result: inside.AblationResult) -> str:
    names = ", ".join(part.name for part in result.parts[:12]) + (" …" if len(result.parts) > 12 else "")
    before, after = result.top_before[0], result.top_after[0]
    verdict = (f"the top token changes from **{before[1]!r}** to **{after[1]!r}**" if result.top1_changed
               else f"the top token stays **{before[1]!r}** (p {before[2]:.3f} → {before[3]:.3f})")
    return (f"Switched off ({inside.MODES[result.mode]}): {names}.\n\n"
            f"**KL(before ‖ after) = {result.kl:.4f} nats**; {verdict}.\n\n"
            f"Greedy continuation, {result.new_tokens} tokens:\n\n"
            f"- everything on: `{result.continuation_before!r}`\n- parts off: `{result.continuation_after!r}`")


def importance_markdown(result: inside.HeadImportance, tokenizer: Any) -> str:
    layer, head = divmod(int(result.kl.argmax()), result.shape.num_heads)
    changed = int(result.top1_changed.sum())
    return (f"Every one of the {result.kl.size} heads switched off alone ({result.mode}), in "
            f"{result.forwards} batched forwards. The most important: **L{layer}H{head}** "
            f"(KL {result.kl[layer, head]:.4f} nats). {changed} head(s) alone change the top token "
            f"{tokenizer.decode([result.top_id])!r}. Type `{layer}.{head}` above and press *Switch off* to see it.")


def attribution_markdown(result: inside.Attribution, note: str) -> str:
    change = result.logit_diff - result.baseline_diff
    ok = "✓" if result.completeness_error <= 0.01 else "✗ (more steps would help)"
    rho = "n/a (one side is constant)" if result.spearman is None else f"{result.spearman:.3f}"
    return (f"Explaining **{result.target!r}** over **{result.contrast!r}**: logit difference "
            f"f(x) = {result.logit_diff:.4f}, f(baseline) = {result.baseline_diff:.4f}.\n\n"
            f"**Completeness:** Σ IG = {result.ig_sum:.4f} vs f(x) − f(baseline) = {change:.4f} → error "
            f"{100 * result.completeness_error:.3f}% with {result.steps} steps {ok}.\n\n"
            f"**Rank agreement** IG vs leave-one-out (Spearman ρ over {result.prompt.length} tokens): {rho}.\n\n"
            f"{note}")


def stopped_outputs(stopped: inside.InsideCancelled, button: str) -> tuple[str, Any, dict[str, Any]]:
    """A stopped job's status, chart and JSON: how far it got, and how to run it again."""
    message = f"⏹ {stopped} Press **{button}** to run it again."
    return message, empty_figure(f"⏹ {stopped}"), {"stopped": True, "done": stopped.done, "total": stopped.total}


class InsideHandlers:
    """The tab's handlers as plain methods (tests call them). Holds the last few lenses, so moving the position
    slider, the sampling settings or switching the colour does not run the model again."""

    CACHE_SIZE = 4

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.lenses: OrderedDict[tuple[Any, ...], inside.LogitLens] = OrderedDict()
        # the Stop button's reach: the caller's running importance map and attribution
        self.importance_stops, self.attribution_stops = StopSwitches(), StopSwitches()

    def sampling(self, temperature: float, top_k: float, top_p: float, min_p: float) -> SamplingSettings:
        return SamplingSettings(temperature=float(temperature), top_k=whole_number_in("top-k", top_k, 0, 10**6),
                                top_p=float(top_p), min_p=float(min_p))

    def lens(self, text: str, settings: SamplingSettings) -> tuple[inside.LogitLens, LoadedModel]:
        """The lens of `text` under `settings`: run once per prompt and model; other settings re-read it."""
        loaded = self.ctx.model()
        key = (id(loaded.model), text)
        if key not in self.lenses:
            prompt = inside.encode(loaded.tokenizer, text, self.ctx.limits.inside_lens_tokens)
            self.lenses[key] = inside.logit_lens(loaded.model, loaded.tokenizer, prompt, settings, loaded.lock)
            while len(self.lenses) > self.CACHE_SIZE:
                self.lenses.popitem(last=False)
        self.lenses.move_to_end(key)
        lens = self.lenses[key]
        return (lens if lens.settings == settings else inside.with_sampling(lens, settings)), loaded

    @user_errors
    def show_lens(self, text: str, colour: str, temperature: float, top_k: float, top_p: float, min_p: float,
                  position: float | None = None) -> tuple[Any, ...]:
        if not (text or "").strip():
            blank = empty_figure(EMPTY)
            return EMPTY, blank, blank, {"empty": True, "message": EMPTY}, gr.update()
        lens, loaded = self.lens(text, self.sampling(temperature, top_k, top_p, min_p))
        last = lens.prompt.length - 1
        at = last if position is None or position < 0 else min(int(position), last)
        return (lens_markdown(lens, loaded), figures.lens_heatmap(lens, colour), figures.lens_curves(lens, at),
                inside.lens_json(lens), gr.update(maximum=max(last, 1), value=at))

    @user_errors
    def show_position(self, text: str, temperature: float, top_k: float, top_p: float, min_p: float,
                      position: float) -> Any:
        lens, _ = self.lens(text, self.sampling(temperature, top_k, top_p, min_p))
        at = whole_number_in("position", position, 0, lens.prompt.length - 1)
        return figures.lens_curves(lens, at)

    @user_errors
    def ablate(self, text: str, heads: str, attention_layers: list[Any] | None, mlp_layers: list[Any] | None,
               mode: str, new_tokens: float) -> tuple[Any, ...]:
        loaded = self.ctx.model()
        limits = self.ctx.limits
        prompt = inside.encode(loaded.tokenizer, text, limits.inside_lens_tokens)
        parts = inside.parse_parts(heads, attention_layers or [], mlp_layers or [],
                                   inside.model_shape(loaded.model), limits.inside_parts)
        count = whole_number_in("new tokens", new_tokens, 1, limits.inside_new_tokens)
        result = inside.ablate(loaded.model, loaded.tokenizer, prompt, parts, mode, count, loaded.eos_token_ids,
                               loaded.lock)
        return ablation_markdown(result), figures.ablation_bars(result), inside.ablation_json(result)

    @user_errors
    def head_importance(self, text: str, mode: str, request: gr.Request = None,
                        progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        loaded = self.ctx.model()
        prompt = inside.encode(loaded.tokenizer, text, self.ctx.limits.inside_importance_tokens)
        try:
            with self.importance_stops.running(request) as cancel:
                result = inside.head_importance(
                    loaded.model, prompt, mode, loaded.lock,
                    lambda done, total: progress((done, total), desc="Layers", unit="layers"), cancel)
        except inside.InsideCancelled as stopped:
            return stopped_outputs(stopped, "Map every head's importance")
        data = inside.importance_json(result)
        return importance_markdown(result, loaded.tokenizer), figures.importance_heatmap(result), data

    def stop(self, request: gr.Request = None) -> tuple[Any, Any]:
        """Stop: the caller's running importance map ends before its next layer, their attribution before its next
        batch of steps (the model's lock is free at once for the next visitor); each status says so."""
        return tuple(f"⏹ Stopping: the server ends it after the current {unit}." if switches.stop(request)
                     else gr.skip() for switches, unit in ((self.importance_stops, "layer"),
                                                           (self.attribution_stops, "batch of steps")))  # type: ignore[return-value]

    def gradient_model(self, loaded: LoadedModel) -> tuple[LoadedModel, str]:
        """The model gradients can flow through, and the sentence that says which and why."""
        if loaded.precision.quantization in FLOAT_WEIGHTS:
            return loaded, (f"Gradients and leave-one-out ran on the loaded model itself ({loaded.precision.label}): "
                            "its weights are plain floats.")
        copy = trainable_base(self.ctx.models, loaded)
        return copy, (f"Gradients and leave-one-out ran on **{copy.precision.label}**, a copy of the same model: the "
                      f"loaded {loaded.precision.label} weights are packed codes whose kernel has no backward "
                      "pass, so no gradient reaches the input embeddings through them (both attributions use the "
                      "copy, so they compare like for like).")

    @user_errors
    def attribute(self, text: str, target: str, contrast: str, steps: float, request: gr.Request = None,
                  progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        limits = self.ctx.limits
        count = whole_number_in("integrated-gradients steps", steps, 1, limits.inside_ig_steps)
        model, note = self.gradient_model(self.ctx.model())
        tokenizer = model.tokenizer
        prompt = inside.encode(tokenizer, text, limits.inside_attribution_tokens, minimum=2)
        target_id, target_note = inside.resolve_token(tokenizer, target) if (target or "").strip() else (None, "")
        contrast_id, contrast_note = (inside.resolve_token(tokenizer, contrast) if (contrast or "").strip()
                                      else (None, ""))
        try:
            with self.attribution_stops.running(request) as cancel:
                result = inside.attribute(
                    model.model, tokenizer, prompt, target_id, contrast_id, count, model.lock,
                    lambda done, total: progress((done, total), desc="IG steps", unit="steps"), cancel)
        except inside.InsideCancelled as stopped:
            return stopped_outputs(stopped, "Explain this token")
        notes = " ".join(f"Token {n}." for n in (target_note, contrast_note) if n)
        if prompt.note:
            notes = f"⚠ {prompt.note} {notes}"
        data = inside.attribution_json(result)
        data["precision"] = {"model": model.spec.key, "precision": model.precision.label, "note": note}
        return attribution_markdown(result, f"{note} {notes}".strip()), figures.attribution_figure(result), data


def create_inside_tab(ctx: AppContext) -> dict[str, Any]:
    handlers = InsideHandlers(ctx)
    explanation(EXPLANATION)
    loaded = ctx.models.active()
    layers = inside.model_shape(loaded.model).num_layers if loaded else 30
    limits = ctx.limits

    prompt = gr.Textbox(DEFAULT_PROMPT, lines=2, label="Prompt (used by all three views)")

    gr.Markdown("## 1. Logit lens\nThe residual stream after every layer, read through the model's own final "
                "norm and output head. Hover a cell for its top 5; ◆ marks where the final token commits, ✕ a "
                "top token the sampling settings below would cut.")
    with gr.Row():
        colour = gr.Radio(COLOUR_CHOICES, value="top_prob", label="Colour by", scale=3)
        lens_button = gr.Button("Show the logit lens", variant="primary", scale=1)
    with gr.Row():
        temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature (0 = greedy)")
        top_k = gr.Slider(0, 200, value=0, step=1, label="top-k (0 = off)")
        top_p = gr.Slider(0.01, 1, value=1.0, step=0.01, label="top-p (1 = off)")
        min_p = gr.Slider(0, 1, value=0.0, step=0.01, label="min-p (0 = off)")
    lens_status = gr.Markdown(elem_id="inside-lens-status")
    lens_plot = gr.Plot(empty_figure("Press “Show the logit lens”."), label="logit lens", elem_id="inside-lens")
    position = gr.Slider(0, max(limits.inside_lens_tokens - 1, 1), value=0, step=1,
                         label="Position for the curves (the last one after each run)")
    curves_plot = gr.Plot(empty_figure("The curves appear with the lens."), label="entropy and KL across depth",
                          elem_id="inside-curves")
    with gr.Accordion("Logit lens as JSON", open=False):
        lens_json = gr.JSON(label="logit_lens")

    gr.Markdown("## 2. Switch parts off\nHeads as `layer.head` (e.g. `3.4, 10.*`; the map below shows the GQA "
                "groups), or whole attention / MLP layers.")
    with gr.Row():
        # a click on the head-importance map adds its head here (assets/presenter.js)
        heads = gr.Textbox("", label="Heads to switch off (layer.head, * = all heads of a layer)", scale=3,
                           elem_id="inside-heads")
        attention_layers = gr.Dropdown(list(range(layers)), multiselect=True, value=[], label="Attention of layers",
                                       scale=2)
        mlp_layers = gr.Dropdown(list(range(layers)), multiselect=True, value=[], label="MLP of layers", scale=2)
    with gr.Row():
        mode = gr.Radio(MODE_CHOICES, value="zero", label="Switch off by", scale=2)
        new_tokens = gr.Slider(1, limits.inside_new_tokens, value=12, step=1, label="Greedy continuation (tokens)",
                               scale=2)
        ablate_button = gr.Button("Switch off and compare", variant="primary", scale=1)
    ablation_status = gr.Markdown(elem_id="inside-ablation-status")
    ablation_plot = gr.Plot(empty_figure("Pick parts above and press “Switch off and compare”."),
                            label="next token before and after", elem_id="inside-ablation")
    with gr.Accordion("Ablation as JSON", open=False):
        ablation_json = gr.JSON(label="ablate")
    with gr.Row():
        importance_button = gr.Button("Map every head's importance", variant="secondary")
        stop_button = gr.Button("Stop", variant="stop", scale=0, min_width=100)
    importance_status = gr.Markdown(elem_id="inside-importance-status")
    importance_plot = gr.Plot(empty_figure("Press “Map every head's importance” (one batched forward per layer)."),
                              label="head importance", elem_id="inside-importance")
    with gr.Accordion("Head importance as JSON", open=False):
        importance_json = gr.JSON(label="head_importance")

    gr.Markdown("## 3. Why this token?\nThe logit difference between the model's token and a runner-up, spread "
                "over the input tokens by integrated gradients and by leaving each token out.")
    with gr.Row():
        target = gr.Textbox("", label="Token to explain (empty: the model's top token)", scale=2)
        contrast = gr.Textbox("", label="…rather than (empty: the runner-up)", scale=2)
        steps = gr.Slider(4, limits.inside_ig_steps, value=64, step=1, label="Integrated-gradients steps", scale=2)
        attribute_button = gr.Button("Explain this token", variant="primary", scale=1)
    attribution_status = gr.Markdown(elem_id="inside-attribution-status")
    attribution_plot = gr.Plot(empty_figure("Press “Explain this token”."), label="attribution",
                               elem_id="inside-attribution")
    with gr.Accordion("Attribution as JSON", open=False):
        attribution_json = gr.JSON(label="attribute")

    sampling = [temperature, top_k, top_p, min_p]
    gr.on([lens_button.click, prompt.submit, colour.input], handlers.show_lens, [prompt, colour, *sampling],
          [lens_status, lens_plot, curves_plot, lens_json, position], api_name="logit_lens")
    # `input`, not `release`: arrow keys on a slider fire no release, and the view stayed on the old value. A
    # sampling move keeps the chosen position.
    gr.on([temperature.input, top_k.input, top_p.input, min_p.input], handlers.show_lens,
          [prompt, colour, *sampling, position], [lens_status, lens_plot, curves_plot, lens_json, position],
          api_visibility="private", trigger_mode="always_last")
    position.input(handlers.show_position, [prompt, *sampling, position], curves_plot, api_visibility="private",
                   trigger_mode="always_last")
    ablate_button.click(handlers.ablate, [prompt, heads, attention_layers, mlp_layers, mode, new_tokens],
                        [ablation_status, ablation_plot, ablation_json], api_name="ablate")
    importance = importance_button.click(handlers.head_importance, [prompt, mode],
                                         [importance_status, importance_plot, importance_json],
                                         api_name="head_importance")
    explain = attribute_button.click(handlers.attribute, [prompt, target, contrast, steps],
                                     [attribution_status, attribution_plot, attribution_json], api_name="attribute")
    # both: `cancels=` frees the page and drops a job still waiting in the queue, but cannot end a thread that runs;
    # handlers.stop tells that thread to end before its next layer / step batch (the model's lock is freed)
    stop_button.click(handlers.stop, None, [importance_status, attribution_status], api_name="stop_inside",
                      cancels=[importance, explain], queue=False)

    return {"prompt": prompt, "colour": colour, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "min_p": min_p, "lens_button": lens_button, "lens_status": lens_status, "lens_plot": lens_plot,
            "position": position, "curves_plot": curves_plot, "lens_json": lens_json, "heads": heads,
            "attention_layers": attention_layers, "mlp_layers": mlp_layers, "mode": mode, "new_tokens": new_tokens,
            "ablate_button": ablate_button, "ablation_status": ablation_status, "ablation_plot": ablation_plot,
            "ablation_json": ablation_json, "importance_button": importance_button, "stop_button": stop_button,
            "importance_status": importance_status, "importance_plot": importance_plot,
            "importance_json": importance_json, "target": target, "contrast": contrast, "steps": steps,
            "attribute_button": attribute_button, "attribution_status": attribution_status,
            "attribution_plot": attribution_plot, "attribution_json": attribution_json}

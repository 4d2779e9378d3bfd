"""Sampling tab: the loaded model's next-token distribution through the sampling pipeline stage by
stage, draws vs the math, a temperature sweep, and step-through generation with branching.
Handlers are thin adapters over playground.sampling and playground.figures.sampling."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, Hashable, Iterator, TypeVar

import gradio as gr
import torch

from playground import sampling as smp
from playground.engine.sampling import engine_prompt_logits, engine_trace
from playground.figures import sampling as figures
from playground.figures.style import empty_figure
from playground.limits import shown, whole_number_in
from playground.tokenization import token_label
from playground.ui.common import explanation
from playground.ui.context import AppContext
from playground.ui.deeplinks import link_into
from playground.ui.engine import engine_or_local
from playground.ui.errors import user_errors
from playground.ui.queueing import after_first_paint, skip_the_queue

EXPLANATION = r"""
### What you are seeing
For every token of its vocabulary the model outputs a score, the **logit** $z_i$. Sampling turns the
scores into one next token in stages — the same stages, in the same order, as Hugging Face `generate`:
1. **repetition penalty** $\theta$: a token already in the text gets $z_i/\theta$ (if $z_i > 0$) or $z_i\,\theta$;
2. **temperature** $T$: $\;p_i = e^{z_i/T} / \sum_j e^{z_j/T}$. $T < 1$ sharpens, $T > 1$ flattens,
   and $T = 0$ means **greedy**: always the most likely token;
3. **top-k**: keep the $k$ most likely tokens ($0$ = off);
4. **top-p** (nucleus): keep the smallest set of most likely tokens whose probabilities add up to at least $p$;
5. **min-p**: keep the tokens with $p_i \ge \text{min-p} \cdot \max_j p_j$;

then **renormalise** what is left and draw. Moving a slider reuses the model's logits for this prompt
(cached), so the chart answers without running the model again.

**Takeaway:** the model only proposes a distribution; temperature reshapes it and the filters cut its
tail — no setting ever adds a token the model did not already offer.
"""

TRACE_EXPLANATION = """
### Step-through generation
Generate token by token with the settings above (same seed, same draws). The text is coloured by how
likely the model found each chosen token; click a token (or move the step slider) to see the
alternatives at that step, then **force** one of them: generation rewinds to that step, puts your
token there and continues with the same settings and seed.
"""

DEFAULT_PROMPT = "The capital of France is"
Result = TypeVar("Result")
EMPTY_MESSAGE = "Type a prompt above to see the model's next-token distribution."
EMPTY_TRACE_MESSAGE = "Press “Generate step by step” to see a generation trace."
EMPTY_NUMBERS = {"empty": True, "message": EMPTY_MESSAGE}


# ---------------------------------------------------------------------------------------------
# Adapters (no math here: it is all in playground.sampling)
# ---------------------------------------------------------------------------------------------


def sampling_settings(temperature: float, top_k: float | None, top_p: float, min_p: float,
                      repetition_penalty: float, seed: float | None) -> smp.SamplingSettings:
    """UI values -> validated settings (a blank top-k means off, a blank seed means unseeded)."""
    for name, value in (("temperature", temperature), ("top_p", top_p), ("min_p", min_p),
                        ("repetition_penalty", repetition_penalty)):
        if value is None:
            raise smp.SamplingSettingsError(f"{name} is empty: give it a number.")
    return smp.SamplingSettings(temperature=float(temperature), top_k=0 if top_k is None else int(top_k),
                                top_p=float(top_p), min_p=float(min_p),
                                repetition_penalty=float(repetition_penalty),
                                seed=None if seed is None else int(seed))


def model_key(loaded: Any) -> str:
    return f"{loaded.spec.key}|{loaded.precision.label}|{loaded.device}"


def stats_markdown(view: smp.NextTokenView, prompt_tokens: int, notes: tuple[str, ...]) -> str:
    chosen = view.chosen
    seed = "unseeded" if view.settings.seed is None else f"seed {view.settings.seed}"
    kept = " → ".join(f"{smp.STAGE_LABELS[stage]} {view.kept[stage]:,}" for stage in view.active_stages)
    lines = [
        f"**Entropy** {view.entropy_bits['raw']:.2f} bits → **{view.entropy_bits['min_p']:.2f} bits** "
        f"(raw → final) · **nucleus** after top-p: **{view.nucleus_size:,}** tokens · **mass kept** by the "
        f"filters: **{view.mass_kept:.1%}**",
        f"**Drawn ({seed}):** `{token_label(chosen.text)}` — model rank **{chosen.rank}**, final p = "
        f"{chosen.final_prob:.4f} (model p = {chosen.raw_prob:.4f})",
        f"Tokens left after each stage: {kept} (vocabulary {view.vocab_size:,}; prompt {prompt_tokens} tokens)",
    ]
    lines += [f"ℹ️ {note}" for note in notes]
    return "\n\n".join(lines)


def alternative_choices(step: smp.TraceStep) -> list[tuple[str, int]]:
    return [(f"{token_label(alt.text)} · p = {alt.prob:.3f} (model {alt.raw_prob:.3f})", alt.token_id)
            for alt in step.alternatives]


def step_outputs(trace: smp.GenerationTrace, position: int) -> tuple[Any, gr.Dropdown]:
    """The step chart and the alternatives to force at `position` (the first one not already chosen)."""
    position = min(max(int(position), 0), len(trace.steps) - 1)
    step = trace.steps[position]
    others = [alt.token_id for alt in step.alternatives if alt.token_id != step.token_id]
    return figures.step_figure(step), gr.Dropdown(choices=alternative_choices(step),
                                                  value=others[0] if others else None)


def lens_link_markdown(trace: smp.GenerationTrace, position: int, tokenizer: Any, max_tokens: int) -> str:
    """A link that opens the logit lens (Inside the model, in a new browser tab) on the text the model read before
    step `position`: the prompt and the tokens chosen before it (the last `max_tokens`, the lens's limit), with the
    trace's sampling settings, so its last column is this step's distribution forming layer by layer."""
    position = min(max(int(position), 0), len(trace.steps) - 1)
    context = [*trace.prompt_ids, *trace.token_ids[:position]][-max_tokens:]
    settings = trace.settings
    query = link_into("inside", {"prompt": tokenizer.decode(context), "temperature": float(settings.temperature),
                                 "top_k": int(settings.top_k), "top_p": float(settings.top_p),
                                 "min_p": float(settings.min_p)})
    return (f"[Open the logit lens at step {position}]({query}): where the model's choice of "
            f"`{token_label(trace.steps[position].text)}` forms, layer by layer (Inside the model, a new tab).")


def trace_outputs(trace: smp.GenerationTrace, greedy: smp.GenerationTrace | None, position: int = 0) -> tuple[Any, ...]:
    """(sampled text, greedy text, probability chart, step slider, step chart, alternatives, JSON)."""
    step_plot, alternatives = step_outputs(trace, position)
    greedy_text = figures.highlighted_tokens(greedy) if greedy is not None else None
    data = {"trace": trace.to_dict(), "greedy": greedy.to_dict() if greedy is not None else None}
    return (figures.highlighted_tokens(trace), greedy_text, figures.trace_figure(trace, greedy),
            gr.Slider(minimum=0, maximum=max(len(trace.steps) - 1, 1), value=position, step=1, interactive=True),
            step_plot, alternatives, data)


# ---------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------


class RecentResults:
    """The last few results computed from one prompt's logits, keyed by what they depend on: a slider move's
    follow-up events (the raw numbers, the sweep) reuse what its first event computed, and a temperature move
    reuses the sweep (which shows fixed temperatures). Keyed by the PromptLogits object itself: new logits for
    a prompt (another model, an evicted cache entry) start afresh."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, Hashable], tuple[smp.PromptLogits, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, logits: smp.PromptLogits, key: Hashable, compute: Callable[[], Result]) -> Result:
        entry_key = (id(logits), key)
        with self._lock:
            entry = self._entries.get(entry_key)
            if entry is not None and entry[0] is logits:
                self._entries.move_to_end(entry_key)
                return entry[1]
        value = compute()  # outside the lock: two visitors computing the same view both get the same numbers
        with self._lock:
            self._entries[entry_key] = (logits, value)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value


@dataclass(frozen=True)
class NextTokenParts:
    """Everything the next-token views show for one set of inputs (the view, the sweep, the raw numbers)."""

    loaded: Any  # what has the tokenizer: the model, or the engine
    cached: smp.PromptLogits
    settings: smp.SamplingSettings
    view: smp.NextTokenView

    @property
    def prompt_tokens(self) -> int:
        return int(self.cached.input_ids.shape[-1])

    @property
    def notes(self) -> tuple[str, ...]:
        return self.cached.notes + self.view.notes


def sweep_key(settings: smp.SamplingSettings) -> smp.SamplingSettings:
    """What the temperature sweep depends on: every setting but the temperature (it shows its own) and the seed
    (it draws nothing)."""
    return replace(settings, temperature=1.0, seed=None)


class SamplingHandlers:
    """The tab's event handlers as plain methods (the tab wires them; tests call them): one per context, holding
    the prompt-logits cache the sliders reuse and the views computed from it.

    A slider move is three small events, so the stage chart it changes is drawn first: `stage_view` (the stage
    chart and its stats), then `raw_numbers` or, for the settings the sweep depends on, `sweep_view` (the
    sweep chart and the JSON), then `draw_samples`. The button (`next_token`) returns them all at once."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.cache = smp.PromptLogitsCache()
        self.recent = RecentResults()

    def prompt_logits(self, prompt: str, chat: bool) -> tuple[Any, smp.PromptLogits]:
        """(what has the tokenizer, the prompt's logits): the engine's top N when an engine is set, else the model's."""
        return engine_or_local(self.ctx, lambda engine: (engine, engine_prompt_logits(engine, prompt, chat)),
                               lambda: self.local_prompt_logits(prompt, chat))

    def local_prompt_logits(self, prompt: str, chat: bool) -> tuple[Any, smp.PromptLogits]:
        loaded = self.ctx.model()
        return loaded, self.cache.get(model_key(loaded), loaded.model, loaded.tokenizer, prompt, chat, loaded.lock)

    def parts(self, prompt: str, chat: bool, temperature: float, top_k: float | None, top_p: float, min_p: float,
              repetition_penalty: float, seed: float | None, top_n: float) -> NextTokenParts | None:
        """The next-token view for these inputs (None for an empty prompt), computed once per set of inputs."""
        settings = sampling_settings(temperature, top_k, top_p, min_p, repetition_penalty, seed)
        if not prompt.strip():
            return None
        loaded, cached = self.prompt_logits(prompt, chat)
        shown_tokens = int(top_n)
        view = self.recent.get(cached, ("view", settings, shown_tokens), lambda: smp.next_token_view(
            cached.logits, settings, loaded.tokenizer, cached.input_ids[0], shown_tokens))
        return NextTokenParts(loaded, cached, settings, view)

    def sweep(self, parts: NextTokenParts) -> smp.TemperatureSweep:
        cached = parts.cached
        return self.recent.get(cached, ("sweep", sweep_key(parts.settings)), lambda: smp.temperature_sweep(
            cached.logits, parts.settings, parts.loaded.tokenizer, cached.input_ids[0]))

    def numbers(self, parts: NextTokenParts) -> dict[str, Any]:
        """The next_token JSON: the view, the prompt's length, the notes and the sweep."""
        return {**parts.view.to_dict(), "prompt_tokens": parts.prompt_tokens, "notes": list(parts.notes),
                "temperature_sweep": self.sweep(parts).to_dict()}

    @user_errors
    def next_token(self, prompt: str, chat: bool, temperature: float, top_k: float | None, top_p: float,
                   min_p: float, repetition_penalty: float, seed: float | None,
                   top_n: float) -> tuple[Any, str, Any, dict[str, Any]]:
        parts = self.parts(prompt, chat, temperature, top_k, top_p, min_p, repetition_penalty, seed, top_n)
        if parts is None:
            return empty_figure(EMPTY_MESSAGE), EMPTY_MESSAGE, empty_figure(EMPTY_MESSAGE), EMPTY_NUMBERS.copy()
        return (figures.stage_figure(parts.view), stats_markdown(parts.view, parts.prompt_tokens, parts.notes),
                figures.sweep_figure(self.sweep(parts)), self.numbers(parts))

    @user_errors
    def stage_view(self, prompt: str, chat: bool, temperature: float, top_k: float | None, top_p: float,
                   min_p: float, repetition_penalty: float, seed: float | None, top_n: float) -> tuple[Any, str]:
        """A slider move's first event: the stage chart and its stats, nothing else."""
        parts = self.parts(prompt, chat, temperature, top_k, top_p, min_p, repetition_penalty, seed, top_n)
        if parts is None:
            return empty_figure(EMPTY_MESSAGE), EMPTY_MESSAGE
        return figures.stage_figure(parts.view), stats_markdown(parts.view, parts.prompt_tokens, parts.notes)

    @user_errors
    def raw_numbers(self, prompt: str, chat: bool, temperature: float, top_k: float | None, top_p: float,
                    min_p: float, repetition_penalty: float, seed: float | None, top_n: float) -> dict[str, Any]:
        """After a move of a setting the sweep does not depend on (temperature, seed, tokens to show): the JSON."""
        parts = self.parts(prompt, chat, temperature, top_k, top_p, min_p, repetition_penalty, seed, top_n)
        return EMPTY_NUMBERS.copy() if parts is None else self.numbers(parts)

    @user_errors
    def sweep_view(self, prompt: str, chat: bool, temperature: float, top_k: float | None, top_p: float,
                   min_p: float, repetition_penalty: float, seed: float | None,
                   top_n: float) -> tuple[Any, dict[str, Any]]:
        """After a move of a setting the sweep depends on: the sweep chart and the JSON."""
        parts = self.parts(prompt, chat, temperature, top_k, top_p, min_p, repetition_penalty, seed, top_n)
        if parts is None:
            return empty_figure(EMPTY_MESSAGE), EMPTY_NUMBERS.copy()
        return figures.sweep_figure(self.sweep(parts)), self.numbers(parts)

    @user_errors
    def draw_samples(self, prompt: str, chat: bool, temperature: float, top_k: float | None, top_p: float,
                     min_p: float, repetition_penalty: float, seed: float | None,
                     samples: float | None) -> tuple[Any, dict[str, Any]]:
        settings = sampling_settings(temperature, top_k, top_p, min_p, repetition_penalty, seed)
        if not prompt.strip():
            return empty_figure(EMPTY_MESSAGE), EMPTY_NUMBERS.copy()
        loaded, cached = self.prompt_logits(prompt, chat)
        probs = smp.final_probabilities(cached.logits, settings, cached.input_ids[0])
        count = whole_number_in("number of samples", 0 if samples is None else samples, 1, self.ctx.limits.samples)
        histogram = smp.sample_histogram(probs, count, loaded.tokenizer,
                                         settings.seed)
        return figures.samples_figure(histogram), histogram.to_dict()

    @user_errors
    def generate_trace(self, prompt: str, chat: bool, temperature: float, top_k: float | None, top_p: float,
                       min_p: float, repetition_penalty: float, seed: float | None, max_new_tokens: float,
                       compare_greedy: bool) -> Iterator[tuple[Any, ...]]:
        """Streams: the sampled text grows token by token, then the greedy one beside it (each yield is the
        whole view so far; the last equals the non-streamed result)."""
        settings = sampling_settings(temperature, top_k, top_p, min_p, repetition_penalty, seed)
        if not prompt.strip():
            raise smp.SamplingSettingsError("The prompt is empty: type something for the model to continue.")
        new_tokens = whole_number_in("max_new_tokens", max_new_tokens, 1, self.ctx.limits.sampling_new_tokens)
        loaded, cached = self.prompt_logits(prompt, chat)

        def run(run_settings: smp.SamplingSettings) -> Iterator[smp.GenerationTrace]:
            if loaded is self.ctx.engine:  # the engine answers a whole trace in one request
                return iter([engine_trace(loaded, cached.input_ids, run_settings, new_tokens)])
            return smp.stream_trace(loaded.model, loaded.tokenizer, cached.input_ids, run_settings, new_tokens,
                                    loaded.eos_token_ids, loaded.lock, model_key(loaded))

        trace = None
        for trace in run(settings):
            yield trace_outputs(trace, None)
        assert trace is not None  # stream_trace always yields the finished trace last
        if compare_greedy and not settings.is_greedy:
            greedy_settings = smp.SamplingSettings(temperature=0.0, repetition_penalty=settings.repetition_penalty)
            for greedy in run(greedy_settings):
                yield trace_outputs(trace, greedy)

    @user_errors
    def force_token(self, data: dict[str, Any] | None, position: float,
                    token_id: int | str | None) -> Iterator[tuple[Any, ...]]:
        """Streams like generate_trace: the branch grows from the forced token on."""
        if not data or not data.get("trace"):
            raise smp.SamplingSettingsError("Generate a trace first, then pick a step and a token to force.")
        if token_id is None or not str(token_id).strip().isdigit():
            raise smp.SamplingSettingsError(f"Pick the token to force at this step (a token id), got {shown(token_id)}.")
        if self.from_engine(data.get("trace")):
            raise smp.SamplingSettingsError("Forcing a token replays the local model from that step; this trace came "
                                            "from the engine. Generate it again without an engine to branch it.")
        loaded = self.ctx.model()
        trace = self.client_trace(data["trace"], loaded)  # the client sends it back: every field is checked
        greedy = self.client_trace(data["greedy"], loaded, "greedy") if data.get("greedy") else None
        if trace.model_key != model_key(loaded):
            raise smp.SamplingSettingsError("The model changed since this trace was generated: generate it again.")
        step = whole_number_in("position", 0 if position is None else position, 0, max(len(trace.steps) - 1, 0))
        prefix = smp.branch_prefix(trace, step, int(token_id), loaded.eos_token_ids)
        for branch in smp.stream_trace(loaded.model, loaded.tokenizer, torch.tensor([trace.prompt_ids]),
                                       trace.settings, trace.max_new_tokens, loaded.eos_token_ids, loaded.lock,
                                       trace.model_key, prefix=prefix):
            yield trace_outputs(branch, greedy, step)

    def from_engine(self, trace: Any) -> bool:
        """Whether a trace sent back by the client was generated by the engine (engine_trace's model_key)."""
        return (self.ctx.engine is not None and isinstance(trace, dict)
                and str(trace.get("model_key", "")).startswith("engine:"))

    def client_trace(self, data: Any, loaded: Any, name: str = "trace") -> smp.GenerationTrace:
        """A trace JSON sent back by the client, checked against this server's limits and the model's vocabulary."""
        vocab_size = loaded.vocab_size if loaded is self.ctx.engine else int(loaded.model.get_input_embeddings().num_embeddings)
        return smp.trace_from_client(data, vocab_size, smp.MAX_PROMPT_TOKENS, self.ctx.limits.sampling_new_tokens,
                                     name)

    @user_errors
    def lens_link(self, data: dict[str, Any] | None, position: float | None) -> str:
        """The step's link to the logit lens ("" until a trace exists)."""
        if not data or not isinstance(data.get("trace"), dict) or not data["trace"].get("steps"):
            return ""
        loaded = self.ctx.engine if self.from_engine(data["trace"]) else self.ctx.model()
        return lens_link_markdown(self.client_trace(data["trace"], loaded), 0 if position is None else position,
                                  loaded.tokenizer, self.ctx.limits.inside_lens_tokens)

    @user_errors
    def show_step(self, data: dict[str, Any] | None, position: float) -> tuple[Any, gr.Dropdown]:
        if not data or not data.get("trace") or not (isinstance(data["trace"], dict) and data["trace"].get("steps")):
            return empty_figure(EMPTY_TRACE_MESSAGE), gr.Dropdown(choices=[], value=None)
        loaded = self.ctx.engine if self.from_engine(data["trace"]) else self.ctx.model()
        return step_outputs(self.client_trace(data["trace"], loaded), 0 if position is None else position)

    def select_step(self, event: gr.SelectData) -> int:
        return int(event.index)


def create_sampling_tab(ctx: AppContext) -> dict[str, Any]:
    handlers = SamplingHandlers(ctx)
    explanation(EXPLANATION)
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=3, max_lines=8,
                                info=f"Long prompts keep their last {smp.MAX_PROMPT_TOKENS} tokens.")
            chat = gr.Checkbox(False, label="Wrap in the chat template (as a user message)")
            top_n = gr.Slider(5, 40, value=15, step=1, label="Tokens to show")
            show = gr.Button("Show next-token distribution", variant="primary")
        with gr.Column(scale=3):
            with gr.Row():
                temperature = gr.Slider(0, 3, value=0.8, step=0.05, label="Temperature T (0 = greedy)", min_width=260)
                top_k = gr.Number(0, label="Top-k (0 = off)", precision=0, minimum=0, min_width=160)
            with gr.Row():
                top_p = gr.Slider(0.01, 1, value=0.95, step=0.01, label="Top-p (1 = off)", min_width=260)
                min_p = gr.Slider(0, 1, value=0.0, step=0.01, label="Min-p (0 = off)", min_width=260)
            with gr.Row():
                repetition_penalty = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Repetition penalty (1 = off)",
                                               min_width=260)
                seed = gr.Number(0, label="Seed (blank = random)", precision=0, minimum=0, min_width=160)
    stats = gr.Markdown(EMPTY_MESSAGE, elem_id="sampling-stats")
    stage_plot = gr.Plot(label="Stage by stage", elem_id="sampling-stages")
    sweep_plot = gr.Plot(label="Temperature sweep", elem_id="sampling-sweep")
    with gr.Row(equal_height=True):
        samples = gr.Number(1000, label=f"Draw N samples from the final distribution (1 to {ctx.limits.samples:,})",
                            precision=0, minimum=1, maximum=ctx.limits.samples, scale=3)
        draw = gr.Button("Draw", scale=1)
    samples_plot = gr.Plot(label="Samples vs the math", elem_id="sampling-samples")
    with gr.Accordion("next_token and draw_samples JSON (raw numbers)", open=False):
        next_json = gr.JSON(label="next_token")
        samples_json = gr.JSON(label="draw_samples")

    gr.Markdown(TRACE_EXPLANATION)
    with gr.Row():
        max_new_tokens = gr.Slider(1, smp.MAX_TRACE_TOKENS, value=24, step=1, label="New tokens")
        compare_greedy = gr.Checkbox(True, label="Also run greedy (T = 0) for comparison")
        generate = gr.Button("Generate step by step", variant="primary")
    color_map = figures.TEXT_COLORS
    with gr.Row():
        sampled_text = gr.HighlightedText(label="Output with these settings (click a token)", color_map=color_map,
                                          show_legend=True, show_inline_category=False, combine_adjacent=False,
                                          elem_id="sampling-trace-text")
        greedy_text = gr.HighlightedText(label="Greedy output (T = 0)", color_map=color_map, show_legend=True,
                                         show_inline_category=False, combine_adjacent=False,
                                         elem_id="sampling-greedy-text")
    trace_plot = gr.Plot(label="Probability of each chosen token", elem_id="sampling-trace-plot")
    with gr.Row():
        position = gr.Slider(0, 1, value=0, step=1, label="Step", interactive=True)
        # Custom values let scripts pass any token id; branch_trace checks it is one of the step's alternatives.
        alternative = gr.Dropdown([], label="Alternative to force at this step", interactive=True,
                                  allow_custom_value=True)
        force = gr.Button("Force this token and continue", scale=0, min_width=220)
    step_plot = gr.Plot(label="Alternatives at this step", elem_id="sampling-step-plot")
    lens_link = gr.Markdown(elem_id="sampling-lens-link")
    with gr.Accordion("generate_trace JSON (every step)", open=False):
        trace_json = gr.JSON(label="generate_trace")

    setting_inputs = [prompt, chat, temperature, top_k, top_p, min_p, repetition_penalty, seed]
    view_outputs = [stage_plot, stats, sweep_plot, next_json]
    trace_outputs_list = [sampled_text, greedy_text, trace_plot, position, step_plot, alternative, trace_json]
    # Cheap handlers (cached logits) never queue behind a running generation.
    fast = {"concurrency_limit": None, "show_progress": "hidden"}
    show.click(handlers.next_token, setting_inputs + [top_n], view_outputs, api_name="next_token",
               concurrency_limit=None)
    prompt.submit(handlers.next_token, setting_inputs + [top_n], view_outputs, api_visibility="private",
                  concurrency_limit=None)
    draw.click(handlers.draw_samples, setting_inputs + [samples], [samples_plot, samples_json],
               api_name="draw_samples", concurrency_limit=None)
    # A settings move redraws only what depends on it, the stage chart first (its own small event, so it is
    # painted before anything else arrives), then the JSON (and the sweep, for the settings it depends on),
    # then the draws (for the settings that change the final distribution or the seed).
    view_inputs = setting_inputs + [top_n]
    for triggers, follow_up, follow_up_outputs, redraws in (
            ([temperature.change, seed.change], handlers.raw_numbers, [next_json], True),
            ([top_n.change], handlers.raw_numbers, [next_json], False),
            ([chat.change, top_k.change, top_p.change, min_p.change, repetition_penalty.change], handlers.sweep_view,
             [sweep_plot, next_json], True)):
        moved = after_first_paint(gr.on(triggers, handlers.stage_view, view_inputs, [stage_plot, stats],
                                        api_visibility="private", trigger_mode="always_last", **fast,
                                        **skip_the_queue())).then(
            follow_up, view_inputs, follow_up_outputs, api_visibility="private", **fast)
        if redraws:
            moved.then(handlers.draw_samples, setting_inputs + [samples], [samples_plot, samples_json],
                       api_visibility="private", **fast)
    generate.click(handlers.generate_trace, setting_inputs + [max_new_tokens, compare_greedy], trace_outputs_list,
                   api_name="generate_trace")
    force.click(handlers.force_token, [trace_json, position, alternative], trace_outputs_list,
                api_name="force_token")
    sampled_text.select(handlers.select_step, None, position, api_visibility="private", queue=False)
    position.change(handlers.show_step, [trace_json, position], [step_plot, alternative], api_visibility="private",
                    **fast)
    gr.on([position.change, trace_json.change], handlers.lens_link, [trace_json, position], lens_link,
          api_visibility="private", trigger_mode="always_last", **fast)
    return {"prompt": prompt, "chat": chat, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "min_p": min_p, "repetition_penalty": repetition_penalty, "seed": seed, "top_n": top_n, "show": show,
            "stats": stats, "stage_plot": stage_plot, "samples": samples, "draw": draw, "samples_plot": samples_plot,
            "sweep_plot": sweep_plot, "next_json": next_json, "samples_json": samples_json,
            "max_new_tokens": max_new_tokens, "compare_greedy": compare_greedy, "generate": generate,
            "sampled_text": sampled_text, "greedy_text": greedy_text, "trace_plot": trace_plot,
            "position": position, "alternative": alternative, "force": force, "step_plot": step_plot,
            "lens_link": lens_link, "trace_json": trace_json}

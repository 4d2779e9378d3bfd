"""Speculative decoding tab: a draft proposes k tokens, the target accepts, rejects and resamples,
step by step, then races plain decoding. Handlers are thin adapters over playground.speculative,
playground.drafts and playground.figures.speculative."""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any, Iterator

import gradio as gr

from playground import speculative as spec
from playground.drafts import (
    DEFAULT_SKIP,
    DRAFT_KINDS,
    OPEN_PROMPT,
    CachedModel,
    build_draft,
)
from playground.figures import speculative as figures
from playground.figures.style import empty_figure
from playground.limits import LimitExceededError, whole_number_in
from playground.runtime.variants import draft_model as load_draft_model
from playground.runtime.variants import default_precision_model, speculative_target
from playground.sampling import SamplingSettings
from playground.tokenization import visible
from playground.ui.common import LATEX_DELIMITERS, explanation
from playground.ui.context import AppContext
from playground.ui.engine import spec_decode_panel
from playground.ui.errors import user_errors
from playground.ui.examples import load_example_file
from playground.ui.queueing import skip_the_queue

EXPLANATION = r"""
### What you are seeing
Decoding is slow because every token needs a full forward pass of the big model. **Speculative
decoding** lets a cheap **draft** guess the next $k$ tokens and has the **target** check them all in
**one** forward. For the draft's token $x_i$, drawn from its distribution $q_i$, with the target's
distribution $p_i$ after the same text:

- **accept** $x_i$ with probability $\min\!\left(1, \dfrac{p_i(x_i)}{q_i(x_i)}\right)$ (draw $u \sim U[0,1)$, accept if $u$ is below it);
- at the **first rejection**, draw a replacement from $\mathrm{normalize}\big(\max(0,\ p_i - q_i)\big)$ and end the step;
- if all $k$ are accepted, take a **bonus** token from $p_{k+1}$, which the same forward already computed.

Each step costs one target forward and yields 1 to $k+1$ tokens. With acceptance rate $\alpha$ and
cost ratio $c$ = (time of one draft step) / (time of one target step), the expected speed-up
(Leviathan et al. 2023) is $\dfrac{1-\alpha^{k+1}}{(1-\alpha)(k\,c+1)}$.

**Takeaway:** the draft decides only *how fast* the text comes, never *what* text comes: the output
follows the target's distribution exactly, and greedy output is identical token for token.
"""

WHY_EXACT = r"""
### Why the output is exactly the target's
For any token $y$ at one position: the draft proposes $y$ and it is kept with probability
$q(y)\min\!\big(1, \frac{p(y)}{q(y)}\big) = \min\big(p(y), q(y)\big)$. A rejection happens with
probability $\sum_x \big(q(x) - \min(p(x), q(x))\big) = \sum_x \max\big(0, p(x) - q(x)\big)$, exactly the
normaliser of the residual, so the resample adds $\max\big(0, p(y) - q(y)\big)$. Together:
$\min(p, q) + \max(0, p - q) = p(y)$. Temperature, top-k and top-p shape $p$ and $q$ through the same
sampling pipeline; at $T = 0$ both are one-hot, so a draft token survives only if it is the target's
argmax. The tests check this with a chi-square test over many seeds and token-for-token against
transformers' assisted generation.
"""

DRAFT_LABELS = {
    "int4": "int4 copy of the target (self-draft, CPU)",
    "int8": "int8 copy of the target (self-draft, CPU)",
    "layer_skip": "target with some layers skipped (self-draft)",
    "ngram": "n-gram prompt lookup (no model)",
    "model": "another model with the same tokenizer",
}
DRAFTS = [(DRAFT_LABELS[kind], kind) for kind in DRAFT_KINDS]
EMPTY_TEXT = ("<div class='spec-empty' style='color:#4B5563;padding:1em'>Press <b>Speculate</b> to watch the draft "
              "propose and the target accept, reject and resample.</div>")
EMPTY_FIGURE = "Run a speculation to see this chart."
STEP_HEADERS = ["#", "token", "q (draft)", "p (target)", "min(1, p/q)", "draw u", "outcome"]
STEP_WIDTHS = ["6%", "20%", "12%", "12%", "14%", "11%", "25%"]
RESIDUAL_HEADERS = ["token", "residual", "p (target)", "q (draft)"]
RACE_UPDATE_EVERY = 8  # tokens between progress updates during the race
CHIP = ("display:inline-block;margin:1px 1px;padding:1px 3px;border-radius:4px;white-space:pre-wrap;"
        "font-family:ui-monospace,monospace;font-size:14px;")


def sampling_settings(temperature: float, top_k: float | None, top_p: float, seed: float | None) -> SamplingSettings:
    return SamplingSettings(temperature=float(temperature), top_k=0 if top_k is None else int(top_k),
                            top_p=float(top_p), seed=None if seed is None else int(seed))


# ---------------------------------------------------------------------------------------------
# Rendering from the step records (plain dicts, as in the JSON)
# ---------------------------------------------------------------------------------------------


def _chip(text: str, fate: str, title: str) -> str:
    color = figures.FATE_COLORS[fate]
    shown = html.escape(text.replace("\n", "↵\n")) or "∅"
    if fate in ("rejected", "unchecked"):
        style = f"{CHIP}color:{color};text-decoration:line-through;border:1px dashed {color};"
    else:
        style = f"{CHIP}background:{color}33;border-bottom:3px solid {color};"
    return f"<span class='spec-{fate}' style='{style}' title='{html.escape(title)}'>{shown}</span>"


def _draft_title(step: dict[str, Any], token: dict[str, Any]) -> str:
    draw = "not checked" if token["draw"] is None else f"u = {token['draw']:.4f}"
    return (f"step {step['index'] + 1} · draft #{token['position']} · q = {token['q']:.4f}, p = {token['p']:.4f}, "
            f"min(1, p/q) = {token['accept_probability']:.4f}, {draw} → {token['outcome']}")


def legend_html() -> str:
    meaning = {"accepted": "accepted draft", "rejected": "rejected draft (struck through)",
               "unchecked": "drafted after a rejection, never checked", "resampled": "resampled by the target",
               "bonus": "bonus token (all drafts accepted)"}
    return "<div style='margin-bottom:6px;font-size:14px'>" + " ".join(
        _chip(label, fate, label) for fate, label in meaning.items()) + "</div>"


def tokens_html(steps: list[dict[str, Any]], selected: int | None = None) -> str:
    """The generated text, each token coloured by its fate; hover a token for its numbers.
    The selected step (0-based) is outlined."""
    if not steps:
        return EMPTY_TEXT
    parts = [legend_html(), "<div style='line-height:2.1;font-size:15px'>"]
    for step in steps:
        chips = [_chip(token["text"], token["outcome"], _draft_title(step, token)) for token in step["drafted"]]
        if step["final_kind"] is not None:
            chips.append(_chip(step["final_text"], step["final_kind"],
                               f"step {step['index'] + 1} · {step['final_kind']} token, p = {step['final_probability']:.4f}"))
        outline = "outline:2px solid #111827;border-radius:5px;" if step["index"] == selected else ""
        parts.append(f"<span class='spec-step' data-step='{step['index'] + 1}' style='{outline}'>{''.join(chips)}</span>")
    parts.append("</div>")
    return "".join(parts)


def step_rows(step: dict[str, Any]) -> tuple[list[list[Any]], list[list[Any]]]:
    """(the step's table: one row per drafted token, then the target's token; the residual's top tokens)."""
    rows = [[token["position"], visible(token["text"]), round(token["q"], 4), round(token["p"], 4),
             round(token["accept_probability"], 4), "—" if token["draw"] is None else round(token["draw"], 4),
             token["outcome"]] for token in step["drafted"]]
    if step["final_kind"] == "bonus":  # drawn from the target's p: its probability is p
        rows.append(["→", visible(step["final_text"]), "", round(step["final_probability"], 4), "", "",
                     "bonus, drawn from p"])
    elif step["final_kind"] == "resampled":  # drawn from the residual, whose probability is not p
        rows.append(["→", visible(step["final_text"]), "", "", "", "",
                     f"resampled: residual probability {step['final_probability']:.4f}"])
    residual = [[visible(token["text"]), round(token["probability"], 4), round(token["p"], 4), round(token["q"], 4)]
                for token in step["residual_top"]]
    return rows, residual


def short_precision(precision: Any) -> str:
    """'fp32' / 'bf16' for full precision, else the precision's name ('int4', 'int8', 'nf4')."""
    return precision.label if precision.quantization == "none" else precision.quantization


def cached_comparison(draft_kind: str) -> str:
    """A pointer to the prepared example that shows speculation winning (the same draft kind if one does)."""
    data = load_example_file("speculative")
    winners = []
    for example in data.examples:
        speed = example.outputs[-1].get("speed") if example.outputs else None  # the speculate JSON's speed report
        if speed and speed.get("measured_speedup", 0) > 1:
            winners.append((example.values.get("draft") == draft_kind, speed["measured_speedup"], example, speed))
    if not winners:
        return ""
    _, _, example, speed = max(winners, key=lambda item: item[:2])
    return (f" The prepared example **{example.title}** (cached, {data.generated}, {data.machine}) measured "
            f"{speed['measured_speedup']:.2f}× with α = {speed['alpha']:.2f} and c = {speed['cost_ratio']:.2f}.")


def verdict_sentence(verdict: spec.SpeedVerdict | None, draft_kind: str) -> str:
    """One plain sentence: why this run could not beat plain decoding of the same target (empty when it did)."""
    if verdict is None:
        return ""
    formula = (f"(1 − α^(k+1)) / ((1 − α)(k·c + 1)) with α = {verdict.alpha:.2f} and k = {verdict.k} beats plain "
               f"decoding only while c < {verdict.break_even_cost:.2f}")
    if verdict.kind == "draft-too-slow":
        best = (f"no k wins at this c (the best, k = {verdict.best_k}, predicts {verdict.best_predicted_speedup:.2f}×)"
                if verdict.best_predicted_speedup <= 1 else
                f"k = {verdict.best_k} would be predicted {verdict.best_predicted_speedup:.2f}×")
        why = (f"**Why speculation cannot win here:** each draft token costs c = {verdict.cost_ratio:.2f} of a target "
               f"step, and {formula}; {best}. On a busy or small CPU the draft is not much cheaper than the target.")
    else:
        why = (f"**Why it lost although the formula predicts a win:** {formula} (here c = {verdict.cost_ratio:.2f}), "
               f"but checking k + 1 tokens cost v = {verdict.verify_cost_ratio:.2f} plain steps where the formula "
               f"assumes 1, and timings on a busy machine are noisy (measured {verdict.measured_speedup:.2f}×).")
    return why + cached_comparison(draft_kind)


def summary_markdown(run: spec.SpeculativeRun, stats: spec.AcceptanceStats, speed: spec.SpeedReport,
                     plain: spec.PlainRun, target_label: str, notes: tuple[str, ...],
                     fastest: spec.PlainRun | None = None, device: str = "cpu", draft_kind: str = "") -> str:
    same = ("✓ identical tokens, as greedy decoding must give" if speed.same_tokens else
            "✗ the tokens differ" + (" (sampling: the two runs draw different random numbers; the distribution is "
                                     "the same)" if run.steps and any(t.draw is not None for s in run.steps
                                                                       for t in s.drafted) else ""))
    target_name = speed.target_precision or "target"
    default_name = speed.fastest_plain_precision or target_name
    lines = [
        f"**Target:** {target_label} · **Draft:** {run.draft} · k = {run.k}",
        f"**Speculative** ({target_name} target + draft): {len(run.token_ids)} tokens in {run.seconds:.2f} s = "
        f"**{speed.speculative_tokens_per_second:.1f} tok/s**",
        f"**vs plain decoding of the same {target_name} target** (same prompt, seed and settings; what the draft "
        f"buys): {len(plain.token_ids)} tokens in {plain.seconds:.2f} s = {speed.plain_tokens_per_second:.1f} tok/s → "
        f"**Measured speed-up: {speed.measured_speedup:.2f}×**",
    ]
    if speed.fastest_plain_is_target or fastest is None:
        lines.append(f"**vs the fastest plain decoding the app offers here:** the target's {target_name} is already the "
                     f"app's default precision on {device}, so the line above is that comparison.")
    else:
        lines.append(f"**vs the fastest plain decoding the app offers here** — plain {default_name} decoding (the "
                     f"app's default precision on {device}), same prompt, {len(fastest.token_ids)} tokens, measured in "
                     f"this run: {fastest.seconds:.2f} s = {speed.fastest_plain_tokens_per_second:.1f} tok/s → "
                     f"**{speed.speedup_vs_fastest_plain:.2f}×**")
    if not speed.beats_fastest_plain:
        lines.append(f"**Speculative decoding with this draft does not beat plain {default_name} decoding, the app's "
                     f"default: {speed.speculative_tokens_per_second:.1f} vs "
                     f"{speed.fastest_plain_tokens_per_second:.1f} tok/s.**")
    lines += [
        f"**Predicted by the textbook formula:** α = {speed.alpha:.3f}, k = {speed.k}, c = {speed.cost_ratio:.3f} → "
        f"(1 − α^(k+1)) / ((1 − α)(k·c + 1)) = **{speed.predicted_speedup:.2f}×** vs the same target. It assumes every "
        f"step drafts k tokens and a check of k + 1 tokens costs one plain step.",
        f"**Prediction fitted from this run** (this run's α, c, draft lengths and measured check cost v = "
        f"{speed.verify_cost_ratio:.2f} plain steps, so it shares its inputs with the measurement): "
        f"**{speed.predicted_speedup_measured_costs:.2f}×**",
        *filter(None, [verdict_sentence(spec.speed_verdict(speed), draft_kind)]),
        f"**Acceptance:** {stats.accepted} of {stats.checked} checked drafts accepted · "
        f"{stats.tokens_per_target_forward:.2f} tokens per target forward over {stats.steps} steps · "
        f"speculative vs plain output: {same}",
    ]
    lines += [f"ℹ️ {note}" for note in notes]
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------


def create_speculative_tab(ctx: AppContext) -> dict[str, Any]:
    @user_errors
    def speculate(prompt: str, draft_choice: str, k: float, temperature: float, top_k: float | None, top_p: float,
                  max_new_tokens: float, seed: float | None, skip_layers: str,
                  draft_model: str) -> Iterator[tuple[Any, ...]]:
        k_value = whole_number_in("k", k, 1, spec.MAX_K)
        max_tokens = whole_number_in("max_new_tokens", max_new_tokens, 1, ctx.limits.speculative_new_tokens)
        spec.check_request(k_value, max_tokens)
        settings = sampling_settings(temperature, top_k, top_p, seed)
        yield ("Loading the target and the draft…", *([gr.skip()] * 9))
        target = speculative_target(ctx.models, ctx.model())
        prompt_ids, notes = spec.prepare_prompt(target.tokenizer, prompt)
        draft = build_draft(draft_choice, target, skip_layers,
                            load_draft_model(ctx.models, draft_choice, target, draft_model))
        stops = target.eos_token_ids
        steps: list[spec.SpeculativeStep] = []
        records: list[dict[str, Any]] = []
        for step in spec.speculative_steps(CachedModel(target.model, target.lock), draft, target.tokenizer,
                                           prompt_ids, settings, k_value, max_tokens, stops):
            steps.append(step)
            records.append(asdict(step))
            produced = sum(len(s.emitted) for s in steps)
            yield (f"Speculating… step {len(steps)}, {produced} tokens", tokens_html(records), *([gr.skip()] * 8))
        run = spec.collect_run(steps, target.tokenizer, draft.label, k_value, len(prompt_ids), stops)
        plain_steps = []
        for token in spec.plain_decode_steps(target.model, target.tokenizer, prompt_ids, settings, max_tokens, stops,
                                             target.lock):
            plain_steps.append(token)
            if len(plain_steps) % RACE_UPDATE_EVERY == 1:  # also lets Stop end the race between tokens
                yield (f"Racing plain decoding with the same prompt, seed and settings… {len(plain_steps)} of "
                       f"{len(run.token_ids)} tokens", *([gr.skip()] * 9))
        plain = spec.collect_plain(plain_steps)
        # The fastest plain decoding the app offers for this model here: its default precision (int4 on a CPU),
        # the same prompt and exactly as many tokens as the speculative run made (no stop), timed the same way.
        default = default_precision_model(ctx.models, target)
        fastest = None
        if default is not target:
            fastest_steps = []
            for token in spec.plain_decode_steps(default.model, default.tokenizer, prompt_ids, settings,
                                                 max(len(run.token_ids), 1), (), default.lock):
                fastest_steps.append(token)
                if len(fastest_steps) % RACE_UPDATE_EVERY == 1:
                    yield (f"Racing plain decoding in the app's default precision ({short_precision(default.precision)})"
                           f"… {len(fastest_steps)} of {len(run.token_ids)} tokens", *([gr.skip()] * 9))
            fastest = spec.collect_plain(fastest_steps)
        stats = spec.acceptance_stats(run)
        speed = spec.speed_report(run, plain, stats, fastest, short_precision(default.precision),
                                  short_precision(target.precision))
        data = spec.report_json(run, stats, speed, notes, plain, fastest)
        data["target"] = target.status()
        rows, residual = step_rows(data["steps"][0])
        yield (summary_markdown(run, stats, speed, plain, f"{target.spec.label} ({target.precision.label})", notes,
                                fastest, target.device, draft_choice),
               tokens_html(data["steps"], 0),
               gr.Slider(minimum=1, maximum=max(len(run.steps), 2), value=1, step=1, interactive=True),
               rows, residual, figures.acceptance_by_position_figure(stats), figures.accepted_length_figure(run, stats),
               figures.tokens_per_forward_figure(run), figures.time_split_figure(stats, run, plain), data)

    @user_errors
    def show_step(data: dict[str, Any] | None, position: float) -> tuple[str, list[list[Any]], list[list[Any]]]:
        # `data` is the speculate JSON the client sends back: its size is checked, its shape tried
        if not data or not data.get("steps"):
            return EMPTY_TEXT, [], []
        steps = data["steps"]
        if not isinstance(steps, list):
            raise ValueError(f"The speculate JSON's steps must be a list, got {type(steps).__name__}.")
        most = ctx.limits.speculative_new_tokens  # every step adds at least one token
        if len(steps) > most:
            raise LimitExceededError(f"The speculate JSON has {len(steps):,} steps; a run has at most {most:,}.")
        index = min(max(int(position or 0) - 1, 0), len(steps) - 1)
        try:
            rows, residual = step_rows(steps[index])
            return tokens_html(steps, index), rows, residual
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise ValueError("This is not a speculate result (a field is missing or of the wrong type): run "
                             "speculate again.") from None

    def toggle_options(choice: str) -> tuple[gr.Textbox, gr.Textbox]:
        return gr.Textbox(visible=choice == "layer_skip"), gr.Textbox(visible=choice == "model")

    explanation(EXPLANATION)
    spec_decode_panel(ctx)  # with an engine: its own speculative-decoding counters
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(OPEN_PROMPT, label="Prompt (sent as a chat message)", lines=4, max_lines=12,
                                info=f"Long prompts keep their last {spec.MAX_PROMPT_TOKENS} tokens.")
        with gr.Column(scale=2):
            draft_choice = gr.Radio(DRAFTS, value="int4", label="Draft")
            skip_layers = gr.Textbox(DEFAULT_SKIP, label="Layers to skip (0-based, e.g. '24-29' or '10, 12-14')",
                                     visible=False)
            draft_model = gr.Textbox("HuggingFaceTB/SmolLM2-135M-Instruct", label="Draft model (preset or hub id; "
                                     "needs the same tokenizer as the target, and a network for hub ids)",
                                     visible=False)
    with gr.Row():
        k = gr.Slider(1, spec.MAX_K, value=4, step=1, label="k: draft tokens per step")
        temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature T (0 = greedy)")
        max_new_tokens = gr.Slider(1, ctx.limits.speculative_new_tokens, value=48, step=1, label="Max new tokens",
                                   elem_id="spec-max-tokens")
    with gr.Row():
        top_k = gr.Number(0, label="Top-k (0 = off)", precision=0, minimum=0)
        top_p = gr.Slider(0.01, 1, value=1.0, step=0.01, label="Top-p (1 = off)")
        seed = gr.Number(0, label="Seed (blank = random)", precision=0, minimum=0)
    with gr.Row():
        run_button = gr.Button("Speculate", variant="primary", elem_id="spec-run")
        stop_button = gr.Button("Stop", variant="stop", elem_id="spec-stop")
    summary = gr.Markdown("", elem_id="spec-summary")
    text = gr.HTML(EMPTY_TEXT, elem_id="spec-text")
    step = gr.Slider(1, 2, value=1, step=1, interactive=False, label="Step to inspect (or hover the tokens above)", elem_id="spec-step")
    with gr.Row():
        step_table = gr.Dataframe(headers=STEP_HEADERS, label="This step: each draft token, then the target's token",
                                  interactive=False, wrap=True, scale=3, column_widths=STEP_WIDTHS,
                                  elem_id="spec-step-table")
        residual_table = gr.Dataframe(headers=RESIDUAL_HEADERS, label="After a rejection: the top tokens of the "
                                      "residual normalize(max(0, p − q))", interactive=False, wrap=True, scale=2,
                                      elem_id="spec-residual-table")
    with gr.Row():
        position_plot = gr.Plot(empty_figure(EMPTY_FIGURE), label="Acceptance by draft position")
        length_plot = gr.Plot(empty_figure(EMPTY_FIGURE), label="Accepted length per step")
    with gr.Row():
        forwards_plot = gr.Plot(empty_figure(EMPTY_FIGURE), label="Tokens per target forward")
        time_plot = gr.Plot(empty_figure(EMPTY_FIGURE), label="Time split")
    with gr.Accordion("speculate JSON (every step record, stats, timings)", open=False):
        data = gr.JSON(label="speculate")
    gr.Markdown(WHY_EXACT, latex_delimiters=LATEX_DELIMITERS)

    inputs = [prompt, draft_choice, k, temperature, top_k, top_p, max_new_tokens, seed, skip_layers, draft_model]
    outputs = [summary, text, step, step_table, residual_table, position_plot, length_plot, forwards_plot, time_plot,
               data]
    running = run_button.click(speculate, inputs, outputs, api_name="speculate", concurrency_limit=1)
    stop_button.click(None, None, None, cancels=[running], api_visibility="private")
    step.change(show_step, [data, step], [text, step_table, residual_table], api_visibility="private",
                show_progress="hidden", **skip_the_queue())
    draft_choice.change(toggle_options, draft_choice, [skip_layers, draft_model], api_visibility="private",
                        queue=False)
    return {"prompt": prompt, "draft": draft_choice, "k": k, "temperature": temperature, "top_k": top_k,
            "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed, "skip_layers": skip_layers,
            "draft_model": draft_model, "run": run_button, "stop": stop_button, "summary": summary, "text": text,
            "step": step, "step_table": step_table, "residual_table": residual_table, "position_plot": position_plot,
            "length_plot": length_plot, "forwards_plot": forwards_plot, "time_plot": time_plot, "json": data}

"""Attention tab: a mask explorer (no model needed), the loaded model's real attention weights with the
scores -> mask -> softmax story for one head, and a KV-cache calculator. Handlers are thin adapters
over playground.attention and playground.figures.attention."""

from __future__ import annotations

from typing import Any, Collection

import gradio as gr
import pandas as pd

from playground import attention as att
from playground.figures import attention as figures
from playground.figures.style import empty_figure
from playground.ui.common import LATEX_DELIMITERS, explanation
from playground.ui.context import AppContext
from playground.ui.engine import weights_note
from playground.ui.errors import user_errors
from playground.ui.queueing import after_first_paint, skip_the_queue

EXPLANATION = r"""
### What you are seeing
Every token asks a question (its **query** $q_i$) and every token offers a label (its **key** $k_j$). The
score of the pair is $q_i \cdot k_j / \sqrt{d}$; a **mask** $M$ adds $0$ where token $i$ may look at
token $j$ and $-\infty$ where it may not; a softmax turns each row into weights that sum to 1, and the
token's output is the weighted sum of the **values**:
$$\mathrm{Attention}(Q,K,V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d}} + M\right)V$$
A model has several **heads** per layer, each with its own $Q$, $K$, $V$; with grouped-query attention
(GQA) several query heads share one key/value head, which shrinks the KV cache.

**Takeaway:** the mask decides *who may look at whom* (and how much work that is); the learned weights
decide *who actually looks at whom* — and many heads just look at the first token or the previous one.
"""

DEFAULT_MASK_TEXT = "The cat sat on the mat.\nDogs bark at night."
DEFAULT_PROMPT = "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is"
EMPTY_PROMPT = "Type a prompt above and press “Show attention” to see the model's attention."
PATTERN_PARAMETERS = {"sliding_window": "window", "prefix_lm": "prefix", "chunked": "chunk"}
KV_DTYPES = ["auto (the model's compute dtype)", *att.KV_DTYPE_BYTES]
# What the attention outputs are made of (AttentionHandlers.view_outputs builds only the parts it is asked for).
VIEW_PARTS = ("status", "heatmap", "row", "grid", "story", "numbers", "controls")
PATTERN_COLUMNS = ["first token (sink)", "previous token", "self", "punctuation (after token 0)", "entropy (bits)",
                   "looks like"]


# ---------------------------------------------------------------------------------------------
# Adapters (no math here: it is all in playground.attention)
# ---------------------------------------------------------------------------------------------


def mask_markdown(view: att.MaskView, tokenizer_note: str) -> str:
    lines = [f"**{view.label}** — {view.description}."]
    for sequence in view.sequences:
        check = "✓" if sequence.formula_pairs == sequence.allowed_pairs else "✗ (differs from the mask!)"
        lines.append(f"- {sequence.name}: {len(sequence.tokens)} positions, allowed pairs "
                     f"{sequence.formula} {check}")
    return "\n".join(lines) + "\n\n" + "\n\n".join(note for note in (view.compute_note, view.note, tokenizer_note)
                                                 if note)


def model_controls(shape: att.AttentionShape) -> tuple[dict[str, Any], dict[str, Any]]:
    """The layer slider's and the head dropdown's updates for a model of this shape: only its own layers
    (0..layers-1) and heads are offered, after a model switch as at build time."""
    return gr.update(maximum=shape.num_layers - 1), gr.update(choices=_head_choices(shape))


def _head_choices(shape: att.AttentionShape | None) -> list[tuple[str, str]]:
    heads = shape.num_heads if shape else 0
    return [("mean over heads", "mean")] + [(f"head {h}" + (f" (KV {shape.kv_head_of(h)})" if shape else ""), str(h))
                                            for h in range(heads)]


def gqa_markdown(shape: att.AttentionShape) -> str:
    groups = " · ".join(f"KV head {g} ← query heads {', '.join(map(str, heads))}"
                        for g, heads in enumerate(shape.kv_groups()))
    kind = ("multi-head (every query head has its own K and V)" if shape.num_kv_heads == shape.num_heads
            else f"grouped-query: {shape.num_heads} query heads share {shape.num_kv_heads} KV heads")
    return f"**Heads:** {kind}. {groups}."


def status_markdown(run: att.AttentionRun, view: att.AttentionView, story: att.ScoreStory, story_note: str) -> str:
    lines = [f"**{run.length} tokens** analysed · layer {view.layer} · {att.head_name(view.head)}.",
             f"Checks on these numbers: every row sums to 1 within {view.max_row_sum_error:.1e}; the largest weight "
             f"on a future key is {view.max_above_diagonal:.1e}; softmax(masked QKᵀ/√d) rebuilt from the model's own "
             f"Q and K matches its weights within {story.max_abs_diff_vs_model:.1e}.",
             gqa_markdown(run.shape)]
    if run.note:
        lines.insert(0, f"⚠ {run.note}")
    if story_note:
        lines.append(story_note)
    return "\n\n".join(lines)


def patterns_table(grid: att.AttentionGrid) -> pd.DataFrame:
    rows = []
    for pattern in grid.patterns:
        name = f"head {pattern.head} (KV {pattern.kv_head})" if grid.mode == "heads" else f"layer {pattern.layer}"
        kind, _ = pattern.dominant
        rows.append([name, round(pattern.first_token, 3), round(pattern.previous_token, 3),
                     round(pattern.same_token, 3), round(pattern.punctuation, 3), round(pattern.entropy_bits, 2), kind])
    return pd.DataFrame(rows, columns=["head" if grid.mode == "heads" else "layer", *PATTERN_COLUMNS])


def token_chips(row: att.AttentionRow, tokens: tuple[str, ...]) -> list[tuple[str, float]]:
    """Every token of the prompt as a clickable chip, shaded by the selected query's weight on it relative to
    its largest (later tokens, which it cannot see, get 0)."""
    top = max(row.weights) or 1.0
    return [(token, round(row.weights[i] / top, 4) if i <= row.position else 0.0) for i, token in enumerate(tokens)]


def kv_markdown(estimate: att.KVCacheEstimate, context_limit: int) -> str:
    parts = []
    for variant in estimate.variants:
        text = f"{variant.name} ({variant.kv_heads} KV head{'s' if variant.kv_heads > 1 else ''}) " \
               f"{estimate.megabytes(variant.kv_heads):,.1f} MB"
        parts.append(f"**{text} ← this model**" if variant.is_this_model else text)
    mine = next(v for v in estimate.variants if v.is_this_model)
    per_token = estimate.cache_bytes(mine.kv_heads, 1)
    lines = [f"At **{estimate.context_length:,} tokens** × batch {estimate.batch_size} in {estimate.dtype}: "
             + " · ".join(parts) + ".",
             f"This model stores {per_token:,} bytes per token of context; multi-head attention would need "
             f"{estimate.shape.num_heads / mine.kv_heads:.1f}× as much."]
    if context_limit and estimate.context_length > context_limit:
        lines.append(f"⚠ This model was trained for up to {context_limit:,} tokens; beyond that its answers degrade.")
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------


def empty_attention() -> tuple[Any, ...]:
    """The attention outputs before a prompt: the message, blank plots, components left as they are."""
    blank = empty_figure(EMPTY_PROMPT)
    return (EMPTY_PROMPT, blank, [], gr.update(), blank, blank, None, blank,
            {"empty": True, "message": EMPTY_PROMPT}, gr.update(), gr.update())


class AttentionHandlers:
    """The tab's event handlers as plain methods (the tab wires them; tests call them): one per context, holding
    the last forward passes, so moving the layer, head or query slider does not run the model again."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.runs = att.RunCache(size=2)

    # -- mask explorer ---------------------------------------------------------------------------

    def mask_tokenizer(self) -> tuple[Any, str]:
        """The loaded model's tokenizer when there is one (never waits for a load), else a word splitter."""
        loaded = self.ctx.models.active()
        if loaded is None:
            return att.word_pieces, "No model is loaded yet, so the text is split into words and punctuation."
        tokenizer = loaded.tokenizer
        return (lambda text: att.token_labels(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"]),
                f"Tokens from {loaded.spec.label}'s tokenizer.")

    @user_errors
    def show_mask(self, text: str, key: str, w: float, p: float, c: float) -> tuple[str, Any, dict[str, Any]]:
        tokenize, tokenizer_note = self.mask_tokenizer()
        if not text.strip():
            return "Type some text to see the mask over its tokens.", empty_figure(
                "Type some text above to see its mask."), {"empty": True}
        view = att.explore_mask(text, key, tokenize=tokenize, window=int(w), prefix_length=int(p), chunk_size=int(c))
        return mask_markdown(view, tokenizer_note), figures.mask_figure(view), view.as_json()

    def show_parameters(self, key: str) -> tuple[dict[str, Any], ...]:
        needed = PATTERN_PARAMETERS.get(key)
        return tuple(gr.update(visible=needed == name) for name in ("window", "prefix", "chunk"))

    # -- real weights ----------------------------------------------------------------------------

    def attention_run(self, text: str, chat: bool) -> att.AttentionRun:
        loaded = self.ctx.model()
        run = self.runs.get(loaded.model, text, chat)
        if run is None:
            with loaded.eager_attention() as model:
                run = att.run_attention(model, loaded.tokenizer, text, chat=chat)
            self.runs.put(text, chat, run)
        return run

    @user_errors
    def show_attention(self, text: str, layer_value: float, head_value: str | float, mode: str,
                       chat_value: bool) -> tuple[Any, ...]:
        """Every view of the prompt's forward (run once, then cached), and the layer/head ranges of its model."""
        return self.view_outputs(text, layer_value, head_value, mode, chat_value, VIEW_PARTS)

    # A layer or head move is two events: the heatmap and the status first (drawn before anything else arrives),
    # then the rest that depends on the moved control. Each sends only what changed; the rest is gr.skip().

    @user_errors
    def move_layer_or_head(self, text: str, layer_value: float, head_value: str | float, mode: str,
                           chat_value: bool) -> tuple[Any, ...]:
        # the query slider's reset and its row come with the heatmap: sent by the queued follow-up, they would
        # overwrite a query position picked in the meantime
        return self.view_outputs(text, layer_value, head_value, mode, chat_value, ("status", "heatmap", "row"))

    @user_errors
    def after_layer_move(self, text: str, layer_value: float, head_value: str | float, mode: str,
                         chat_value: bool) -> tuple[Any, ...]:
        """The grid shows all heads of the layer ("heads"), or this head across layers ("layers": unchanged)."""
        parts = ("story", "numbers") + (("grid",) if mode == "heads" else ())
        return self.view_outputs(text, layer_value, head_value, mode, chat_value, parts)

    @user_errors
    def after_head_move(self, text: str, layer_value: float, head_value: str | float, mode: str,
                        chat_value: bool) -> tuple[Any, ...]:
        parts = ("story", "numbers") + (("grid",) if mode == "layers" else ())
        return self.view_outputs(text, layer_value, head_value, mode, chat_value, parts)

    @user_errors
    def change_grid_mode(self, text: str, layer_value: float, head_value: str | float, mode: str,
                         chat_value: bool) -> tuple[Any, ...]:
        return self.view_outputs(text, layer_value, head_value, mode, chat_value, ("grid", "numbers"))

    def view_outputs(self, text: str, layer_value: float, head_value: str | float, mode: str, chat_value: bool,
                     parts: Collection[str]) -> tuple[Any, ...]:
        """The attention outputs (status, heatmap, chips, query, row, grid, patterns, story, JSON, layer, head),
        built and sent only for `parts` (VIEW_PARTS); the others are left as they are (gr.skip())."""
        if not text.strip():
            return empty_attention()
        run = self.attention_run(text, chat_value)
        layer_index, head_index = att.parse_layer(layer_value, run.shape), att.parse_head(head_value, run.shape)
        view = att.attention_view(run, layer_index, head_index)
        grid = att.attention_grid(run, layer_index, head_index, mode)
        story_head = 0 if head_index is None else head_index
        with self.ctx.model().lock:  # Q and K are recomputed with the shared model's projections
            story = att.score_story(run, layer_index, story_head)
        story_note = "The story below needs a single head: it shows head 0." if head_index is None else ""
        row = att.query_row(view, run.length - 1)
        skip = gr.skip()
        status = status_markdown(run, view, story, story_note) if "status" in parts else skip
        heatmap = figures.attention_heatmap(view) if "heatmap" in parts else skip
        last = run.length - 1
        chips, query, row_plot = ((token_chips(row, run.tokens), gr.update(maximum=last, value=last),
                                   figures.query_row_figure(row, view)) if "row" in parts else (skip,) * 3)
        grid_plot, patterns = ((figures.attention_grid_figure(grid), patterns_table(grid)) if "grid" in parts
                               else (skip,) * 2)
        story_plot = figures.score_story_figure(story) if "story" in parts else skip
        numbers = att.attention_json(run, view, grid, story) if "numbers" in parts else skip
        controls = model_controls(run.shape) if "controls" in parts else (skip,) * 2
        return (status, heatmap, chips, query, row_plot, grid_plot, patterns, story_plot, numbers, *controls)

    @user_errors
    def show_row(self, text: str, layer_value: float, head_value: str | float, chat_value: bool,
                 position: float) -> tuple[Any, ...]:
        if not text.strip():
            return [], empty_figure(EMPTY_PROMPT)
        run = self.attention_run(text, chat_value)
        view = att.attention_view(run, att.parse_layer(layer_value, run.shape), att.parse_head(head_value, run.shape))
        row = att.query_row(view, min(int(position), run.length - 1))
        return token_chips(row, run.tokens), figures.query_row_figure(row, view)

    def pick_token(self, evt: gr.SelectData) -> int:
        return int(evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index)

    # -- KV cache ----------------------------------------------------------------------------------

    @user_errors
    def show_kv_cache(self, length: float, dtype: str, batch_size: float) -> tuple[str, Any, dict[str, Any]]:
        loaded_model = self.ctx.model()
        if dtype not in att.KV_DTYPE_BYTES:  # "auto": what this model computes in
            dtype = str(loaded_model.precision.dtype).replace("torch.", "")
        kv_shape = att.AttentionShape.from_config(loaded_model.model.config)
        estimate = att.kv_cache_estimate(kv_shape, int(length), dtype, int(batch_size or 1),
                                         max_context=max(loaded_model.context_length, int(length)))
        return (kv_markdown(estimate, loaded_model.context_length), figures.kv_cache_figure(estimate,
                loaded_model.spec.label), estimate.as_json())

    # -- page load -------------------------------------------------------------------------------

    def on_page_load(self, *values: Any) -> tuple[Any, ...]:
        """The mask at once; the KV cache and the layer/head ranges of this visitor's model when one is already
        there (never waits for a load). `values`: the mask explorer's five inputs, then the KV calculator's three."""
        mask_outputs = self.show_mask(*values[:5])
        loaded = self.ctx.models.active()
        if loaded is None:
            return (*mask_outputs, "The KV-cache numbers appear once the model has loaded: press Compute.",
                    empty_figure("Press Compute once the model has loaded."), None, gr.skip(), gr.skip())
        shape = att.AttentionShape.from_config(self.ctx.model().model.config)
        return (*mask_outputs, *self.show_kv_cache(*values[5:]), *model_controls(shape))


def create_attention_tab(ctx: AppContext) -> dict[str, Any]:
    handlers = AttentionHandlers(ctx)
    explanation(EXPLANATION)
    gr.Markdown(weights_note(ctx), visible=ctx.engine is not None)  # an engine cannot share weights
    loaded = ctx.models.active()
    shape = att.AttentionShape.from_config(loaded.model.config) if loaded else None

    gr.Markdown("## 1. Mask explorer\nPick a pattern; the mask is drawn over the tokens of your text. "
                "Lines are documents (document mask) or the two prompts of a batch (padding).")
    with gr.Row():
        mask_text = gr.Textbox(DEFAULT_MASK_TEXT, lines=3, label="Text", scale=3)
        with gr.Column(scale=2):
            pattern = gr.Dropdown([(label, key) for key, (label, _) in att.MASK_PATTERNS.items()], value="causal",
                                  label="Mask pattern")
            window = gr.Slider(1, 64, value=3, step=1, label="Window W (tokens each query sees)", visible=False)
            prefix = gr.Slider(1, 64, value=4, step=1, label="Prefix length P (bidirectional part)", visible=False)
            chunk = gr.Slider(1, 64, value=4, step=1, label="Chunk size C", visible=False)
            mask_button = gr.Button("Show mask", variant="primary")
    mask_note = gr.Markdown(elem_id="attention-mask-note")
    mask_plot = gr.Plot(label="mask", elem_id="attention-mask-plot")
    with gr.Accordion("Mask as JSON", open=False):
        mask_json = gr.JSON(label="attention_mask")

    gr.Markdown("## 2. The model's real attention weights\nOne forward pass of the loaded model on your prompt "
                "(eager attention, so the weights are returned); change layer or head without running it again.")
    with gr.Row():
        prompt = gr.Textbox(DEFAULT_PROMPT, lines=2, label="Prompt", scale=4)
        with gr.Column(scale=2):
            chat = gr.Checkbox(False, label="Wrap it as a chat message (chat template)")
            run_button = gr.Button("Show attention", variant="primary")
    with gr.Row():
        layer = gr.Slider(0, (shape.num_layers - 1) if shape else 63, value=2, step=1, label="Layer")
        head = gr.Dropdown(_head_choices(shape), value="mean", label="Head", allow_custom_value=True)
        grid_mode = gr.Radio([(label, key) for key, label in att.GRID_MODES.items()], value="heads",
                             label="Small multiples")
    status = gr.Markdown(elem_id="attention-status")
    with gr.Row():
        with gr.Column(scale=3):
            heatmap = gr.Plot(label="attention weights", elem_id="attention-heatmap")
        with gr.Column(scale=2):
            gr.Markdown("**What one token attends to** — click a token (or move the slider); the shading is its "
                        "weight on each earlier token, relative to the largest.")
            chips = gr.HighlightedText(label="click a token to make it the query", elem_id="attention-chips",
                                       show_legend=False, combine_adjacent=False)
            query = gr.Slider(0, 255, value=0, step=1, label="Query token position")
            row_plot = gr.Plot(label="what the query attends to", elem_id="attention-row")
    grid_plot = gr.Plot(label="small multiples", elem_id="attention-grid")
    patterns = gr.Dataframe(label="head patterns (means over queries 1..n-1)", interactive=False)
    gr.Markdown("### Scores → mask → softmax, for one head\nQ and K are recomputed from the layer's input "
                "with the model's own projections and rotary embedding; masked scores become −∞ (blank), and "
                "the softmax of each row gives the weights shown above.")
    story_plot = gr.Plot(label="scores, mask, softmax", elem_id="attention-story")
    with gr.Accordion("Attention as JSON", open=False):
        attention_json = gr.JSON(label="attention")

    gr.Markdown("## 3. KV-cache calculator\nDuring generation every layer keeps the keys and values of all earlier "
                "tokens: $2 \\times \\text{layers} \\times \\text{KV heads} \\times d_\\text{head} \\times "
                "\\text{context} \\times \\text{bytes}$.", latex_delimiters=LATEX_DELIMITERS)
    with gr.Row():
        context = gr.Slider(256, 131072, value=8192, step=256, label="Context length (tokens)", scale=3)
        kv_dtype = gr.Dropdown(KV_DTYPES, value=KV_DTYPES[0], label="Cache dtype", scale=1)
        batch = gr.Number(1, precision=0, minimum=1, maximum=1024, label="Batch size", scale=1)
        kv_button = gr.Button("Compute", variant="primary", scale=1)
    kv_note = gr.Markdown(elem_id="attention-kv-note")
    kv_plot = gr.Plot(label="KV cache", elem_id="attention-kv-plot")
    with gr.Accordion("KV cache as JSON", open=False):
        kv_json = gr.JSON(label="kv_cache")

    mask_inputs = [mask_text, pattern, window, prefix, chunk]
    pattern.change(handlers.show_parameters, pattern, [window, prefix, chunk], queue=False, api_visibility="private")
    gr.on([mask_button.click, pattern.change, window.input, prefix.input, chunk.input, mask_text.change],
          handlers.show_mask, mask_inputs, [mask_note, mask_plot, mask_json], api_name="attention_mask",
          trigger_mode="always_last", show_progress="hidden")

    attention_inputs = [prompt, layer, head, grid_mode, chat]
    attention_outputs = [status, heatmap, chips, query, row_plot, grid_plot, patterns, story_plot, attention_json,
                         layer, head]
    # `input` is the user's own change: mouse drags, arrow keys and typed numbers on a slider (`release` misses the
    # last two), a dropdown pick; always_last drops the steps of a drag that a newer one overtook.
    gr.on([run_button.click, prompt.submit, chat.input], handlers.show_attention, attention_inputs, attention_outputs,
          api_name="attention", trigger_mode="always_last")
    # Moving layer or head re-slices the cached forward: the heatmap first, then what else depends on the control.
    view_move = {"api_visibility": "private", "show_progress": "hidden"}
    # the heatmap's event skips the queue (queueing.skip_the_queue: it re-reads the cached forward)
    after_first_paint(layer.input(handlers.move_layer_or_head, attention_inputs, attention_outputs,
                                  trigger_mode="always_last", **view_move, **skip_the_queue())).then(
        handlers.after_layer_move, attention_inputs, attention_outputs, **view_move)
    after_first_paint(head.input(handlers.move_layer_or_head, attention_inputs, attention_outputs,
                                 trigger_mode="always_last", **view_move, **skip_the_queue())).then(
        handlers.after_head_move, attention_inputs, attention_outputs, **view_move)
    grid_mode.input(handlers.change_grid_mode, attention_inputs, attention_outputs, trigger_mode="always_last",
                    **view_move)
    row_inputs = [prompt, layer, head, chat, query]
    # One bound method for both events: gradio groups concurrency by id(fn), and `handlers.show_row` makes a new
    # object at each access, so this keeps the two events in one concurrency group.
    show_row = handlers.show_row
    query.input(show_row, row_inputs, [chips, row_plot], api_visibility="private", trigger_mode="always_last",
                show_progress="hidden", **skip_the_queue())
    chips.select(handlers.pick_token, None, query, queue=False, api_visibility="private").then(
        show_row, row_inputs, [chips, row_plot], api_visibility="private")

    kv_inputs = [context, kv_dtype, batch]
    gr.on([kv_button.click, context.input, kv_dtype.input, batch.input], handlers.show_kv_cache, kv_inputs,
          [kv_note, kv_plot, kv_json], api_name="kv_cache", trigger_mode="always_last", show_progress="hidden")

    # From the components' initial values, with no inputs: gr.on(None, ...) with inputs would also fire on
    # every change of them, computing the mask and the KV cache twice per slider move. So this lambda stays
    # here, where the starting values are known.
    initial = [component.value for component in mask_inputs + kv_inputs]
    gr.on(None, lambda: handlers.on_page_load(*initial), None,
          [mask_note, mask_plot, mask_json, kv_note, kv_plot, kv_json, layer, head], queue=False,
          api_visibility="private", show_progress="hidden")  # out of sight as the page opens (as LoRA's fills)

    return {"mask_text": mask_text, "pattern": pattern, "window": window, "prefix": prefix, "chunk": chunk,
            "mask_button": mask_button, "mask_note": mask_note, "mask_plot": mask_plot, "mask_json": mask_json,
            "prompt": prompt, "chat": chat, "run_button": run_button, "layer": layer, "head": head,
            "grid_mode": grid_mode, "status": status, "heatmap": heatmap, "chips": chips, "query": query,
            "row_plot": row_plot, "grid_plot": grid_plot, "patterns": patterns, "story_plot": story_plot,
            "attention_json": attention_json, "context": context, "kv_dtype": kv_dtype, "batch": batch,
            "kv_button": kv_button, "kv_note": kv_note, "kv_plot": kv_plot, "kv_json": kv_json}

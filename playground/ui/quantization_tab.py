"""Model & quantization tab: the loaded model's anatomy, precisions side by side, one weight matrix
before/after quantization, and a memory calculator."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from playground import quantization as q
from playground.config import PRECISION_CHOICES
from playground.figures import quantization as figures
from playground.generation import encode_prompt
from playground.runtime import precision_options, resolve_device, resolve_precision
from playground.limits import whole_number_in
from playground.ui.context import AppContext
from playground.ui.engine import weights_note
from playground.ui.common import explanation
from playground.ui.errors import user_errors

# The lab table's columns (the raw JSON keeps the keys), headed in words.
LAB_COLUMNS = {"precision": "precision", "detail": "detail", "memory_mb": "memory (MB)", "load_seconds": "load (s)",
               "decode_tokens_per_second": "decode (tokens/s)", "time_to_first_token_s": "first token (s)",
               "kl_mean": "KL to reference (nats)", "top1_agreement": "top-1 agreement", "perplexity": "perplexity"}

EXPLANATION = r"""
### What you are seeing
A model is a stack of identical **decoder blocks**; almost all of its parameters are in the matrices of the
attention and MLP layers, plus one big embedding table. **Quantization** stores those matrices in fewer bits:
int8 keeps one scale per matrix, $w \approx s\,q$ with $q \in \{-128..127\}$ and $s = \max|w| / 127.5$;
NF4 keeps one scale per block of 64 weights and only 16 levels, placed at quantiles of a normal
distribution: $w \approx \text{absmax}_{\text{block}} \cdot \text{level}[q]$, $q \in \{0..15\}$.
int4 (CPU) keeps a scale and a minimum per group of 32: $w \approx s\,q + \min_{\text{group}}$, $q \in \{0..15\}$.
Quality is measured, not assumed: $\mathrm{KL}(P_\text{ref} \,\|\, P_\text{quant})$ of the next-token
distributions at every position of a fixed text, how often both pick the same top token, and perplexity
$\exp(-\tfrac{1}{n}\sum \log p(x_{i+1} \mid x_{\le i}))$.

**Takeaway:** fewer bits buy memory and (on the right hardware) speed; the KL and top-1 columns tell you what
they cost.
"""

def default_lab_precisions(device: str) -> list[str]:
    """Exact weights, the device's default (auto) and int8: the reference, what users run, and a cautionary tale."""
    return list(dict.fromkeys(["none", resolve_precision("auto", device).quantization, "int8"]))


def precision_choices(device: str, model: str = "") -> list[tuple[str, str]]:
    """(label, value) for every precision, with why it is slow or unavailable on this device."""
    choices = []
    for value, precision, refusal in precision_options(device, model):
        if precision is None:
            choices.append((f"{value} — unavailable: {refusal}", value))
            continue
        label = f"{value} — {precision.label}"
        if precision.warning:
            label += f" (⚠ {precision.warning})"
        choices.append((label, value))
    return choices


def _card_markdown(a: q.ArchitectureSummary, breakdown_total: int, counted: int) -> str:
    check = ("✓ equals" if breakdown_total == counted else "✗ differs from") + f" the {counted:,} parameters counted in the weights"
    rows = [
        ("architecture", a.model_type), ("layers", a.layers), ("hidden size", a.hidden_size),
        ("MLP size", a.intermediate_size), ("query heads / KV heads", f"{a.attention_heads} / {a.kv_heads}"),
        ("head dim", a.head_dim), ("vocabulary", f"{a.vocab_size:,}"), ("context length", f"{a.context_length:,}"),
        ("tied embeddings", "yes" if a.tied_embeddings else "no"), ("norm / activation", f"{a.norm} / {a.activation}"),
        ("parameters (from config)", f"{breakdown_total:,} — {check}"),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)


def create_quantization_tab(ctx: AppContext) -> dict[str, Any]:
    explanation(EXPLANATION)
    gr.Markdown(weights_note(ctx), visible=ctx.engine is not None)  # an engine cannot share weights
    device = resolve_device("auto") if ctx.settings.device == "auto" else ctx.settings.device

    with gr.Accordion("The loaded model", open=True):
        describe = gr.Button("Describe the loaded model", variant="primary")
        with gr.Row():
            card = gr.Markdown()
            breakdown_plot = gr.Plot(label="parameters by component", elem_id="quantization-breakdown")
        block_plot = gr.Plot(label="one decoder block")
        with gr.Accordion("Model card as JSON (raw numbers)", open=False):
            card_json = gr.JSON(label="model_card (raw numbers)")

    with gr.Accordion("Quantization lab: the same model in several precisions", open=True):
        gr.Markdown("Each precision is loaded once (cached), scored on a fixed paragraph shipped with the app "
                    "(`assets/model/eval_text.txt`) and timed on a short greedy decode. The first precision "
                    "checked is the reference for KL and top-1 agreement; its row says what it really is. For the "
                    "embedded SmolLM2-135M, fp32 is the GGUF's Q4_1 weights dequantized (the published bf16 "
                    "weights are not shipped), so int4, which re-encodes weights that were already 4-bit, looks "
                    "better against it (KL 0.0003) than it would against the published weights.")
        with gr.Row():
            precisions = gr.CheckboxGroup(precision_choices(device, ctx.settings.model), value=default_lab_precisions(device),
                                          label="precisions to compare", scale=4)
            most_tokens = ctx.limits.quantization_decode_tokens  # a public server allows fewer
            new_tokens = gr.Slider(4, most_tokens, value=min(24, most_tokens), step=1, label="tokens to decode for speed",
                                   scale=1)
        compare = gr.Button("Compare precisions", variant="primary")
        lab_table = gr.Dataframe(label="precisions side by side", interactive=False, wrap=True)
        lab_plot = gr.Plot(label="precisions side by side")
        with gr.Accordion("Precisions as JSON (raw numbers)", open=False):
            lab_json = gr.JSON(label="quantization_report (raw numbers)")

    with gr.Accordion("One weight matrix before and after quantization", open=False):
        with gr.Row():
            layer = gr.Number(value=0, precision=0, label="layer index", minimum=0)
            matrix = gr.Dropdown(["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"], value="self_attn.q_proj",
                                 label="matrix")
            show_weights = gr.Button("Show the weights")
        weight_plot = gr.Plot(label="weight histogram")
        with gr.Accordion("Weights as JSON (raw numbers)", open=False):
            weight_json = gr.JSON(label="weight_quantization (raw numbers)")

    with gr.Accordion("Memory calculator: does it fit?", open=False):
        with gr.Row():
            context = gr.Slider(256, 131072, value=8192, step=256, label="context length (tokens)")
            batch = gr.Slider(1, 64, value=1, step=1, label="batch (concurrent sequences)")
            budget = gr.Number(value=24, label="GPU memory (GB)", minimum=1)
            calculate = gr.Button("Calculate")
        memory_plot = gr.Plot(label="memory needed")
        with gr.Accordion("Memory estimate as JSON (raw numbers)", open=False):
            memory_json = gr.JSON(label="memory_estimate (raw numbers)")

    @user_errors
    def model_card() -> tuple[str, Any, Any, dict[str, Any]]:
        loaded = ctx.model()
        summary = q.architecture_summary(loaded.model.config)
        rows = q.parameter_breakdown(loaded.model.config)
        total = sum(row.parameters for row in rows)
        raw = {"architecture": summary.__dict__, "breakdown": [row.__dict__ for row in rows],
               "parameters_from_config": total, "parameters_counted": loaded.parameters, "status": loaded.status()}
        return (_card_markdown(summary, total, loaded.parameters), figures.parameter_breakdown_figure(rows),
                figures.decoder_block_figure(summary), raw)

    @user_errors
    def quantization_report(chosen: list[str], tokens: float, progress: gr.Progress = gr.Progress()) -> tuple[Any, Any, dict[str, Any]]:
        if not chosen:
            raise ValueError("Pick at least one precision to compare.")
        tokens = whole_number_in("tokens to decode", tokens, 1, ctx.limits.quantization_decode_tokens)
        active = ctx.model()
        name = active.spec.key
        order = [value for value in PRECISION_CHOICES[1:] if value in chosen]  # highest precision first
        entries = []
        eval_ids = None
        for index, value in enumerate(order):
            progress(index / len(order), desc=f"Loading and measuring {value}")
            loaded = ctx.models.load(name, value, active.device, activate=False)
            tokenizer = loaded.tokenizer
            if eval_ids is None:
                eval_ids = q.eval_text_ids(tokenizer)
            prompt_ids = encode_prompt(tokenizer, "Explain in two sentences why the sky is blue.")
            run = q.run_precision(loaded.model, tokenizer, eval_ids, prompt_ids, tokens, loaded.lock)
            entries.append((value, loaded.status(), run))
        reference = q.reference_description(active.spec, order[0], entries[0][1]["precision"].split(" ")[0])
        rows = q.precision_rows(entries, eval_ids, reference)
        frame = pd.DataFrame(rows)[list(LAB_COLUMNS)].round(4)
        frame.loc[0, "precision"] = f"{order[0]} = reference: {reference}"
        frame = frame.rename(columns=LAB_COLUMNS)
        return frame, figures.precision_comparison_figure(rows), {"model": name, "device": active.device,
                                                                  "eval_tokens": int(eval_ids.numel()),
                                                                  "reference": reference, "rows": rows}

    @user_errors
    def weight_view(layer_index: float, matrix_name: str) -> tuple[Any, dict[str, Any]]:
        active = ctx.model()
        name = active.spec.key
        layers = int(active.model.config.num_hidden_layers)
        index = whole_number_in("layer index", layer_index, 0, layers - 1)
        full = ctx.models.load(name, "none", active.device, activate=False)  # the unquantized weights
        module = full.model.get_submodule(f"model.layers.{index}.{matrix_name}")
        view = q.weight_quantization_view(f"layer {index} {matrix_name}", module.weight)
        raw = {"matrix": view.name, "shape": list(view.shape), "int8_scale": view.int8_scale,
               "int8_mean_abs_error": view.int8_mean_abs_error, "nf4_mean_abs_error": view.nf4_mean_abs_error,
               "nf4_levels": view.nf4_levels.tolist() if view.nf4_levels is not None else None,
               "nf4_blocksize": view.nf4_blocksize}
        return figures.weight_histogram_figure(view), raw

    @user_errors
    def memory_calculator(context_tokens: float, batch_size: float, gpu_gb: float) -> tuple[Any, dict[str, Any]]:
        if gpu_gb is None or gpu_gb <= 0:
            raise ValueError("GPU memory must be a positive number of GB.")
        context_tokens = whole_number_in("context length", context_tokens, 1, ctx.limits.memory_context_tokens)
        batch_size = whole_number_in("batch", batch_size, 1, ctx.limits.memory_batch)
        extra = None
        active = ctx.models.active()
        if active is not None:
            a = q.architecture_summary(active.model.config)
            extra = (f"loaded ({active.parameters / 1e6:.0f}M)", float(active.parameters), a.layers, a.kv_heads, a.head_dim)
        table = q.memory_fit_table(int(context_tokens), float(gpu_gb), int(batch_size), extra)
        return figures.memory_fit_figure(table, float(gpu_gb)), {"context": int(context_tokens),
                                                                 "batch": int(batch_size), "gpu_gb": gpu_gb, "rows": table}

    describe.click(model_card, None, [card, breakdown_plot, block_plot, card_json], api_name="model_card")
    compare.click(quantization_report, [precisions, new_tokens], [lab_table, lab_plot, lab_json],
                  api_name="quantization_report", concurrency_limit=1)
    show_weights.click(weight_view, [layer, matrix], [weight_plot, weight_json], api_name="weight_quantization")
    calculate.click(memory_calculator, [context, batch, budget], [memory_plot, memory_json], api_name="memory_estimate")
    return {"describe": describe, "card": card, "compare": compare, "precisions": precisions, "lab_table": lab_table,
            "lab_plot": lab_plot, "lab_json": lab_json, "weight_plot": weight_plot, "memory_plot": memory_plot}

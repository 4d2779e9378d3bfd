"""The list of tabs, in the order they appear. A tab whose issue is not done says so plainly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from playground.ui.attention_tab import create_attention_tab
from playground.ui.calibration_tab import create_calibration_tab
from playground.ui.context import AppContext
from playground.ui.inside_tab import create_inside_tab
from playground.ui.lora_tab import create_lora_tab
from playground.ui.quantization_tab import create_quantization_tab
from playground.ui.rag_tab import create_rag_tab
from playground.ui.sampling_tab import create_sampling_tab
from playground.ui.serving_tab import create_serving_tab
from playground.ui.speculative_tab import create_speculative_tab
from playground.ui.tokenization_tab import create_tokenization_tab

TabBuilder = Callable[[AppContext], dict[str, Any]]


@dataclass(frozen=True)
class TabInfo:
    key: str  # used in elem_id ("tab-<key>") and deep links
    label: str
    summary: str  # one line: what the tab shows
    issue: int  # the tracker issue that builds it
    build: TabBuilder | None = None  # None: not built yet
    link_inputs: tuple[str, ...] = ()  # component names a URL may fill (?tab=<key>&<name>=<value>)
    run: str | None = None  # the button a deep link presses after filling the inputs (None: none)
    advanced: tuple[str, ...] = ()  # components presenter mode folds away
    opens_live: bool = False  # True: the tab computes its view on page load (else it opens on a cached example)


def pending_tab(info: TabInfo) -> dict[str, Any]:
    """An honest placeholder: what the tab will show, and that it is not built yet. No fake content."""
    note = gr.Markdown(
        f"### {info.label}\n{info.summary}\n\n"
        f"**Not built yet** — this tab is tracked in issue #{info.issue}. The rest of the app works.",
        elem_classes=["pg-pending"],
    )
    return {"pending": note}


def all_tabs() -> list[TabInfo]:
    return [
        TabInfo("tokenization", "Tokenization", "How text becomes tokens: token chips, several tokenizers side by "
                "side, the chat template's special tokens and a BPE merge replay.", 3, create_tokenization_tab,
                link_inputs=("text", "names", "add_special"), run="run", advanced=("extra", "add_special"),
                opens_live=True),
        TabInfo("attention", "Attention", "Attention masks you can play with, and the loaded model's real "
                "attention weights per layer and head.", 4, create_attention_tab,
                link_inputs=("prompt", "chat", "layer", "head", "grid_mode", "mask_text", "pattern", "window",
                             "prefix", "chunk"), run="run_button", advanced=("chat",)),
        TabInfo("sampling", "Sampling", "Temperature, top-k, top-p and min-p applied stage by stage to the model's "
                "real next-token distribution.", 5, create_sampling_tab,
                link_inputs=("prompt", "chat", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                             "seed", "top_n", "max_new_tokens"), run="show",
                advanced=("chat", "repetition_penalty", "seed", "top_n")),
        TabInfo("speculative", "Speculative decoding", "A draft proposes, the target verifies: accepted, rejected "
                "and resampled tokens, and the real speed-up.", 6, create_speculative_tab,
                link_inputs=("prompt", "draft", "k", "temperature", "top_k", "top_p", "max_new_tokens", "seed",
                             "skip_layers"), run="run", advanced=("top_k", "top_p", "seed")),
        TabInfo("rag", "RAG", "Chunk, embed, retrieve, rerank and answer, with every score visible.", 7,
                create_rag_tab, link_inputs=("question", "method", "k", "rerank_top", "unit", "size", "overlap",
                                             "strict", "position", "max_new_tokens"), run="search",
                advanced=("rerank_top", "map_method", "files", "pasted")),
        TabInfo("lora", "LoRA fine-tuning", "Fine-tune the loaded model live and compare before and after.", 8,
                create_lora_tab, link_inputs=("dataset", "rank", "alpha", "learning_rate", "steps", "prompts",
                                              "max_new_tokens"), run="train",
                advanced=("dropout", "warmup", "batch_size", "grad_accumulation", "max_length", "seed",
                          "eval_every")),
        TabInfo("calibration", "Calibration", "Is the model as sure as it sounds? Reliability diagrams, ECE and "
                "temperature scaling.", 9, create_calibration_tab,
                link_inputs=("source", "mode", "n_bins", "binning"), run="run"),
        TabInfo("quantization", "Model & quantization", "The model's architecture, parameter counts, and precisions "
                "compared on memory, speed and quality.", 10, create_quantization_tab, link_inputs=("precisions",),
                run="describe"),
        TabInfo("inside", "Inside the model", "The logit lens layer by layer, switching heads and layers off, and "
                "which input tokens make the model pick its token.", 19, create_inside_tab,
                link_inputs=("prompt", "colour", "temperature", "top_k", "top_p", "min_p", "heads", "mode",
                             "new_tokens", "target", "contrast", "steps"), run="lens_button",
                advanced=("temperature", "top_k", "top_p", "min_p", "new_tokens", "steps")),
        TabInfo("serving", "Serving", "One model, many users: batching measured live, the KV cache against its "
                "formula, static vs continuous batching and a paged KV cache.", 21, create_serving_tab,
                link_inputs=("prompt", "batch_sizes", "decode_steps", "requests", "slots", "block_size", "reserve"),
                run="run", advanced=("prompt", "decode_steps", "reserve")),
    ]

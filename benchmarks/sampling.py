"""Sampling benchmarks: ours vs a baseline, same run, interleaved, warm-up, median of repeats.

1. A slider move: the tab's `next_token` handler on cached logits (settings check, cache hit, the
   per-stage view over the 49,152-token vocabulary, the temperature sweep, both figures serialised
   to JSON) vs one forward of the model on the prompt, which is what every move would cost without
   the cache. Target: well under 100 ms, so ratio well under 1. Rows for the compute alone and for
   drawing 1,000 samples with its figure.
2. A generation trace (`trace_generation`: the app's loop with kept logits plus per-step analysis)
   vs `model.generate` of the same length, greedy and sampled (target: ratio <= 1.2), and vs the bare loop
   (`generate_tokens`, same settings, no records; target <= 1.25: what the per-step records cost).

`python -m benchmarks.sampling` prints the table.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from benchmarks.common import interleaved, median, model_manager, print_table, row

PROMPT = "The capital of France is"
TRACE_TOKENS = 32
SLIDER = ("The capital of France is", False, 0.7, 40, 0.9, 0.05, 1.2, 0)  # prompt, chat, T, k, p, min-p, penalty, seed


def _conditions(loaded: Any, extra: str) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{loaded.spec.key} {loaded.precision.label} on {loaded.device}, {torch.get_num_threads()} torch threads, "
            f"load average {load:.1f}; {extra}")


def _tab_handlers(manager: Any) -> dict[str, Any]:
    """The Sampling tab's real handlers, built on the app's context around the manager's loaded model."""
    import gradio as gr

    from playground.ui.context import AppContext
    from playground.ui.sampling_tab import create_sampling_tab

    with gr.Blocks() as demo:
        create_sampling_tab(AppContext(manager.settings, manager))
    return {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name}


def slider_rows(manager: Any, repeats: int = 15) -> list[dict[str, Any]]:
    from playground import sampling as smp

    loaded = manager.active()
    handlers = _tab_handlers(manager)
    ids = smp.encode_capped_prompt(loaded.tokenizer, PROMPT, chat=False)[0]
    logits = smp.compute_prompt_logits(loaded.model, loaded.tokenizer, PROMPT, False).logits  # [vocab]
    handlers["next_token"](*SLIDER, 15)  # fills the tab's logits cache, as the first press of "Show" does

    def forward() -> None:
        with loaded.lock, torch.inference_mode():
            loaded.model(input_ids=ids)

    def slider() -> None:
        stage_plot, _, sweep_plot, _ = handlers["next_token"](*SLIDER, 15)
        stage_plot.to_json(), sweep_plot.to_json()  # what gr.Plot sends to the browser

    def compute_only() -> None:
        settings = smp.SamplingSettings(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.2,
                                        seed=0)
        smp.next_token_view(logits, settings, loaded.tokenizer, ids[0], 15)
        smp.temperature_sweep(logits, settings, loaded.tokenizer, ids[0])

    def draw() -> None:
        handlers["draw_samples"](*SLIDER, 1000)[0].to_json()

    conditions = _conditions(loaded, f"vocabulary {logits.shape[-1]:,}, prompt {ids.shape[1]} tokens, "
                                     "baseline: one forward of the prompt")
    rows = []
    for name, function in (("slider move: next_token handler + figures JSON", slider),
                           ("slider move: view + sweep compute only", compute_only),
                           ("draw 1,000 samples + histogram figure", draw)):
        ours, baseline = interleaved(function, forward, repeats)
        rows.append(row(name, median(ours) * 1e3, median(baseline) * 1e3, "ms", conditions,
                        target="<100 ms, <<1x"))
    return rows


def trace_rows(loaded: Any, repeats: int = 5) -> list[dict[str, Any]]:
    from playground import sampling as smp
    from playground.generation import generate_tokens

    ids = smp.encode_capped_prompt(loaded.tokenizer, PROMPT, chat=False)[0]
    pad = loaded.tokenizer.pad_token_id
    cases = (("greedy", smp.SamplingSettings(temperature=0.0), {"do_sample": False}),
             ("sampled T=0.8 top-p 0.95", smp.SamplingSettings(temperature=0.8, top_p=0.95, seed=0),
              {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "top_k": None}))
    rows = []
    for name, settings, generate_kwargs in cases:
        def ours() -> None:
            smp.trace_generation(loaded.model, loaded.tokenizer, ids, settings, TRACE_TOKENS, lock=loaded.lock)

        def baseline() -> None:
            with loaded.lock, torch.inference_mode():
                loaded.model.generate(ids, max_new_tokens=TRACE_TOKENS, min_new_tokens=TRACE_TOKENS,
                                      pad_token_id=pad, **generate_kwargs)

        def bare_loop() -> None:  # the same loop and settings without the per-step records
            for _ in generate_tokens(loaded.model, loaded.tokenizer, ids, settings, TRACE_TOKENS, lock=loaded.lock):
                pass

        ours_times, baseline_times = interleaved(ours, baseline, repeats)
        rows.append(row(f"generation trace, {name}, {TRACE_TOKENS} tokens", median(ours_times),
                        median(baseline_times), "s", _conditions(loaded, "baseline: model.generate, same length"),
                        target="<=1.2x"))
        ours_times, bare_times = interleaved(ours, bare_loop, repeats)
        rows.append(row(f"generation trace vs the bare loop, {name}, {TRACE_TOKENS} tokens", median(ours_times),
                        median(bare_times), "s", _conditions(loaded, "baseline: generate_tokens, same settings"),
                        target="<=1.25x"))
    return rows


def run() -> list[dict[str, Any]]:
    manager = model_manager()
    loaded = manager.load()  # the default precision, active as in the app
    return slider_rows(manager) + trace_rows(loaded)


if __name__ == "__main__":
    print_table(run())

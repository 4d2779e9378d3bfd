"""Inside-the-model benchmark (issue 19), on the embedded model, each pair measured side by side in one run:

- logit lens for 64 tokens x every depth vs one plain forward of the same 64 tokens (target <= 1.5x);
- head importance for every head (270 on SmolLM2) on a 32-token prompt, batched (one forward per layer, from
  that layer's residual stream) vs one hooked forward per head (target: <= 30 s and >= 5x faster);
  `--sample N` times N of the one-per-head forwards and scales to all heads (said in the conditions);
- integrated gradients, 32 steps on 32 tokens, on the fp32 copy the tab uses for gradients (target <= 20 s),
  next to one plain forward of the fp32 copy.

`python -m benchmarks.inside [--repeats N] [--sample N]` prints the table.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date
from typing import Any

import torch

from benchmarks.common import interleaved, median, model_manager, row, print_table


def _text() -> str:
    from pydoc_data.topics import topics  # real English prose shipped with Python

    return topics["assignment"]


def _prompt(loaded: Any, tokens: int) -> Any:
    from playground import inside

    ids = loaded.tokenizer(_text())["input_ids"][:tokens]
    return inside.encode(loaded.tokenizer, loaded.tokenizer.decode(ids), tokens)


def _conditions(loaded: Any, extra: str) -> str:
    load = os.getloadavg()[0]
    return (f"{date.today()} · {loaded.spec.label}, {loaded.precision.label}, {loaded.device}, "
            f"{torch.get_num_threads()} threads, load average {load:.1f} (shared machine) · {extra}")


def lens_rows(loaded: Any, repeats: int) -> list[dict[str, Any]]:
    from playground import inside
    from playground.sampling_pipeline import SamplingSettings

    prompt = _prompt(loaded, 64)

    def lens() -> None:
        inside.logit_lens(loaded.model, loaded.tokenizer, prompt, SamplingSettings())

    def plain() -> None:
        with torch.inference_mode():
            loaded.model(prompt.ids, use_cache=False)

    ours, base = interleaved(lens, plain, repeats)
    return [row(f"logit lens, {prompt.length} tokens x 31 depths", median(ours), median(base), "s",
                _conditions(loaded, f"median of {repeats}, interleaved; baseline: one plain forward"),
                target="<= 1.5x")]


def importance_rows(loaded: Any, sample: int) -> list[dict[str, Any]]:
    from playground import inside
    from playground.inside.ablation import Part

    prompt = _prompt(loaded, 32)
    shape = inside.model_shape(loaded.model)
    heads = [(layer, head) for layer in range(shape.num_layers) for head in range(shape.num_heads)]
    started = time.perf_counter()
    inside.head_importance(loaded.model, prompt, "zero")
    batched = time.perf_counter() - started
    chosen = heads[:: max(1, len(heads) // sample)][:sample]
    started = time.perf_counter()
    for layer, head in chosen:
        with inside.switched_off(loaded.model, [Part("head", layer, head)], "zero"), torch.inference_mode():
            loaded.model(prompt.ids, use_cache=False, logits_to_keep=1)
    one_by_one = (time.perf_counter() - started) * len(heads) / len(chosen)
    note = "measured all" if len(chosen) == len(heads) else f"timed {len(chosen)} evenly spread, scaled to all"
    return [row(f"head importance, {len(heads)} heads, {prompt.length} tokens", batched, one_by_one, "s",
                _conditions(loaded, f"baseline: one hooked forward per head ({note})"), target="<= 30 s, >= 5x")]


def ig_rows(fp32: Any, repeats: int) -> list[dict[str, Any]]:
    from playground import inside

    prompt = _prompt(fp32, 32)
    top2 = []

    def ig() -> None:
        if not top2:
            top2.extend(inside.attribution.default_pair(fp32.model, prompt))
        inside.integrated_gradients(fp32.model, prompt.ids, top2[0], top2[1], 32, 2)

    def plain() -> None:
        with torch.inference_mode():
            fp32.model(prompt.ids, use_cache=False)

    ours, base = interleaved(ig, plain, repeats, warmup=0)
    return [row(f"integrated gradients, 32 steps, {prompt.length} tokens", median(ours), median(base), "s",
                _conditions(fp32, f"median of {repeats}; baseline: one plain forward (fp32)"), target="<= 20 s")]


def run(repeats: int = 3, sample: int = 30) -> list[dict[str, Any]]:
    from playground.runtime.variants import trainable_base

    manager = model_manager()
    loaded = manager.load()
    fp32 = trainable_base(manager, loaded)
    return [*lens_rows(loaded, repeats), *importance_rows(loaded, sample), *ig_rows(fp32, repeats)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=30, help="one-per-head forwards timed (270 = all)")
    arguments = parser.parse_args()
    print_table(run(arguments.repeats, arguments.sample))

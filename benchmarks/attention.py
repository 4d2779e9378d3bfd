"""Attention benchmark: what the Attention tab computes for a prompt vs a bare eager forward with
`output_attentions=True` on the same token ids, same model, same run. Target: ratio <= 1.5.

Ours = switch to eager attention + tokenize + the forward with hooks + the view, the small-multiples
grid with head patterns, the score story (Q/K recomputed for one head) and the JSON payload; the
second row adds the four figures serialised as gradio sends them. The two sides alternate, after a
warm-up, so both see the same machine load; the table shows medians.

`python -m benchmarks.attention [--repeats N]` prints the table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import torch


def _load_model() -> Any:
    from playground.config import load_settings
    from playground.runtime import ModelManager

    return ModelManager(load_settings(["--offline"])).load()


def _long_text() -> str:
    """Real English prose from Python's own docs, long enough for any token count used here."""
    from pydoc_data.topics import topics

    return topics["assignment"] + topics["compound"]


def _attention_payload(loaded: Any, text: str, tokens: int, figures: bool) -> None:
    from playground import attention as att
    from playground.figures import attention as plots

    with loaded.eager_attention() as model:
        run = att.run_attention(model, loaded.tokenizer, text, max_tokens=tokens)
    view = att.attention_view(run, 2, None)
    grid = att.attention_grid(run, 2, None, "heads")
    with loaded.lock:
        story = att.score_story(run, 2, 0)
    att.attention_json(run, view, grid, story)
    if figures:
        row = att.query_row(view, run.length - 1)
        for figure in (plots.attention_heatmap(view), plots.query_row_figure(row, view),
                       plots.attention_grid_figure(grid), plots.score_story_figure(story)):
            figure.to_json()


def _bare_forward(loaded: Any, ids: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with loaded.eager_attention() as model:
            started = time.perf_counter()
            with torch.no_grad():
                model(ids, output_attentions=True, use_cache=False)
            forward.seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return forward


def interleaved_medians(ours: Callable[[], None], baseline: Callable[[], None], repeats: int,
                        warmup: int = 2) -> tuple[float, float]:
    """Median seconds of each, measured alternately. The baseline times only its forward call."""
    for _ in range(warmup):
        ours()
        baseline()
    ours_times, baseline_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - started)
        baseline()
        baseline_times.append(baseline.seconds)  # type: ignore[attr-defined]
    return statistics.median(ours_times), statistics.median(baseline_times)


def run(repeats: int = 7, token_counts: tuple[int, ...] = (128, 256)) -> list[dict[str, Any]]:
    from playground import attention as att

    loaded = _load_model()
    text = _long_text()
    rows = []
    for tokens in token_counts:
        ids = torch.tensor([loaded.tokenizer(text)["input_ids"][:tokens]])
        baseline = _bare_forward(loaded, ids)
        conditions = (f"{loaded.spec.label}, {loaded.precision.label}, {loaded.device}, "
                      f"{torch.get_num_threads()} threads, median of {repeats}, interleaved")
        for name, figures in (("attention view (compute + JSON)", False), ("attention view + 4 figures", True)):
            ours, base = interleaved_medians(lambda: _attention_payload(loaded, text, tokens, figures), baseline,
                                             repeats)
            rows.append({"name": f"{name}, {tokens} tokens", "ours": ours, "baseline": base, "ratio": ours / base,
                         "unit": "s", "conditions": conditions + " · baseline: bare eager forward, output_attentions"})
    assert att.MAX_ANALYSED_TOKENS >= max(token_counts)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'benchmark':48} {'ours':>9} {'baseline':>9} {'ratio':>7}")
    for row in rows:
        print(f"{row['name']:48} {row['ours']:9.3f} {row['baseline']:9.3f} {row['ratio']:6.2f}x  ({row['unit']})")
    if rows:
        print("conditions:", rows[0]["conditions"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    print_table(run(parser.parse_args().repeats))

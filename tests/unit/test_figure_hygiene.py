"""Chart hygiene across the tabs' figures (issue 23): probability axes end at exactly 100%, step axes tick on
whole numbers, log axes tick once per decade, reference lines are labelled, no legend sits on a panel title,
table headers are words. Pure figure functions on hand-made data: fast, no model."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import pytest
import torch

from playground import lora
from playground.calibration import ReliabilityBin
from playground.figures import calibration as calibration_figures
from playground.figures import lora as lora_figures
from playground.figures import quantization as quantization_figures
from playground.figures import rag as rag_figures
from playground.figures import sampling as sampling_figures
from playground.figures import speculative as speculative_figures
from playground.figures import style
from playground.figures import tokenization as tokenization_figures
from playground.rag.evaluation import EvaluationReport, MethodScores
from playground.sampling import SamplingSettings, next_token_view

BUDGET = lora.LoraBudget(8, (lora.MatrixBudget("q_proj", 576, 576, 30, 30 * 576 * 576, 30 * 8 * 1152),),
                         30 * 576 * 576, 30 * 8 * 1152, 134_515_008, 4, 538_060_032)


def axes(figure: go.Figure, kind: str) -> list[dict]:
    layout = figure.layout.to_plotly_json()
    return [value for key, value in sorted(layout.items()) if key.startswith(kind)]


def test_the_shared_axes():
    assert style.probability_axis() == {"range": [0, 1], "tickformat": ".0%"}
    assert style.probability_axis(range=[0, 0.4])["range"] == [0, 0.4]
    assert [style.whole_dtick(n) for n in (1, 9, 10, 11, 95, 100, 101)] == [1, 1, 1, 2, 10, 10, 11]
    assert style.step_axis(37) == {"tick0": 0, "dtick": 4, "tickformat": "d"}
    assert style.log_axis() == {"type": "log", "dtick": 1, "tickformat": "~s"}


def test_the_stage_figure_never_draws_past_100_percent(tiny_tokenizer):
    # one token far ahead: its panels' ranges would be 1.4 x ~0.99 without the cap
    logits = torch.full((len(tiny_tokenizer),), -5.0)
    logits[7] = 10.0
    view = next_token_view(logits, SamplingSettings(temperature=0.7, top_k=20), tiny_tokenizer, top_n=10)
    figure = sampling_figures.stage_figure(view)
    x_axes = axes(figure, "xaxis")
    assert all(axis["range"][0] == 0 and axis["range"][1] == 1.0 and axis["tickformat"] == ".0%" for axis in x_axes)
    top_bar = next(trace for trace in figure.data if trace.name.startswith("kept"))
    assert top_bar.textposition[0] == "inside"  # a full-width bar holds its text: outside, it would leave the panel
    assert figure.layout.legend.yref == "container" and figure.layout.legend.y == 0  # below, not on the titles
    # side by side, a panel's 100% tick ran into the next panel's 0% ("100%0%"): only the last one shows it
    assert all(1.0 not in (axis.get("tickvals") or []) and axis.get("tickvals") for axis in x_axes[:-1])
    assert "tickvals" not in x_axes[-1]


def test_the_trace_figure_has_a_probability_axis_and_whole_steps(tiny_model, tiny_tokenizer):
    from playground.generation import encode_prompt
    from playground.sampling import trace_generation

    run = trace_generation(tiny_model, tiny_tokenizer, encode_prompt(tiny_tokenizer, "The cat", chat=False),
                           SamplingSettings(temperature=1.0, seed=0), 6)
    figure = sampling_figures.trace_figure(run)
    assert list(figure.layout.yaxis.range) == [0, 1] and figure.layout.yaxis.tickformat == ".0%"
    assert figure.layout.xaxis.dtick == 1 and figure.layout.xaxis.tickformat == "d"
    assert all(trace.cliponaxis is False for trace in figure.data)  # a point at 100% is drawn whole


def test_lora_step_and_log_axes():
    events = [{"event": "queued", "job_id": "j", "total_steps": 37, "time": 0.0},
              {"event": "start", "time": 1.0, "settings": {"max_grad_norm": 1.0}}]
    events += [{"event": "step", "step": step, "loss": 1.0, "learning_rate": 1e-3, "grad_norm": 0.5,
                "tokens_per_second": 10.0, "time": 1.0 + step} for step in range(1, 38)]
    progress = lora.summarize_events(events, now=40.0)
    loss = lora_figures.loss_figure(progress)
    assert loss.layout.xaxis.dtick == 4 and loss.layout.xaxis.tickformat == "d"
    dynamics = lora_figures.dynamics_figure(progress)
    assert {axis["dtick"] for axis in axes(dynamics, "xaxis")} == {4}
    budget = lora_figures.budget_figure(BUDGET)
    assert budget.layout.yaxis.type == "log" and budget.layout.yaxis.dtick == 1  # 1k, 10k, … not "2 5 100 2 5"


def test_speculative_acceptance_ends_at_100_percent():
    class Row:  # the fields of speculative.AcceptanceStats the figure reads
        def __init__(self, position, checked, accepted):
            self.position, self.checked, self.accepted = position, checked, accepted
            self.acceptance_rate = accepted / checked if checked else 0.0
            self.mean_accept_probability = self.acceptance_rate

    class Stats:
        by_position = [Row(1, 10, 10), Row(2, 8, 3), Row(3, 0, 0)]
        alpha, checked, accepted = 0.72, 18, 13

    figure = speculative_figures.acceptance_by_position_figure(Stats())
    assert list(figure.layout.yaxis.range) == [0, 1] and figure.layout.yaxis.tickformat == ".0%"
    assert list(figure.data[0].textposition) == ["inside", "outside", "outside"]
    assert figure.layout.xaxis.dtick == 1


def test_quantization_axes_and_the_labelled_budget_line():
    rows = [{"precision": name, "memory_mb": memory, "decode_tokens_per_second": 10.0, "kl_mean": kl,
             "top1_agreement": top1} for name, memory, kl, top1 in (("fp32", 540, 0.0, 1.0), ("int4", 171, 3e-4, 0.98))]
    comparison = quantization_figures.precision_comparison_figure(rows)
    assert list(comparison.layout.yaxis4.range) == [0, 1] and comparison.layout.yaxis4.tickformat == ".0%"
    table = [{"model": "7B", "precision": "fp16", "total_gb": 15.2, "weights_gb": 14.0, "kv_gb": 1.2, "fits": True},
             {"model": "70B", "precision": "fp16", "total_gb": 150.0, "weights_gb": 140.0, "kv_gb": 10.0, "fits": False}]
    memory = quantization_figures.memory_fit_figure(table, 24)
    assert memory.layout.yaxis.type == "log" and memory.layout.yaxis.dtick == 1
    assert any("24 GB" in (note.text or "") for note in memory.layout.annotations)  # the budget line says what it is


def test_calibration_and_rag_scores_end_at_1():
    bins = [ReliabilityBin(0.0, 0.5, 4, 0.4, 0.25), ReliabilityBin(0.5, 1.0, 6, 0.8, 1.0)]
    reliability = calibration_figures.reliability_figure([("before", bins), ("after", bins)], "Reliability")
    assert all(list(axis["range"]) == [0, 1] for axis in axes(reliability, "yaxis"))
    assert reliability.layout.legend.yref == "container"  # below the panels, never on their titles
    report = EvaluationReport((MethodScores("dense", {1: 1.0, 3: 1.0}, 1.0, {1: 1.0, 3: 1.0}, (1,)),), (), (1, 3),
                              {}, 0, 0.1)
    evaluation = rag_figures.evaluation_figure(report)
    assert list(evaluation.layout.yaxis.range) == [0, 1]


def test_kv_cache_chosen_context_is_labelled():
    from playground.attention import AttentionShape, kv_cache_estimate
    from playground.figures import attention as attention_figures

    estimate = kv_cache_estimate(AttentionShape(30, 9, 3, 64), 4096, "float32")
    figure = attention_figures.kv_cache_figure(estimate)
    assert any("4,096 tokens" in (note.text or "") for note in figure.layout.annotations)


SNAKE = re.compile(r"[a-z]+_[a-z]+")


@pytest.mark.parametrize("headers", [tokenization_figures.COUNT_HEADERS, tokenization_figures.MERGE_HEADERS,
                                     tokenization_figures.COST_HEADERS], ids=["counts", "merges", "costs"])
def test_table_headers_are_words(headers):
    assert not [header for header in headers if SNAKE.search(header)]


def test_the_quantization_table_is_headed_in_words():
    from playground.ui.quantization_tab import LAB_COLUMNS

    assert not [header for header in LAB_COLUMNS.values() if SNAKE.search(header)]
    assert "memory (MB)" in LAB_COLUMNS.values()


def test_the_lora_stats_give_one_trainable_share():
    """The budget table says r(d+k) / the base model's parameters; the run's stats said PEFT's share of the
    model *with* the adapter (0.343% vs 0.341% on one screen). One share, the same as the budget's."""
    from playground.ui.lora_tab import stats_markdown

    trainable, base = 461_184, 134_515_008
    events = [{"event": "queued", "job_id": "j", "total_steps": 2, "time": 0.0},
              {"event": "start", "time": 1.0, "device": "cpu", "qlora": False, "dataset": "d", "train_examples": 8,
               "eval_examples": 2, "truncated": 0, "dropped": 0, "settings": {"mask_prompt": True},
               "trainable_parameters": trainable, "all_parameters": base + trainable,
               "trainable_percent": 100 * trainable / (base + trainable), "adapter_mb": 1.76, "model_mb": 513}]
    text = stats_markdown(lora.summarize_events(events, now=2.0))
    assert re.findall(r"\d+\.\d+%", text) == [f"{100 * trainable / base:.3f}%"]
    assert f"{base:,}" in text and "as PEFT reports" in text

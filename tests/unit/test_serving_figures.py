"""The Serving tab's figures: data in, plotly Figure out, with the numbers they were given."""

from __future__ import annotations

from playground.attention.shape import AttentionShape
from playground.figures import serving as figures
from playground.serving import (BatchingCurve, BatchPoint, KVMemoryReport, KVPoint, StepCostModel, block_table,
                                simulate)

SHAPE = AttentionShape(num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8)


def kv(batch: int, tokens: int) -> KVPoint:
    size = 2 * 2 * 2 * 8 * 4 * tokens * batch
    return KVPoint(batch, tokens, size, size, 4)


def test_batching_figure_plots_the_measured_rates_and_the_ideal_line():
    curve = BatchingCurve((BatchPoint(1, 0.02, (0.02,), kv(1, 10)), BatchPoint(4, 0.025, (0.025,), kv(4, 10))),
                          8, 2, "cpu")
    figure = figures.batching_figure(curve)
    ideal, total, per_sequence = figure.data
    assert list(ideal.y) == [50.0, 200.0]
    assert list(total.y) == [50.0, 160.0] and list(per_sequence.y) == [50.0, 40.0]
    assert all(axis.title.text for axis in (figure.layout.xaxis, figure.layout.yaxis, figure.layout.yaxis2))


def test_kv_figure_puts_measured_points_on_the_formula_under_free_memory():
    report = KVMemoryReport(SHAPE, 4, "cpu", 10**9, (kv(1, 10), kv(4, 10)))
    line, measured, free = figures.kv_memory_figure(report).data
    assert list(measured.x) == [10, 40] and list(measured.y) == [p.measured_bytes / 1e6 for p in report.points]
    assert line.y[1] / line.x[1] == report.bytes_per_token / 1e6
    assert list(free.y) == [1000.0, 1000.0] and f"{report.tokens_that_fit:,}" in free.name
    # one labelled tick per decade: plotly's own log ticks add '2' and '5' at 75% size, under the 12 px floor
    layout = figures.kv_memory_figure(report).layout
    assert (layout.xaxis.dtick, layout.yaxis.dtick) == (1, 1) and layout.yaxis.tickformat == "~g"


def test_schedule_figure_has_a_waiting_and_a_generating_bar_per_policy():
    costs = StepCostModel({1: 1.0})
    static, continuous = (simulate([3, 1, 2], 2, policy, costs) for policy in ("static", "continuous"))
    figure = figures.schedule_figure(static, continuous)
    assert len(figure.data) == 4
    assert list(figure.data[0].x) == [0.0, 0.0, 3.0]  # static: request 2 waits for the first batch
    assert list(figure.data[3].base) == [0.0, 0.0, 1.0]  # continuous: it starts after one step
    assert "Simulation" in figure.layout.title.text


def test_paged_figure_shows_the_block_table_and_the_waste():
    table = block_table([5, 3, 9], 4, 12)
    heatmap, bars = figures.paged_figure(table, 10).data
    assert list(heatmap.text[2]) == ["2", "4", "5"] and heatmap.z[1][1] is None
    assert list(bars.y) == [190 / 1e6, 70 / 1e6]

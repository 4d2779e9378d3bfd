"""Why a live run contradicts the lesson (issue 23): the rule that decides why speculation did not beat plain
decoding (compute, pure) and the one sentence the tab shows for it."""

from __future__ import annotations

import pytest

from playground import speculative as spec
from playground.ui import speculative_tab as tab


def report(alpha: float, k: int, c: float, measured: float, v: float = 1.0) -> spec.SpeedReport:
    return spec.SpeedReport(plain_tokens_per_second=30.0, speculative_tokens_per_second=30.0 * measured,
                            measured_speedup=measured, alpha=alpha, k=k, cost_ratio=c, verify_cost_ratio=v,
                            predicted_speedup=spec.predicted_speedup(alpha, k, c),
                            predicted_speedup_measured_costs=0.0, same_tokens=True)


@pytest.mark.parametrize("alpha, k", [(0.0, 1), (0.3, 2), (0.62, 4), (0.9, 6), (0.999, 3)])
def test_break_even_cost_is_where_the_formula_crosses_one(alpha, k):
    c = spec.break_even_cost(alpha, k)
    assert spec.predicted_speedup(alpha, k, c) == pytest.approx(1.0, abs=1e-12)
    if c > 0:
        assert spec.predicted_speedup(alpha, k, c * 0.99) > 1 > spec.predicted_speedup(alpha, k, c * 1.01)


def test_a_draft_costing_twice_the_target_cannot_win_at_any_k():
    """The issue's run: c = 2.06 on a busy CPU, measured 0.42x."""
    verdict = spec.speed_verdict(report(alpha=0.62, k=4, c=2.06, measured=0.42))
    assert verdict.kind == "draft-too-slow" and verdict.cost_ratio >= verdict.break_even_cost
    assert verdict.best_predicted_speedup < 1  # no k in 1..MAX_K rescues it
    assert verdict.best_predicted_speedup == max(spec.predicted_speedup(0.62, k, 2.06) for k in range(1, spec.MAX_K + 1))
    sentence = tab.verdict_sentence(verdict, "int4")
    assert "cannot win here" in sentence and "c = 2.06" in sentence and "α = 0.62" in sentence
    assert f"c < {verdict.break_even_cost:.2f}" in sentence and "no k wins" in sentence
    assert "Open text, int4 self-draft" in sentence and "cached" in sentence  # the cached run where it won


def test_a_cheap_draft_that_lost_anyway_blames_the_check_and_the_noise():
    verdict = spec.speed_verdict(report(alpha=0.8, k=4, c=0.1, measured=0.9, v=1.6))
    assert verdict.kind == "overhead" and verdict.best_predicted_speedup > 1
    sentence = tab.verdict_sentence(verdict, "ngram")
    assert "v = 1.60" in sentence and "formula predicts a win" in sentence
    assert "Copy-heavy text, prompt lookup" in sentence  # the same draft kind's winning example


def test_a_run_that_won_needs_no_excuse():
    assert spec.speed_verdict(report(alpha=0.8, k=4, c=0.1, measured=1.3)) is None
    assert tab.verdict_sentence(None, "int4") == ""

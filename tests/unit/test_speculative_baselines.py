"""The race's baselines (issue 18): the speed-up against plain decoding of the same target in the same
precision, and beside it against the fastest plain decoding the app offers for the model on the device
(the default precision's plain decode, same prompt and token count, measured in the same run)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from playground.drafts import CachedModel, ModelDraft
from playground.generation import encode_prompt
from playground.runtime import variants
from playground.sampling import SamplingSettings
from playground.speculative import (
    acceptance_stats,
    plain_decode,
    report_json,
    speculative_generate,
    speed_report,
)
from playground.ui import speculative_tab as tab
from tiny import make_tiny_llama

GREEDY = SamplingSettings(temperature=0.0)


@pytest.fixture(scope="module")
def race(tiny_tokenizer):
    """(run, stats, plain of the same target, plain of a 'default precision' copy for the same token count)."""
    target = make_tiny_llama(len(tiny_tokenizer), seed=0)
    draft = make_tiny_llama(len(tiny_tokenizer), seed=4)
    prompt = encode_prompt(tiny_tokenizer, "Tokens attend to earlier tokens.", chat=False)[0].tolist()
    run = speculative_generate(CachedModel(target), ModelDraft(draft, label="tiny draft"), tiny_tokenizer, prompt,
                               GREEDY, k=3, max_new_tokens=24)
    plain = plain_decode(target, tiny_tokenizer, prompt, GREEDY, 24)
    fastest = plain_decode(draft, tiny_tokenizer, prompt, GREEDY, len(run.token_ids))  # stands in for int4
    return run, acceptance_stats(run), plain, fastest


def test_speed_report_compares_with_the_same_target_and_with_the_fastest_plain_decoding(race):
    run, stats, plain, fastest = race
    speed = speed_report(run, plain, stats, fastest, fastest_precision="int4", target_precision="fp32")
    assert len(fastest.token_ids) == len(run.token_ids)  # same token count: the time ratio is the speed ratio
    assert speed.measured_speedup == pytest.approx(speed.speculative_tokens_per_second / speed.plain_tokens_per_second)
    assert speed.fastest_plain_tokens_per_second == pytest.approx(fastest.tokens_per_second)
    assert speed.speedup_vs_fastest_plain == pytest.approx(fastest.seconds / run.seconds)
    assert speed.beats_fastest_plain is (speed.speedup_vs_fastest_plain > 1)
    assert speed.fastest_plain_precision == "int4" and speed.target_precision == "fp32"
    assert speed.fastest_plain_is_target is False


def test_without_another_default_copy_the_target_is_the_fastest_plain_decoding(race):
    run, stats, plain, _ = race
    speed = speed_report(run, plain, stats, target_precision="fp32")
    assert speed.fastest_plain_is_target is True and speed.fastest_plain_precision == "fp32"
    assert speed.speedup_vs_fastest_plain == pytest.approx(speed.measured_speedup)
    assert speed.fastest_plain_tokens_per_second == pytest.approx(plain.tokens_per_second)


def test_json_carries_both_baselines(race):
    run, stats, plain, fastest = race
    speed = speed_report(run, plain, stats, fastest, "int4", "fp32")
    data = json.loads(json.dumps(report_json(run, stats, speed, (), plain, fastest)))
    assert {"target_precision", "fastest_plain_precision", "fastest_plain_tokens_per_second",
            "speedup_vs_fastest_plain", "beats_fastest_plain", "fastest_plain_is_target",
            "predicted_speedup", "predicted_speedup_measured_costs"} <= set(data["speed"])
    assert data["fastest_plain"]["tokens_per_second"] == pytest.approx(data["speed"]["fastest_plain_tokens_per_second"],
                                                                       rel=1e-4)
    assert data["fastest_plain"]["precision"] == "int4"
    assert len(data["fastest_plain"]["token_ids"]) == data["generated_tokens"]
    assert data["speed"]["speedup_vs_fastest_plain"] == pytest.approx(
        data["fastest_plain"]["seconds"] / data["seconds"], rel=1e-3)


def test_summary_names_each_baseline_and_says_plainly_when_the_default_is_faster(race):
    run, stats, plain, fastest = race
    speed = speed_report(run, plain, stats, fastest, "int4", "fp32")
    slower = replace(speed, speedup_vs_fastest_plain=0.6, beats_fastest_plain=False)
    text = tab.summary_markdown(run, stats, slower, plain, "Tiny (fp32)", (), fastest)
    assert "plain decoding of the same fp32 target" in text
    assert "plain int4 decoding (the app's default precision" in text
    assert "0.60×" in text
    assert "does not beat plain int4 decoding, the app's default" in text
    # the textbook prediction first; the one that reuses this run's costs says so
    assert text.index("textbook formula") < text.index("fitted from this run")
    faster = replace(speed, speedup_vs_fastest_plain=1.5, beats_fastest_plain=True)
    assert "does not beat" not in tab.summary_markdown(run, stats, faster, plain, "Tiny (fp32)", (), fastest)


def test_summary_when_the_target_already_runs_in_the_default_precision(race):
    run, stats, plain, _ = race
    speed = speed_report(run, plain, stats, target_precision="int4")
    text = tab.summary_markdown(run, stats, speed, plain, "Tiny (int4)", (), None)
    assert "already the app's default precision" in text


class RecordingManager:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def load(self, model: str, precision: str, device: str, activate: bool = True) -> str:
        self.calls.append((model, precision, device, activate))
        return f"loaded {model} {precision}"


def loaded(key: str, device: str, quantization: str) -> SimpleNamespace:
    return SimpleNamespace(spec=SimpleNamespace(key=key), device=device,
                           precision=SimpleNamespace(quantization=quantization))


def test_default_precision_model_is_the_auto_copy_unless_the_target_already_is_it(monkeypatch):
    monkeypatch.setattr(variants, "default_quantization", lambda device: "int4" if device == "cpu" else "nf4")
    models = RecordingManager()
    fp32 = loaded("m", "cpu", "none")
    assert variants.default_precision_model(models, fp32) == "loaded m auto"
    assert models.calls == [("m", "auto", "cpu", False)]
    int4 = loaded("m", "cpu", "int4")
    assert variants.default_precision_model(models, int4) is int4
    nf4 = loaded("m", "cuda", "nf4")
    assert variants.default_precision_model(models, nf4) is nf4

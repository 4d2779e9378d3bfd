"""The `speculate` endpoint driven by gradio_client: step records, stats and the race, and clear errors."""

from __future__ import annotations

import pytest

from playground.ui.examples import example_values

COPY_PROMPT = example_values("speculative", "lookup")["prompt"]  # the copy-heavy prepared example

pytestmark = pytest.mark.slow


def speculate(client, prompt=COPY_PROMPT, draft="ngram", k=4, temperature=0.0, top_k=0, top_p=1.0,
              max_new_tokens=16, seed=0, skip_layers="24-29", draft_model=""):
    return client.predict(prompt, draft, k, temperature, top_k, top_p, max_new_tokens, seed, skip_layers, draft_model,
                          api_name="/speculate")


def test_speculate_returns_records_stats_and_the_race(client):
    outputs = speculate(client)
    summary, data = outputs[0], outputs[-1]
    assert data["generated_tokens"] == 16 and data["k"] == 4 and data["finish_reason"] == "length"
    assert data["target"]["precision"] == "fp32"
    emitted = [token for step in data["steps"] for token in step["emitted"]]
    assert emitted == data["token_ids"]
    # Greedy: the speculative tokens are plain decoding's tokens, and the JSON says so.
    assert data["plain"]["token_ids"] == data["token_ids"] and data["speed"]["same_tokens"] is True
    stats = data["stats"]
    assert sum(stats["accepted_length_counts"]) == stats["steps"] == len(data["steps"])
    assert stats["tokens_per_target_forward"] == pytest.approx(16 / stats["steps"], abs=1e-5)
    assert stats["accepted"] > 0  # copying a notice: prompt lookup gets drafts accepted
    speed = data["speed"]
    assert speed["measured_speedup"] == pytest.approx(
        speed["speculative_tokens_per_second"] / speed["plain_tokens_per_second"], rel=1e-3)
    assert f"{speed['measured_speedup']:.2f}×" in summary
    # Beside it: plain decoding in the app's default precision (int4 on a CPU), same prompt and token count.
    assert speed["target_precision"] == "fp32" and speed["fastest_plain_precision"] == "int4"
    assert speed["fastest_plain_is_target"] is False and len(data["fastest_plain"]["token_ids"]) == 16
    assert speed["speedup_vs_fastest_plain"] == pytest.approx(data["fastest_plain"]["seconds"] / data["seconds"],
                                                              rel=1e-3)
    assert "plain int4 decoding (the app's default precision" in summary
    assert f"{speed['speedup_vs_fastest_plain']:.2f}×" in summary
    assert ("does not beat plain int4 decoding" in summary) is (not speed["beats_fastest_plain"])


@pytest.mark.parametrize("overrides, message", [
    # Sliders check their range before the handler runs (the handler's own messages: unit tests).
    ({"k": 0}, "Value 0 is less than minimum value 1"),
    ({"k": 17}, "Value 17 is greater than maximum value 16"),
    ({"max_new_tokens": 600}, "Value 600 is greater than maximum value 512"),
    ({"prompt": "   "}, "The prompt is empty"),
    ({"draft": "layer_skip", "skip_layers": "0-3"}, "Layer 0 cannot be skipped"),
    ({"draft": "layer_skip", "skip_layers": "31"}, "the model has layers 0..29"),
    ({"draft": "model", "draft_model": "HuggingFaceTB/SmolLM2-360M-Instruct"}, "offline"),
])
def test_bad_input_gets_a_clear_message(client, overrides, message):
    with pytest.raises(Exception, match=message):
        speculate(client, **overrides)

"""The Sampling tab scripted through gradio_client, as the README documents it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def next_token(client, *settings, prompt=PROMPT, chat=False, top_n=10):
    return client.predict(prompt, chat, *settings, top_n, api_name="/next_token")


def test_next_token_returns_every_stage_for_the_top_tokens(client):
    _, stats, _, data = next_token(client, 0.7, 40, 0.9, 0.05, 1.0, 0)
    top = data["tokens"][0]
    assert top["text"] == " Paris" and top["rank"] == 1 and top["cut_by"] is None
    assert set(top["probs"]) == {"raw", "repetition_penalty", "temperature", "top_k", "top_p", "min_p"}
    assert top["probs"]["min_p"] >= top["probs"]["raw"]  # sharpening and cutting only ever help the top token
    assert data["kept"]["top_k"] == 40 and data["nucleus_size"] == data["kept"]["top_p"] <= 40
    assert data["entropy_bits"]["min_p"] < data["entropy_bits"]["raw"]
    assert data["vocab_size"] == 49152 and "Entropy" in stats
    assert [panel["temperature"] for panel in data["temperature_sweep"]["panels"]][0] == 0.0


def test_greedy_and_clamped_top_k_are_explained(client):
    _, _, _, data = next_token(client, 0.0, 10**6, 1.0, 0.0, 1.0, 0)
    assert data["chosen"]["final_prob"] == 1.0 and data["entropy_bits"]["min_p"] == 0.0
    notes = " ".join(data["notes"])
    assert "greedy" in notes and "clamped to 49152" in notes


# Out-of-range values stop at the inputs' bounds (NaN cannot even be sent as JSON); the unit tests
# cover the compute layer's own messages for NaN and friends.
@pytest.mark.parametrize("values, message", [
    ((-0.5, 0, 1.0, 0.0, 1.0, 0), "less than minimum value 0"),
    ((1.0, -3, 1.0, 0.0, 1.0, 0), "less than minimum value 0"),
    ((1.0, 0, 0.0, 0.0, 1.0, 0), "less than minimum value 0.01"),
    ((1.0, 0, 1.0, 1.5, 1.0, 0), "greater than maximum value 1"),
])
def test_bad_settings_come_back_as_messages(client, values, message):
    with pytest.raises(Exception, match=message):
        next_token(client, *values)


def test_empty_prompt_is_an_empty_state(client):
    _, stats, _, data = next_token(client, 1.0, 0, 1.0, 0.0, 1.0, 0, prompt="   ")
    assert data["empty"] and "Type a prompt" in stats


def test_draw_samples_matches_the_distribution(client):
    _, data = client.predict(PROMPT, False, 1.0, 0, 0.9, 0.0, 1.0, 7, 5000, api_name="/draw_samples")
    assert data["n"] == 5000 and sum(data["counts"]) + data["other_count"] == 5000
    assert data["chi_square"]["p_value"] > 1e-3 and data["texts"][0] == " Paris"


def test_generate_trace_then_force_a_token(client):
    outputs = client.predict(PROMPT, False, 0.9, 0, 0.95, 0.0, 1.0, 1, 8, True, api_name="/generate_trace")
    data = outputs[-1]
    trace, greedy = data["trace"], data["greedy"]
    assert len(trace["steps"]) == 8 and greedy["settings"]["temperature"] == 0.0
    assert greedy["steps"][0]["text"] == " Paris"
    step = trace["steps"][3]
    assert step["prob"] > 0 and len(step["alternatives"]) == 10
    forced = next(alt["token_id"] for alt in step["alternatives"] if alt["token_id"] != step["token_id"])
    outsider = next(i for i in range(1000) if i not in {alt["token_id"] for alt in step["alternatives"]})
    with pytest.raises(Exception, match=f"token {outsider} is not one of step 3's alternatives"):
        client.predict(data, 3, outsider, api_name="/force_token")
    branched = client.predict(data, 3, forced, api_name="/force_token")[-1]["trace"]
    assert [s["token_id"] for s in branched["steps"][:3]] == [s["token_id"] for s in trace["steps"][:3]]
    assert branched["steps"][3]["token_id"] == forced and branched["steps"][3]["forced"]

"""The launched app, driven through gradio_client like a script would."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_model_status_reports_the_loaded_model(client):
    html, status, _timer = client.predict(api_name="/model_status")
    assert status["model"]["model"] == "smollm2-135m-instruct"
    assert status["model"]["device"] == "cpu" and status["loading"]["phase"] == "ready"
    assert "SmolLM2-135M-Instruct" in html and "MB in memory" in html


def test_loading_an_unknown_model_is_a_clear_error_and_keeps_the_model(client):
    with pytest.raises(Exception, match="Unknown model 'definitely not a model'"):
        client.predict("definitely not a model", "auto", "auto", api_name="/load_model")
    _, status, _ = client.predict(api_name="/model_status")
    assert status["model"]["model"] == "smollm2-135m-instruct"


def test_asking_for_cuda_without_a_gpu_is_explained(client):
    with pytest.raises(Exception, match="no GPU is visible"):
        client.predict("smollm2-135m-instruct", "auto", "cuda", api_name="/load_model")


def test_reloading_the_active_model_is_instant_from_cache(client):
    """Reloading what is active adds no resident (other test files on this server may have left some)."""
    _, before, _ = client.predict("smollm2-135m-instruct", "auto", "auto", api_name="/load_model")
    _, status, _ = client.predict("smollm2-135m-instruct", "auto", "auto", api_name="/load_model")
    assert status["model"]["model"] == "smollm2-135m-instruct"
    assert sorted(map(str, status["cached"])) == sorted(map(str, before["cached"]))

"""The header's precision reason prints measured numbers only for the model they were measured on
(issue 18): SmolLM2-135M's int4 figures (their KL and speed-up) never appear for another model, and where they
appear they say that the "fp32" reference is the GGUF's Q4_1 weights dequantized, which flatters int4."""

from __future__ import annotations

import pytest

from playground.config import Settings
from playground.runtime import ModelManager, resolve_precision
from playground.runtime.int4 import int4_available

SMOLLM2 = "smollm2-135m-instruct"
MEASURED = ("0.0007", "1.9-2.2x", "34%", "201")


@pytest.mark.parametrize("requested", ["auto", "int4", "int8"])
def test_another_model_gets_no_smollm2_numbers(requested):
    precision = resolve_precision(requested, "cpu", model="some/other-model")
    for number in MEASURED:
        assert number not in precision.reason and number not in precision.warning


def test_the_embedded_model_gets_its_numbers_with_what_the_reference_is():
    if not int4_available():
        pytest.skip("no CPU int4 kernel in this torch build")
    for requested in ("auto", "int4"):
        reason = resolve_precision(requested, "cpu", model=SMOLLM2).reason
        assert "KL 0.0007" in reason and "1.9-2.2x" in reason
        assert "Q4_1" in reason and "already 4-bit" in reason
    assert "34%" in resolve_precision("int8", "cpu", model=SMOLLM2).warning


@pytest.mark.parametrize("requested", ["auto", "int4", "int8"])
def test_the_header_of_a_loaded_tiny_model_has_no_smollm2_numbers(tmp_path, tiny_model_dir, requested):
    if requested != "int8" and not int4_available():
        pytest.skip("no CPU int4 kernel in this torch build")
    manager = ModelManager(Settings(model=str(tiny_model_dir), device="cpu", cache_dir=tmp_path, preload=False))
    status = manager.load(str(tiny_model_dir), requested, "cpu").status()
    for number in MEASURED:
        assert number not in status["precision_reason"] and number not in status["warning"]

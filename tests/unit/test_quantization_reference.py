"""The quantization lab names what its reference row really is (issue 18): the embedded model's "fp32"
is its GGUF's Q4_1 weights dequantized; a hub model's is the weights as published."""

from __future__ import annotations

from playground import quantization as q
from playground.runtime.registry import resolve_model


def test_the_embedded_reference_is_the_ggufs_q4_1_weights():
    spec = resolve_model("smollm2-135m-instruct")
    text = q.reference_description(spec, "none", "fp32")
    assert text.startswith("fp32 from the GGUF's Q4_1 weights")
    assert "already 4-bit" in text  # why int4's KL against it flatters int4


def test_a_hub_model_reference_is_the_weights_as_published():
    spec = resolve_model("smollm2-360m-instruct")
    assert q.reference_description(spec, "none", "bf16") == "bf16 of the weights as published (hub)"


def test_a_lower_reference_says_it_is_not_full_precision():
    spec = resolve_model("smollm2-135m-instruct")
    assert q.reference_description(spec, "int8", "int8 dynamic").startswith("int8 (not full precision)")


def test_rows_carry_the_reference(monkeypatch):
    import torch

    logits = torch.randn(5, 7)
    run = q.PrecisionRun(logits, 0.1, 10.0, 3)
    status = {"precision": "fp32", "memory_mb": 1.0, "load_seconds": 0.1}
    rows = q.precision_rows([("none", status, run), ("int8", status, run)], torch.randint(0, 7, (1, 5)),
                            reference="fp32 from the GGUF's Q4_1 weights")
    assert [row["reference"] for row in rows] == ["fp32 from the GGUF's Q4_1 weights"] * 2
    assert [row["is_reference"] for row in rows] == [True, False]

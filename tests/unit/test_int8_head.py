"""The int8 output head: the kernel computes with exactly the dequantized rows, the head is swapped while the
(tied) embeddings stay fp32, the int4 precision applies it, and greedy decoding with it equals transformers'
generate on the same model."""

from __future__ import annotations

import copy

import pytest
import torch

from playground.generation import encode_prompt, generate_text
from playground.runtime.head import Int8RowLinear, int8_head_available, quantize_output_head, quantize_rows
from playground.runtime.int4 import int4_available
from playground.runtime.precision import requantize, resolve_precision

pytestmark = pytest.mark.skipif(not int8_head_available(), reason="this torch build has no weight-only int8 kernel")


def test_the_docstring_example_row_round_trips():
    codes, scale = quantize_rows(torch.tensor([[0.5, -1.27, 0.02, 1.0]]))
    assert codes[0].tolist() == [50, -127, 2, 100]
    torch.testing.assert_close(codes.float() * scale[:, None], torch.tensor([[0.5, -1.27, 0.02, 1.0]]))


def test_layer_equals_a_float64_product_with_the_dequantized_rows():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 300, bias=False)
    linear.weight.data[7] *= 1e-3  # a row far smaller than the others keeps its own scale
    layer = Int8RowLinear(linear)
    codes, scale = quantize_rows(linear.weight)
    weight = codes.double() * scale.bfloat16().double()[:, None]  # what the kernel should compute with
    x = torch.randn(2, 3, 96)
    expected = (x.bfloat16().double().reshape(-1, 96) @ weight.T).reshape(2, 3, 300)
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-2, atol=1e-2)
    # near the fp32 layer: int8 rows leave ~(max/127)/sqrt(12) rms error per weight, under 1% of the output
    reference = linear(x)
    assert ((layer(x) - reference).norm() / reference.norm()).item() < 0.01
    small = (layer(x)[..., 7] - reference[..., 7]).norm() / reference[..., 7].norm()
    assert small.item() < 0.01


def test_head_is_swapped_and_the_tied_embeddings_stay_fp32(tiny_model):
    model = copy.deepcopy(tiny_model)
    embeddings = model.get_input_embeddings().weight.detach().clone()
    quantize_output_head(model)
    assert isinstance(model.lm_head, Int8RowLinear) and model.get_output_embeddings() is model.lm_head
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert torch.equal(model.get_input_embeddings().weight, embeddings)


def test_greedy_loop_equals_generate_with_the_int8_head(tiny_model, tiny_tokenizer):
    model = quantize_output_head(copy.deepcopy(tiny_model))
    ids = encode_prompt(tiny_tokenizer, "The capital of France is")
    ours = generate_text(model, tiny_tokenizer, ids, max_new_tokens=12).token_ids
    reference = model.generate(ids, do_sample=False, max_new_tokens=12, min_new_tokens=12)[0, ids.shape[1]:]
    assert ours == reference.tolist()


@pytest.mark.skipif(not int4_available(), reason="this torch build has no CPU int4 kernel")
def test_the_int4_default_keeps_an_fp32_head(tiny_model):
    """The int8 head is measured (benchmarks.engine), not adopted: the default's head stays fp32."""
    precision = resolve_precision("int4", "cpu")
    model = requantize(copy.deepcopy(tiny_model), precision)
    assert isinstance(model.lm_head, torch.nn.Linear) and "fp32 head" in precision.label

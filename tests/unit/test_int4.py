"""Weight-only int4 Linear layers: the kernel computes with exactly the dequantized group weights, the
decoder's matrices are swapped (embeddings and head kept), and greedy decoding with them equals
transformers' generate on the same model."""

from __future__ import annotations

import copy

import pytest
import torch

from playground.generation import encode_prompt, generate_text
from playground.runtime.int4 import (GROUP_SIZE, Int4Linear, dequantize_groups, int4_available, quantize_groups,
                                     quantize_int4_weights)
from playground.runtime.loading import ModelLoadError
from playground.runtime.precision import requantize, resolve_precision

pytestmark = pytest.mark.skipif(not int4_available(), reason="this torch build has no CPU int4 kernel")


def test_the_docstring_example_group_round_trips():
    weight = torch.tensor([[0.1, 0.4, -0.2, 0.7] * (GROUP_SIZE // 4)])
    codes, scale, minimum = quantize_groups(weight)
    assert codes[0, :4].tolist() == [5, 10, 0, 15]
    torch.testing.assert_close(dequantize_groups(codes, scale, minimum), weight, rtol=0, atol=1e-6)


def test_layer_equals_a_float64_product_with_the_dequantized_weights():
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 48, bias=True)
    layer = Int4Linear.from_linear(linear)
    codes, scale, minimum = quantize_groups(linear.weight)
    # What the kernel should compute: bf16 inputs, bf16 scales/offsets, the 4-bit codes; in float64.
    scale_b = scale.bfloat16().double()
    zero_b = (minimum + 8 * scale).bfloat16().double()
    weight = (codes.reshape(48, -1, GROUP_SIZE).double() - 8) * scale_b[..., None] + zero_b[..., None]
    x = torch.randn(2, 3, 128)
    expected = x.bfloat16().double().reshape(-1, 128) @ weight.reshape(48, 128).T + linear.bias.double()
    torch.testing.assert_close(layer(x).double().reshape(-1, 48), expected, rtol=2e-2, atol=2e-2)
    # and near the original layer: 16 levels over a group of uniform random weights leave an rms error of
    # (range/15)/sqrt(12) against an rms weight of range/sqrt(12), i.e. ~1/15 relative
    reference = linear(x)
    assert ((layer(x) - reference).norm() / reference.norm()).item() < 0.1


def test_decoder_matrices_are_swapped_and_head_and_embeddings_kept(tiny_model):
    model = quantize_int4_weights(copy.deepcopy(tiny_model))
    swapped = [name for name, module in model.named_modules() if isinstance(module, Int4Linear)]
    assert len(swapped) == 7 * model.config.num_hidden_layers  # q k v o gate up down in each block
    assert isinstance(model.lm_head, torch.nn.Linear) and isinstance(model.model.embed_tokens, torch.nn.Embedding)


@pytest.mark.parametrize("convert", [quantize_int4_weights,
                                     lambda model: requantize(model, resolve_precision("int4", "cpu"))],
                         ids=["int4 matrices", "the int4 default with its decode head"])
def test_greedy_loop_equals_generate_on_the_int4_model(tiny_model, tiny_tokenizer, convert):
    model = convert(copy.deepcopy(tiny_model))
    ids = encode_prompt(tiny_tokenizer, "The capital of France is")
    ours = generate_text(model, tiny_tokenizer, ids, max_new_tokens=12).token_ids
    reference = model.generate(ids, do_sample=False, max_new_tokens=12, min_new_tokens=12)[0, ids.shape[1]:]
    assert ours == reference.tolist()


def test_int4_is_a_cpu_precision():
    precision = resolve_precision("int4", "cpu")
    assert precision.quantization == "int4" and "int4" in precision.label
    with pytest.raises(ModelLoadError, match="nf4"):
        resolve_precision("int4", "cuda")

"""The decode head: the int8 kernel computes with exactly the dequantized rows; DecodeHead's top candidates are
the fp32 head's logits and its tail is the int8 pass, up to FEW_ROWS rows (more rows: the fp32 product); the head
is swapped while the (tied) embeddings stay fp32 and shared; the int4 precision applies it (greedy decoding with
it equals transformers' generate: test_int4.py); the generation loop and the speculative race decode with the
int8 pass and nothing else does."""

from __future__ import annotations

import copy

import pytest
import torch

from playground.generation import encode_prompt, generate_text
from playground.runtime.head import (FEW_ROWS, DecodeHead, Int8RowLinear, decoding, int8_head_available,
                                    quantize_output_head, quantize_rows)
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


def test_the_candidates_are_the_fp32_heads_logits_and_the_tail_is_the_int8_pass():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 500, bias=False)
    head = DecodeHead(linear, candidates=16)
    x = torch.randn(FEW_ROWS, 96)
    with decoding():
        logits = head(x)
    int8, exact = head.int8(x).float(), (x.double() @ linear.weight.double().T)
    top = int8.topk(16, dim=-1).indices  # the candidates are the int8 pass's top 16
    rescored = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, top, True)
    torch.testing.assert_close(logits[rescored].double(), exact[rescored], rtol=1e-6, atol=1e-5)
    assert torch.equal(logits[~rescored], int8[~rescored])
    assert (int8[rescored].double() - exact[rescored]).abs().max() > 1e-3  # so the rescoring changed something
    assert torch.equal(logits.argmax(-1), exact.argmax(-1))
    # more rows than a decoding step or a speculative check, or any forward outside a decoding loop (an analysis
    # comparing two distributions): the fp32 product, exactly
    many = torch.randn(2, FEW_ROWS, 96)
    with decoding():
        assert torch.equal(head(many), linear(many))
    assert torch.equal(head(x), linear(x))


def test_head_is_swapped_and_the_tied_embeddings_stay_fp32_and_shared(tiny_model):
    model = copy.deepcopy(tiny_model)
    embeddings = model.get_input_embeddings().weight.detach().clone()
    quantize_output_head(model)
    assert isinstance(model.lm_head, DecodeHead) and model.get_output_embeddings() is model.lm_head
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert torch.equal(model.get_input_embeddings().weight, embeddings)
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.get_input_embeddings().weight


@pytest.mark.skipif(not int4_available(), reason="this torch build has no CPU int4 kernel")
def test_the_int4_default_decodes_with_the_decode_head(tiny_model):
    precision = resolve_precision("int4", "cpu")
    model = requantize(copy.deepcopy(tiny_model), precision)
    assert isinstance(model.lm_head, DecodeHead) and "int8 head, top 64 logits in fp32" in precision.label


def test_the_generation_loop_and_the_speculative_race_decode_with_the_int8_pass_and_an_analysis_does_not(
        tiny_model, tiny_tokenizer, monkeypatch):
    from playground.drafts import CachedModel
    from playground.runtime import head as head_module

    model = quantize_output_head(copy.deepcopy(tiny_model))
    passes = []
    int8_forward = Int8RowLinear.forward
    monkeypatch.setattr(Int8RowLinear, "forward", lambda self, x: passes.append(x.shape[0]) or int8_forward(self, x))
    ids = encode_prompt(tiny_tokenizer, "The capital of France is")
    generate_text(model, tiny_tokenizer, ids, max_new_tokens=4)
    assert passes == [1, 1, 1, 1]  # the prefill's last position and three steps
    passes.clear()
    CachedModel(model, lock=None).feed(ids[0].tolist(), keep=3)  # a speculative check of 3 rows
    assert passes == [3]
    passes.clear()
    with torch.inference_mode():
        model(ids, logits_to_keep=1)  # one row, but not a decoding step
    assert passes == [] and not head_module._DECODING.get()


def test_one_visitors_decoding_never_changes_another_visitors_analysis():
    """Gradio runs each visitor's event in its own worker thread: while one is inside a decoding step, a forward
    in another thread still gets the exact fp32 head (`decoding` is per thread, not a flag on the shared model)."""
    import threading

    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 500, bias=False)
    head, x = DecodeHead(linear), torch.randn(1, 96)
    inside, done = threading.Event(), threading.Event()

    def decoding_visitor() -> None:
        with decoding():
            inside.set()
            done.wait(10)

    visitor = threading.Thread(target=decoding_visitor)
    visitor.start()
    assert inside.wait(10)
    try:
        assert torch.equal(head(x), linear(x))  # this thread's analysis, while the other one decodes
    finally:
        done.set()
        visitor.join()

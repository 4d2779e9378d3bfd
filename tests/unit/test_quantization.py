"""Model & quantization compute, checked against the weights, torch.ao, bitsandbytes and float64 math."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from playground import quantization as q
from playground.runtime.precision import quantize_dynamic_int8


def _tiny_config(**overrides):
    from transformers import LlamaConfig

    base = dict(vocab_size=120, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, tie_word_embeddings=True)
    return LlamaConfig(**{**base, **overrides})


@pytest.mark.parametrize("overrides", [{}, {"tie_word_embeddings": False}, {"attention_bias": True},
                                       {"num_key_value_heads": 4}, {"head_dim": 16}])
def test_breakdown_from_config_equals_the_weights(overrides):
    from transformers import LlamaForCausalLM

    config = _tiny_config(**overrides)
    model = LlamaForCausalLM(config)
    derived = {row.component: row.parameters for row in q.parameter_breakdown(config)}
    assert derived == q.measured_breakdown(model)
    assert sum(derived.values()) == model.num_parameters()


def test_architecture_summary_reads_the_config(tiny_model):
    summary = q.architecture_summary(tiny_model.config)
    assert (summary.layers, summary.attention_heads, summary.kv_heads, summary.head_dim) == (2, 4, 2, 8)
    assert summary.norm == "RMSNorm" and summary.tied_embeddings


def test_quality_against_itself_is_perfect():
    torch.manual_seed(0)
    logits = torch.randn(10, 50)
    ids = torch.randint(0, 50, (10,))
    report = q.quality_vs_reference(logits, logits.clone(), ids)
    assert report.kl_mean == pytest.approx(0.0, abs=1e-12) and report.top1_agreement == 1.0
    assert report.perplexity == pytest.approx(report.reference_perplexity)


def test_quality_matches_a_float64_recomputation():
    torch.manual_seed(1)
    reference, candidate = torch.randn(7, 30), torch.randn(7, 30)
    ids = torch.randint(0, 30, (7,))
    report = q.quality_vs_reference(reference, candidate, ids)
    p = torch.softmax(reference.double(), -1)
    c = torch.softmax(candidate.double(), -1)
    kl = [sum(float(p[i, v]) * math.log(float(p[i, v]) / float(c[i, v])) for v in range(30)) for i in range(7)]
    assert report.kl_mean == pytest.approx(sum(kl) / 7, rel=1e-9)
    expected_ppl = torch.exp(torch.nn.functional.cross_entropy(candidate[:-1].double(), ids[1:]))
    assert report.perplexity == pytest.approx(float(expected_ppl), rel=1e-9)
    agreement = float((reference.argmax(-1) == candidate.argmax(-1)).double().mean())
    assert report.top1_agreement == agreement


def test_int8_view_equals_what_torch_ao_stores(tiny_model):
    quantized = quantize_dynamic_int8(copy.deepcopy(tiny_model))
    weight = tiny_model.model.layers[1].mlp.down_proj.weight
    stored = quantized.model.layers[1].mlp.down_proj.weight()
    dequantized, scale = q.int8_per_tensor(weight.detach())
    assert torch.equal(dequantized, stored.dequantize())
    assert scale == pytest.approx(stored.q_scale())


def test_nf4_codes_and_levels_reconstruct_the_dequantized_weights():
    torch.manual_seed(2)
    weight = torch.randn(16, 128) * 0.05
    view = q.weight_quantization_view("w", weight, blocksize=64)
    assert view.nf4_levels.shape == (16,) and view.nf4_codes.max() <= 15
    blocks = weight.reshape(-1, 64)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    rebuilt = (view.nf4_levels[view.nf4_codes].reshape(-1, 64) * absmax).reshape(-1)
    torch.testing.assert_close(rebuilt, view.nf4_dequantized, atol=2e-3 * float(absmax.max()), rtol=0)
    assert view.nf4_mean_abs_error > view.int8_mean_abs_error > 0  # 16 levels lose more than 256


def test_kv_cache_formula_for_smollm2():
    # 2 (K and V) x 30 layers x 3 KV heads x 64 dims x 8192 tokens x 2 bytes
    assert q.kv_cache_bytes(30, 3, 64, 8192, 1, 2.0) == 2 * 30 * 3 * 64 * 8192 * 2


def test_memory_fit_table_answers_the_classic_questions():
    rows = {(row["model"], row["precision"]): row for row in q.memory_fit_table(4096, 24.0)}
    assert rows[("8B", "nf4")]["fits"] and not rows[("8B", "fp32")]["fits"]
    assert not rows[("70B", "nf4")]["fits"]
    assert rows[("70B", "fp16/bf16")]["weights_gb"] == pytest.approx(70.6e9 * 2 * 1.1 / 1024**3)
    for model in ("1B", "8B", "70B"):
        totals = [rows[(model, p)]["total_gb"] for p in q.BITS_PER_WEIGHT]
        assert totals == sorted(totals, reverse=True)
    with pytest.raises(ValueError):
        q.memory_fit_table(0, 24.0)


def test_run_precision_and_rows(tiny_model, tiny_tokenizer):
    eval_ids = tiny_tokenizer("The capital of France is Paris.", return_tensors="pt")["input_ids"]
    prompt = tiny_tokenizer("Attention", return_tensors="pt")["input_ids"]
    run = q.run_precision(tiny_model, tiny_tokenizer, eval_ids, prompt, new_tokens=6)
    assert run.generated_tokens == 6 and run.logits.shape == (eval_ids.shape[1], len(tiny_tokenizer))
    int8 = quantize_dynamic_int8(copy.deepcopy(tiny_model))
    other = q.run_precision(int8, tiny_tokenizer, eval_ids, prompt, new_tokens=6)
    status = {"precision": "p", "memory_mb": 1.0, "load_seconds": 0.1}
    rows = q.precision_rows([("none", status, run), ("int8", status, other)], eval_ids)
    assert rows[0]["kl_mean"] == pytest.approx(0.0, abs=1e-12) and rows[0]["top1_agreement"] == 1.0
    assert rows[1]["kl_mean"] > 0

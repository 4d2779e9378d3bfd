"""What the Sampling tab computes, checked against independent references: transformers' processors
applied one by one, float64 re-computations, brute-force nucleus sizes, scipy's entropy, and
`model.generate` / `generate_tokens` for traces (tiny random Llama)."""

from __future__ import annotations

import json

import pytest
import torch

from playground.generation import encode_prompt, generate_text, generate_tokens
from playground.sampling import (
    MAX_TRACE_TOKENS,
    STAGE_NAMES,
    GenerationTrace,
    PromptLogitsCache,
    SamplingSettings,
    SamplingSettingsError,
    branch_trace,
    encode_capped_prompt,
    final_probabilities,
    next_token_view,
    sample_histogram,
    sample_next_token,
    stage_probabilities,
    temperature_sweep,
    trace_generation,
)
from reference import transformers_stage_logits

# Every filter cuts something on the fixture logits (kept: 300 -> top-k 40 -> top-p 22 -> min-p 11).
SETTINGS = SamplingSettings(temperature=1.5, top_k=40, top_p=0.8, min_p=0.2, repetition_penalty=1.3, seed=11)


@pytest.fixture(scope="module")
def logits(tiny_tokenizer):
    return torch.randn(len(tiny_tokenizer), generator=torch.Generator().manual_seed(0)) * 2.5  # [vocab]


@pytest.fixture(scope="module")
def history(logits):
    """Earlier tokens: the raw top 3 (so the penalty reorders the top) and a repeated one."""
    return torch.cat([torch.topk(logits, 3).indices, torch.tensor([17, 17])])


@pytest.fixture(scope="module")
def prompt_ids(tiny_tokenizer):
    return encode_prompt(tiny_tokenizer, "The capital of France is", chat=False)


def reference_stages(logits: torch.Tensor, settings: SamplingSettings, history: torch.Tensor) -> dict[str, torch.Tensor]:
    """transformers' processors applied one at a time: the logits after each stage, [vocab]."""
    return transformers_stage_logits(logits, history, settings)


def test_stage_probabilities_are_the_softmax_of_each_transformers_stage(logits, history):
    probs, cut = stage_probabilities(logits, SETTINGS, history)
    reference = reference_stages(logits, SETTINGS, history)
    for index, name in enumerate(STAGE_NAMES):
        torch.testing.assert_close(probs[index], reference[name].softmax(-1), atol=1e-6, rtol=1e-6)
        # A token is cut by this stage exactly when the reference turns it to -inf here.
        newly_cut = torch.isinf(reference[name]) & (torch.isfinite(reference[STAGE_NAMES[index - 1]]) if index
                                                    else torch.ones_like(cut, dtype=torch.bool))
        assert torch.equal(cut == index, newly_cut), name
    assert torch.equal(cut < 0, torch.isfinite(reference["min_p"]))
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(STAGE_NAMES)))


def test_next_token_view_numbers_match_float64_recomputations(logits, history, tiny_tokenizer):
    from scipy.stats import entropy

    view = next_token_view(logits, SETTINGS, tiny_tokenizer, history, top_n=12)
    reference = reference_stages(logits, SETTINGS, history)
    kept = [view.kept[name] for name in ("temperature", "top_k", "top_p", "min_p")]
    assert kept == sorted(set(kept), reverse=True)  # every filter cuts here, so each count is checked
    for name in STAGE_NAMES:
        finite = torch.isfinite(reference[name])
        assert view.kept[name] == int(finite.sum())
        expected_entropy = entropy(reference[name].double().softmax(-1).numpy(), base=2)
        assert view.entropy_bits[name] == pytest.approx(expected_entropy, abs=1e-5)
    # Brute-force nucleus on the top-k-filtered distribution: the smallest prefix (by probability)
    # whose mass reaches p.
    after_top_k = reference["top_k"].double().softmax(-1).sort(descending=True).values
    nucleus = int((after_top_k.cumsum(0) < SETTINGS.top_p).sum()) + 1
    assert view.nucleus_size == nucleus
    survivors = torch.isfinite(reference["min_p"])
    scaled = (reference["repetition_penalty"].double() / SETTINGS.temperature).softmax(-1)
    assert view.mass_kept == pytest.approx(float(scaled[survivors].sum()), abs=1e-6)
    for token in view.tokens:
        assert token.probs["min_p"] == pytest.approx(float(reference["min_p"].softmax(-1)[token.token_id]), abs=1e-6)
        assert token.rank == int((logits > logits[token.token_id]).sum()) + 1
        assert (token.cut_by is None) == bool(survivors[token.token_id])
        assert token.text == tiny_tokenizer.decode([token.token_id])


def test_view_lists_the_top_tokens_in_penalised_order_and_the_ones_the_penalty_demoted(logits, history, tiny_tokenizer):
    view = next_token_view(logits, SETTINGS, tiny_tokenizer, history, top_n=10)
    ids = [token.token_id for token in view.tokens]
    penalised = reference_stages(logits, SETTINGS, history)["repetition_penalty"]
    assert set(torch.topk(penalised, 10).indices.tolist()) <= set(ids)
    assert set(torch.topk(logits, 10).indices.tolist()) <= set(ids)
    shown = [token.probs["repetition_penalty"] for token in view.tokens]
    assert shown == sorted(shown, reverse=True)


def test_the_drawn_token_is_what_seeded_generation_picks_first(tiny_model, tiny_tokenizer, prompt_ids):
    cache = PromptLogitsCache()
    cached = cache.get("tiny", tiny_model, tiny_tokenizer, "The capital of France is", False)
    for seed in range(5):
        settings = SamplingSettings(temperature=1.5, top_p=0.95, seed=seed)
        view = next_token_view(cached.logits, settings, tiny_tokenizer, cached.input_ids[0])
        first = next(generate_tokens(tiny_model, tiny_tokenizer, prompt_ids, settings, 1))
        assert view.chosen.token_id == first.token_id
        assert view.chosen.token_id == sample_next_token(cached.logits, settings, settings.generator(), prompt_ids[0])


def test_greedy_view_is_a_one_hot_and_says_why(logits, tiny_tokenizer):
    view = next_token_view(logits, SamplingSettings(temperature=0.0, top_k=5, seed=1), tiny_tokenizer)
    top = int(logits.argmax())
    assert view.chosen.token_id == top and view.chosen.final_prob == 1.0
    assert view.kept["temperature"] == 1 and view.entropy_bits["min_p"] == 0.0
    for token in view.tokens:
        assert token.cut_by == (None if token.token_id == top else "temperature")
    assert any("greedy" in note for note in view.notes)


def test_top_k_larger_than_the_vocabulary_is_clamped_with_a_note(logits, tiny_tokenizer):
    vocab = logits.shape[-1]
    view = next_token_view(logits, SamplingSettings(top_k=vocab + 1000), tiny_tokenizer)
    assert view.kept["top_k"] == vocab and "top_k" not in view.active_stages
    assert any(f"clamped to {vocab}" in note for note in view.notes)


def test_tokens_the_model_itself_masks_count_as_cut_before_any_stage(logits, tiny_tokenizer):
    masked = logits.clone()
    masked[:7] = float("-inf")
    view = next_token_view(masked, SamplingSettings(), tiny_tokenizer)
    assert view.kept["raw"] == logits.shape[-1] - 7


@pytest.mark.parametrize("top_n", [0, -1, 2.5])
def test_bad_top_n_is_rejected(logits, tiny_tokenizer, top_n):
    with pytest.raises(SamplingSettingsError, match="number of tokens to show"):
        next_token_view(logits, SamplingSettings(), tiny_tokenizer, top_n=top_n)


def test_temperature_sweep_panels_are_the_pipeline_at_each_temperature(logits, history, tiny_tokenizer):
    settings = SamplingSettings(top_p=0.9, repetition_penalty=1.2)
    sweep = temperature_sweep(logits, settings, tiny_tokenizer, history, temperatures=(0.0, 0.5, 1.0, 2.0), top_n=6)
    assert [panel.temperature for panel in sweep.panels] == [0.0, 0.5, 1.0, 2.0]
    for panel in sweep.panels:
        final = final_probabilities(logits, SamplingSettings(temperature=panel.temperature, top_p=0.9,
                                                             repetition_penalty=1.2), history)
        torch.testing.assert_close(torch.tensor(panel.probs), final[list(sweep.token_ids)])
        assert panel.other_mass == pytest.approx(1 - sum(panel.probs), abs=1e-5)
    assert sweep.panels[0].entropy_bits == 0.0 and sweep.panels[0].kept == 1
    no_filter = temperature_sweep(logits, SamplingSettings(), tiny_tokenizer, temperatures=(0.25, 0.5, 1.0, 2.0))
    entropies = [panel.entropy_bits for panel in no_filter.panels]
    assert entropies == sorted(entropies)  # without filters, hotter is always flatter


def test_sample_histogram_counts_and_seed(logits, tiny_tokenizer):
    probs = final_probabilities(logits, SamplingSettings(temperature=0.8, top_k=30))
    first = sample_histogram(probs, 5000, tiny_tokenizer, seed=3, top_n=10)
    assert first == sample_histogram(probs, 5000, tiny_tokenizer, seed=3, top_n=10)
    assert first != sample_histogram(probs, 5000, tiny_tokenizer, seed=4, top_n=10)
    assert sum(first.counts) + first.other_count == 5000
    assert list(first.token_ids) == torch.topk(probs, 10).indices.tolist()
    assert first.distinct_drawn <= 30 and first.chi_square.p_value > 1e-3


def test_prompt_logits_are_cached_per_model_prompt_and_chat_flag(tiny_model, tiny_tokenizer, prompt_ids):
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_model
            self.config = tiny_model.config  # a causal LM's config: the decoding step sizes its KV cache from it

        def forward(self, **kwargs):
            calls.append(kwargs["input_ids"].shape)
            return self.inner(**kwargs)

    model = Counting()
    cache = PromptLogitsCache(capacity=2)
    first = cache.get("tiny", model, tiny_tokenizer, "The capital of France is", False)
    again = cache.get("tiny", model, tiny_tokenizer, "The capital of France is", False)
    assert again is first and len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    with torch.inference_mode():
        torch.testing.assert_close(first.logits, tiny_model(prompt_ids).logits[0, -1], atol=1e-5, rtol=1e-5)
    chat = cache.get("tiny", model, tiny_tokenizer, "The capital of France is", True)
    assert len(calls) == 2 and chat.input_ids.shape[1] > first.input_ids.shape[1]
    cache.get("other-model", model, tiny_tokenizer, "The capital of France is", False)
    cache.get("tiny", model, tiny_tokenizer, "The capital of France is", False)  # evicted (capacity 2)
    assert len(calls) == 4


def test_long_prompts_keep_their_last_tokens_with_a_note(tiny_tokenizer):
    text = "Attention is all you need. " * 100
    ids, notes = encode_capped_prompt(tiny_tokenizer, text, chat=False, max_tokens=50)
    full = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == full[-50:]
    assert notes and f"{len(full)} tokens long" in notes[0] and "last 50" in notes[0]
    short, short_notes = encode_capped_prompt(tiny_tokenizer, "Hello", chat=True)
    assert short_notes == () and tiny_tokenizer.decode(short[0]).startswith("<|im_start|>user\nHello")
    with pytest.raises(SamplingSettingsError, match="prompt is empty"):
        encode_capped_prompt(tiny_tokenizer, "   \n", chat=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_trace_equals_transformers_generate(tiny_tokenizer, prompt_ids, seed):
    from tiny import make_tiny_llama

    model = make_tiny_llama(len(tiny_tokenizer), seed=seed)
    trace = trace_generation(model, tiny_tokenizer, prompt_ids, SamplingSettings(temperature=0.0), 20)
    reference = model.generate(prompt_ids, do_sample=False, max_new_tokens=20, min_new_tokens=20,
                               pad_token_id=tiny_tokenizer.pad_token_id)
    assert trace.token_ids == reference[0, prompt_ids.shape[1]:].tolist()
    assert all(step.prob == 1.0 and step.rank == 1 for step in trace.steps)
    assert trace.finish_reason == "length" and trace.steps[-1].finish_reason == "length"


def test_sampled_trace_is_generation_with_the_probabilities_it_was_drawn_from(tiny_model, tiny_tokenizer, prompt_ids):
    settings = SamplingSettings(temperature=1.5, top_p=0.9, repetition_penalty=3.0, seed=2)  # a strong penalty
    trace = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, settings, 15)
    assert trace.token_ids == generate_text(tiny_model, tiny_tokenizer, prompt_ids, settings, 15).token_ids
    ids = torch.cat([prompt_ids, torch.tensor([trace.token_ids])], dim=1)
    with torch.inference_mode():
        full = tiny_model(ids).logits[0]  # [n, vocab]: row i predicts token i + 1
    for step in trace.steps:
        position = prompt_ids.shape[1] - 1 + step.index
        reference = reference_stages(full[position], settings, ids[0, : position + 1])["min_p"].softmax(-1)
        assert step.prob == pytest.approx(float(reference[step.token_id]), abs=1e-4)
        assert step.prob > 0  # never a token the pipeline had cut
        for alt in step.alternatives:  # the penalty saw prompt + every earlier generated token
            assert alt.prob == pytest.approx(float(reference[alt.token_id]), abs=1e-4)
        alternatives = [alt.prob for alt in step.alternatives]
        assert alternatives == sorted(alternatives, reverse=True)
    # Step texts add up to the output (a last token that is half a character shows in the text only).
    assert trace.text.startswith("".join(step.text for step in trace.steps))


def test_traces_replay_with_the_same_seed(tiny_model, tiny_tokenizer, prompt_ids):
    run = lambda seed: trace_generation(tiny_model, tiny_tokenizer, prompt_ids,
                                        SamplingSettings(temperature=1.2, seed=seed), 12).token_ids
    assert run(5) == run(5) and run(5) != run(6)


def test_trace_stops_at_eos_and_leaves_it_out_of_the_text(tiny_model, tiny_tokenizer, prompt_ids):
    greedy = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, SamplingSettings(temperature=0.0), 12)
    eos = greedy.token_ids[4]
    stopped = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, SamplingSettings(temperature=0.0), 12, (eos,))
    first = greedy.token_ids.index(eos)
    assert stopped.token_ids == greedy.token_ids[: first + 1] and stopped.finish_reason == "eos"
    assert stopped.text == tiny_tokenizer.decode(greedy.token_ids[:first])


@pytest.mark.parametrize("count", [0, MAX_TRACE_TOKENS + 1, 3.5])
def test_trace_length_is_bounded(tiny_model, tiny_tokenizer, prompt_ids, count):
    with pytest.raises(SamplingSettingsError, match="max_new_tokens must be a whole number"):
        trace_generation(tiny_model, tiny_tokenizer, prompt_ids, SamplingSettings(), count)


def test_forcing_a_token_rewinds_substitutes_and_continues_through_the_same_loop(tiny_model, tiny_tokenizer, prompt_ids):
    trace = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, SETTINGS, 16)
    position = 5
    forced = next(alt for alt in trace.steps[position].alternatives if alt.token_id != trace.token_ids[position])
    branch = branch_trace(tiny_model, tiny_tokenizer, trace, position, forced.token_id)
    assert branch.steps[:position] == trace.steps[:position]
    step = branch.steps[position]
    assert step.forced and step.token_id == forced.token_id and step.prob == forced.prob
    assert len(branch.steps) == 16 and not any(s.forced for s in branch.steps[position + 1:])
    # The continuation is exactly what generate_tokens produces after prompt + kept prefix + forced token.
    prefix = torch.tensor([prompt_ids[0].tolist() + branch.token_ids[: position + 1]])
    expected = generate_text(tiny_model, tiny_tokenizer, prefix, SETTINGS, 16 - position - 1).token_ids
    assert branch.token_ids[position + 1:] == expected
    assert [s.index for s in branch.steps] == list(range(16))


def test_forcing_needs_a_listed_alternative_and_a_real_step(tiny_model, tiny_tokenizer, prompt_ids):
    trace = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, SETTINGS, 6)
    listed = {alt.token_id for alt in trace.steps[2].alternatives}
    outsider = next(i for i in range(len(tiny_tokenizer)) if i not in listed)
    with pytest.raises(SamplingSettingsError, match="not one of step 2's alternatives"):
        branch_trace(tiny_model, tiny_tokenizer, trace, 2, outsider)
    with pytest.raises(SamplingSettingsError, match=r"position must be in 0\.\.5"):
        branch_trace(tiny_model, tiny_tokenizer, trace, 6, outsider)


def test_forcing_eos_or_the_last_step_ends_the_branch_there(tiny_model, tiny_tokenizer, prompt_ids):
    trace = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, SETTINGS, 6)
    last = trace.steps[-1].alternatives[1].token_id
    ended = branch_trace(tiny_model, tiny_tokenizer, trace, 5, last)
    assert len(ended.steps) == 6 and ended.finish_reason == "length"
    eos = trace.steps[1].alternatives[1].token_id
    stopped = branch_trace(tiny_model, tiny_tokenizer, trace, 1, eos, eos_token_ids=(eos,))
    assert len(stopped.steps) == 2 and stopped.finish_reason == "eos"


def test_traces_survive_a_json_round_trip(tiny_model, tiny_tokenizer, prompt_ids):
    trace = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, SETTINGS, 5, model_key="tiny")
    assert GenerationTrace.from_dict(json.loads(json.dumps(trace.to_dict()))) == trace
    with pytest.raises(SamplingSettingsError, match="not a generation trace"):
        GenerationTrace.from_dict({"steps": []})


def _step_from_scratch(logits, token_id, text, index, settings, history, tokenizer, top_n=10, finish_reason=None):
    """A trace step computed the plain way (a tensor index per token, ranks over the whole vocabulary, the
    entropy of the final distribution summed): what every step of a trace must equal exactly."""
    from playground.sampling import Alternative, TraceStep
    from playground.sampling.views import entropy_bits, raw_ranks, token_text

    final = final_probabilities(logits, settings, history)
    raw = logits.float().softmax(dim=-1)
    ids = set(torch.topk(final, top_n).indices.tolist()) | set(torch.topk(raw, top_n).indices.tolist())
    shown = sorted(ids, key=lambda i: (-float(final[i]), -float(raw[i]), i))[:top_n]
    ranks = dict(zip(shown + [token_id], raw_ranks(logits, shown + [token_id])))
    alternatives = tuple(Alternative(i, token_text(tokenizer, i), float(final[i]), float(raw[i]), ranks[i])
                         for i in shown)
    return TraceStep(index, token_id, text, float(final[token_id]), float(raw[token_id]), ranks[token_id],
                     entropy_bits(final), alternatives, finish_reason=finish_reason)


@pytest.mark.parametrize("settings", [SamplingSettings(temperature=0.0), SamplingSettings(temperature=0.0,
                                      repetition_penalty=2.0), SETTINGS,
                                      SamplingSettings(temperature=2.5, repetition_penalty=4.0, seed=1)],
                         ids=["greedy", "greedy-penalty", "every-filter", "hot-penalty"])
def test_every_trace_step_equals_the_step_computed_from_scratch(tiny_model, tiny_tokenizer, prompt_ids, settings):
    """The trace records only what it needs per step (values gathered at once, ranks among the top 64 logits,
    token texts decoded once per trace); its steps must equal the plain computation exactly, and its tokens the
    bare loop's."""
    trace = trace_generation(tiny_model, tiny_tokenizer, prompt_ids, settings, 16)
    steps = list(generate_tokens(tiny_model, tiny_tokenizer, prompt_ids, settings, 16, keep_logits=True))
    assert trace.token_ids == [step.token_id for step in steps]
    history = prompt_ids[0].tolist()
    for step, generated in zip(trace.steps, steps):
        assert step == _step_from_scratch(generated.logits, generated.token_id, generated.text, generated.index,
                                          settings, torch.tensor(history), tiny_tokenizer,
                                          finish_reason=generated.finish_reason)
        history.append(generated.token_id)
    # A sampled token far down the list (outside the top 64) takes the rank over the whole vocabulary.
    assert any(step.rank > 64 for step in trace.steps) or settings.temperature < 2


def test_raw_ranks_inside_and_outside_the_top_64_with_ties():
    from playground.sampling.traces import _raw_ranks
    from playground.sampling.views import raw_ranks

    logits = torch.randn(5000, generator=torch.Generator().manual_seed(3)).round(decimals=1)  # many ties
    order = torch.argsort(logits, descending=True).tolist()
    for ids in ([order[0], order[5], order[63], order[64]], [order[1], order[62]], order[:11], [order[4000]]):
        assert _raw_ranks(logits, ids) == raw_ranks(logits, ids)

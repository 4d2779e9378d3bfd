"""Exact speculative sampling on tiny random models: greedy equality (ours and transformers' assisted
generation), the target's distribution (chi-square over many seeds), KV-cache rollback, the records."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from scipy import stats as scipy_stats

from playground.drafts import CachedModel, ModelDraft, PromptLookupDraft, SpeculativeError
from playground.generation import encode_prompt, generate_text
from playground.sampling import SamplingSettings, final_probabilities, sample_from
from playground.speculative import (
    MAX_K,
    MAX_NEW_TOKENS,
    MAX_PROMPT_TOKENS,
    PlainRun,
    acceptance_stats,
    check_request,
    collect_plain,
    collect_run,
    expected_tokens_per_step,
    plain_decode_steps,
    predicted_speedup,
    predicted_speedup_for_steps,
    prepare_prompt,
    residual_distribution,
    speculative_generate,
    speculative_steps,
    speed_report,
)
from tiny import make_tiny_llama

GREEDY = SamplingSettings(temperature=0.0)


def tiny_lm(vocab: int, seed: int, layers: int = 2):
    """make_tiny_llama with its own random output head and its embeddings back at init scale. The
    tiny model's tied, scaled-up embeddings swamp the layers, so every seed mostly predicts "repeat
    the last token"; this way each seed (and each skipped layer) changes the distribution, which
    has logit std ~2."""
    model = make_tiny_llama(vocab, seed=seed, num_hidden_layers=layers)
    generator = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn(vocab, 32, generator=generator) * 0.35)
        model.model.embed_tokens.weight.div_(20)
    return model


@pytest.fixture(scope="module")
def vocab(tiny_tokenizer):
    return len(tiny_tokenizer)


@pytest.fixture(scope="module")
def target(vocab):
    return tiny_lm(vocab, seed=0, layers=4)


@pytest.fixture(scope="module")
def other(vocab):
    return tiny_lm(vocab, seed=1)


@pytest.fixture(scope="module")
def prompt_ids(tiny_tokenizer):
    return encode_prompt(tiny_tokenizer, "The capital of France is Paris. The capital of", chat=False)[0].tolist()


def make_draft(kind: str, target, other, vocab):
    return {
        "other model": lambda: ModelDraft(other, label="other"),
        "same model": lambda: ModelDraft(target, label="same"),
        "layer skip": lambda: ModelDraft(target, label="skip", skip_layers=[2, 3]),
        "prompt lookup": lambda: PromptLookupDraft(vocab),
    }[kind]()


DRAFT_KINDS = ["other model", "same model", "layer skip", "prompt lookup"]


def run(target, draft, tokenizer, prompt_ids, settings=GREEDY, k=4, max_new_tokens=32, **kwargs):
    return speculative_generate(CachedModel(target), draft, tokenizer, prompt_ids, settings, k, max_new_tokens,
                                **kwargs)


# ---------------------------------------------------------------------------------------------
# Greedy: token for token the target's greedy output
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DRAFT_KINDS)
@pytest.mark.parametrize("k", [1, 3, 7])
def test_greedy_output_is_the_targets_greedy_output(kind, k, target, other, vocab, tiny_tokenizer, prompt_ids):
    reference = generate_text(target, tiny_tokenizer, torch.tensor([prompt_ids]), GREEDY, 32).token_ids
    result = run(target, make_draft(kind, target, other, vocab), tiny_tokenizer, prompt_ids, k=k)
    assert list(result.token_ids) == reference
    assert result.finish_reason == "length" and len(result.token_ids) == 32


def test_the_drafts_really_disagree_with_the_target(target, other, tiny_tokenizer, prompt_ids, vocab):
    # Otherwise the greedy tests above would pass with a draft that is never rejected.
    for kind in ("other model", "layer skip", "prompt lookup"):
        stats = acceptance_stats(run(target, make_draft(kind, target, other, vocab), tiny_tokenizer, prompt_ids))
        assert stats.checked > 0 and stats.accepted < stats.checked, kind


def test_greedy_equals_transformers_assisted_generation(target, other, tiny_tokenizer, prompt_ids):
    ids = torch.tensor([prompt_ids])
    pad = tiny_tokenizer.pad_token_id
    assisted = target.generate(ids, assistant_model=other, do_sample=False, max_new_tokens=24, min_new_tokens=24,
                               num_assistant_tokens=4, num_assistant_tokens_schedule="constant", pad_token_id=pad)
    lookup = target.generate(ids, prompt_lookup_num_tokens=4, do_sample=False, max_new_tokens=24, min_new_tokens=24,
                             pad_token_id=pad)
    ours_model = run(target, ModelDraft(other), tiny_tokenizer, prompt_ids, k=4, max_new_tokens=24)
    ours_lookup = run(target, PromptLookupDraft(len(tiny_tokenizer)), tiny_tokenizer, prompt_ids, k=4,
                      max_new_tokens=24)
    assert list(ours_model.token_ids) == assisted[0, len(prompt_ids):].tolist()
    assert list(ours_lookup.token_ids) == lookup[0, len(prompt_ids):].tolist()


def test_repetition_penalty_applies_to_both_models(target, other, tiny_tokenizer, prompt_ids):
    settings = SamplingSettings(temperature=0.0, repetition_penalty=1.6)
    reference = generate_text(target, tiny_tokenizer, torch.tensor([prompt_ids]), settings, 24).token_ids
    assert list(run(target, ModelDraft(other), tiny_tokenizer, prompt_ids, settings, 3, 24).token_ids) == reference


# ---------------------------------------------------------------------------------------------
# Sampling: the first token follows the target's distribution, not the draft's
# ---------------------------------------------------------------------------------------------


def chi_square_pvalue(samples: list[int], probs: torch.Tensor) -> float:
    """Pearson chi-square of sample counts against probs [vocab]; tokens expected < 5 times are pooled."""
    n = len(samples)
    counts = torch.bincount(torch.tensor(samples), minlength=probs.shape[0]).double()
    expected = probs.double() / probs.double().sum() * n  # float32 probs sum to 1 only within ~1e-7
    big = expected >= 5
    observed = counts[big].tolist() + [float(counts[~big].sum())]
    wanted = expected[big].tolist() + [float(expected[~big].sum())]
    if wanted[-1] < 5:  # too little pooled mass to be a bin of its own: join it to the previous bin
        pooled_observed, pooled_wanted = observed.pop(), wanted.pop()
        observed[-1] += pooled_observed
        wanted[-1] += pooled_wanted
    return float(scipy_stats.chisquare(observed, wanted).pvalue)


@pytest.mark.slow  # many seeded runs: ~1 minute each on 2 cores
@pytest.mark.parametrize("settings", [SamplingSettings(temperature=1.0),
                                      SamplingSettings(temperature=0.7, top_k=40, top_p=0.9)],
                         ids=["T=1", "T=0.7,top-k=40,top-p=0.9"])
def test_first_token_follows_the_target_not_the_draft(settings, target, other, tiny_tokenizer, prompt_ids):
    seeds = 1000
    with torch.inference_mode():
        p = final_probabilities(target(torch.tensor([prompt_ids])).logits[0, -1], settings)  # [vocab]
        q = final_probabilities(other(torch.tensor([prompt_ids])).logits[0, -1], settings)
    assert 0.5 * float((p - q).abs().sum()) > 0.3  # the two distributions really differ (total variation)
    draft = ModelDraft(other)
    cached_target = CachedModel(target)
    first_tokens = []
    for seed in range(seeds):
        seeded = dataclasses.replace(settings, seed=seed)
        # max_new_tokens = 2 makes the draft propose one token, so every first token passes the accept/resample.
        step = next(speculative_steps(cached_target, draft, tiny_tokenizer, prompt_ids, seeded, k=1, max_new_tokens=2))
        first_tokens.append(step.emitted[0])
    draft_alone = [int(sample_from(q, torch.Generator().manual_seed(seed))) for seed in range(seeds)]
    assert chi_square_pvalue(first_tokens, p) > 1e-3
    assert chi_square_pvalue(draft_alone, p) < 1e-9


# Later draft positions and the bonus token, on a hand-made pair: the target's and the draft's
# distributions depend only on the position of the token (the prompt is one token), so the
# token at position j of a step, whenever the step reaches j, must follow the target's row j,
# whatever happened before it (Leviathan et al. 2023, Theorem 1, applied position by position).
# Rows: the tokens at positions 1, 2, 3 (drafted, k = 3) and 4 (the bonus after three acceptances).
HAND_P = torch.tensor([[0.50, 0.20, 0.20, 0.10],
                       [0.10, 0.60, 0.20, 0.10],
                       [0.25, 0.05, 0.30, 0.40],
                       [0.05, 0.15, 0.50, 0.30]])
HAND_Q = torch.tensor([[0.10, 0.20, 0.30, 0.40],
                       [0.40, 0.20, 0.20, 0.20],
                       [0.40, 0.30, 0.20, 0.10]])
HAND_SEEDS = 6000  # ~2 s; each draft token is accepted with probability sum(min(p, q)) = 0.6


class PositionTarget:
    """A stand-in for CachedModel: the logits of the token at index t are log HAND_P[t - 1]."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    pending = CachedModel.pending  # the real rollback rule: it only reads self.ids and calls self.crop

    def feed(self, tokens, keep=1):
        self.ids.extend(tokens)
        end = len(self.ids)  # the fed token at index i predicts index i + 1
        return HAND_P[end - keep:end].log()  # [keep, vocab]

    def crop(self, length):
        del self.ids[length:]


class PositionDraft:
    """A draft whose token at index t is drawn from HAND_Q[t - 1], with the step's generator."""

    label = "hand-made"

    def propose(self, sequence, k, settings, generator, stop_ids):
        from playground.drafts import Proposal, draw_token

        rows = HAND_Q[len(sequence) - 1:len(sequence) - 1 + k]  # [k, vocab]
        tokens = tuple(draw_token(row, settings, generator) for row in rows)
        return Proposal(tokens, rows, 0.0, len(tokens))


class DecodeStub:
    def decode(self, ids, skip_special_tokens=False):
        return "".join(f"<{i}>" for i in ids)


def tokens_by_position(seeds: int = HAND_SEEDS) -> dict[int, list[int]]:
    """Position (1..4) -> the token each seeded step emitted there (when it got that far)."""
    by_position: dict[int, list[int]] = {1: [], 2: [], 3: [], 4: []}
    kinds = []
    for seed in range(seeds):
        settings = SamplingSettings(temperature=1.0, seed=seed)
        step = next(speculative_steps(PositionTarget(), PositionDraft(), DecodeStub(), [0], settings, k=3,
                                      max_new_tokens=8))
        assert len(step.drafted) == 3
        for position, token in enumerate(step.emitted, start=1):
            by_position[position].append(token)
        kinds.append(step.final_kind)
    assert kinds.count("bonus") == len(by_position[4]) > 0.15 * seeds  # every draft accepted ~0.6^3 of the time
    return by_position


def test_later_positions_and_the_bonus_token_follow_the_target():
    """Catches a residual or a p/q row used at the wrong position (the first-token test cannot see those)."""
    assert all(0.5 * float((p - q).abs().sum()) >= 0.4 for p, q in zip(HAND_P, HAND_Q))  # they really differ
    by_position = tokens_by_position()
    for position, tokens in by_position.items():
        assert len(tokens) > 1000, position
        assert chi_square_pvalue(tokens, HAND_P[position - 1]) > 1e-3, f"position {position}"
    # Power: with these sample sizes the test tells the right row from its neighbours and the draft's.
    for position in (2, 3, 4):
        tokens = by_position[position]
        assert chi_square_pvalue(tokens, HAND_P[position - 2]) < 1e-9, f"position {position} vs row {position - 1}"
        if position <= 3:
            assert chi_square_pvalue(tokens, HAND_Q[position - 1]) < 1e-9, f"position {position} vs the draft"


@pytest.mark.parametrize("wrong_residual", [lambda p, q: q / q.sum(), lambda p, q: p / p.sum()],
                         ids=["the draft's q", "the target's p, nothing subtracted"])
def test_the_later_position_test_fails_with_a_wrong_residual(wrong_residual, monkeypatch):
    """The test above must be able to fail: with a residual other than normalize(max(0, p - q)), the
    tokens at positions 2 and 3 no longer follow the target and the chi-square rejects."""
    import playground.speculative as speculative

    monkeypatch.setattr(speculative, "residual_distribution", wrong_residual)
    by_position = tokens_by_position()
    for position in (1, 2, 3):
        assert chi_square_pvalue(by_position[position], HAND_P[position - 1]) < 1e-6, f"position {position}"


def test_a_draft_identical_to_the_target_accepts_everything(target, tiny_tokenizer, prompt_ids):
    result = run(target, ModelDraft(target), tiny_tokenizer, prompt_ids, SamplingSettings(temperature=1.0, seed=5),
                 k=4, max_new_tokens=30)
    stats = acceptance_stats(result)
    assert stats.checked == stats.drafted == stats.accepted > 0
    assert all(step.final_kind == "bonus" for step in result.steps)
    assert [len(step.emitted) for step in result.steps] == [5] * 6


def test_seeded_runs_replay_and_seeds_differ(target, other, tiny_tokenizer, prompt_ids):
    def tokens(seed):
        return run(target, ModelDraft(other), tiny_tokenizer, prompt_ids, SamplingSettings(seed=seed), 3, 20).token_ids

    assert tokens(11) == tokens(11)
    assert tokens(11) != tokens(12)


# ---------------------------------------------------------------------------------------------
# KV caches and the step records
# ---------------------------------------------------------------------------------------------


def fresh_cache(model, ids):
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
    return cache


def assert_same_cache(cache, reference):
    assert cache.get_seq_length() == reference.get_seq_length()
    for layer, expected in zip(cache.layers, reference.layers):
        torch.testing.assert_close(layer.keys, expected.keys, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(layer.values, expected.values, atol=1e-4, rtol=1e-4)


def test_after_rejections_both_caches_equal_a_fresh_forward_of_the_accepted_prefix(target, other, tiny_tokenizer,
                                                                                    prompt_ids):
    target_session = CachedModel(target)
    draft = ModelDraft(other)
    steps = []
    for step in speculative_steps(target_session, draft, tiny_tokenizer, prompt_ids, SamplingSettings(seed=2), 4, 40):
        steps.append(step)
        sequence = prompt_ids + [token for s in steps for token in s.emitted]
        # The target cached every token but the last one emitted (which it has not run yet).
        assert target_session.ids == sequence[:-1]
        assert_same_cache(target_session.cache, fresh_cache(target, sequence[:-1]))
    assert any(step.final_kind == "resampled" for step in steps)
    # The draft's cache, rolled back to the text on its next proposal, equals a fresh forward too.
    sequence = prompt_ids + [token for s in steps for token in s.emitted]
    draft.propose(sequence, 1, GREEDY, None, frozenset())
    assert draft.session.ids == sequence
    assert_same_cache(draft.session.cache, fresh_cache(other, sequence))


def test_records_hold_the_true_probabilities_and_decisions(target, other, tiny_tokenizer, prompt_ids):
    settings = SamplingSettings(temperature=0.9, seed=4)
    result = run(target, ModelDraft(other), tiny_tokenizer, prompt_ids, settings, k=3, max_new_tokens=24)
    sequence = list(prompt_ids)
    with torch.inference_mode():
        for step in result.steps:
            drafted = [token.token_id for token in step.drafted]
            ids = torch.tensor([sequence + drafted])
            # Independent reference: full forwards without any cache, float64 probabilities.
            p_rows = target(ids).logits[0, len(sequence) - 1:].double()
            q_rows = other(ids).logits[0, len(sequence) - 1:].double()
            outcomes = [token.outcome for token in step.drafted]
            assert outcomes == ["accepted"] * step.accepted + (
                ["rejected"] + ["unchecked"] * (len(outcomes) - step.accepted - 1) if step.accepted < len(outcomes) else [])
            for token in step.drafted:
                i = token.position - 1
                p = final_probabilities(p_rows[i].float(), settings)[token.token_id]
                q = final_probabilities(q_rows[i].float(), settings)[token.token_id]
                assert token.p == pytest.approx(float(p), abs=1e-4)
                assert token.q == pytest.approx(float(q), abs=1e-4)
                assert token.accept_probability == pytest.approx(min(1.0, token.p / token.q))
                if token.outcome != "unchecked":
                    assert (token.draw < token.accept_probability) == (token.outcome == "accepted")
            assert step.emitted == tuple(drafted[: step.accepted]) + (step.final_token_id,)
            assert step.context_length == len(sequence)
            if step.final_kind == "resampled":
                assert step.residual_top and step.residual_top[0].probability >= step.residual_top[-1].probability
                assert all(r.probability > 0 and r.p > r.q for r in step.residual_top)
            sequence.extend(step.emitted)
    assert list(result.token_ids) == sequence[len(prompt_ids):]
    assert result.text == tiny_tokenizer.decode(list(result.token_ids))


def test_residual_distribution_by_hand():
    p = torch.tensor([0.5, 0.3, 0.2, 0.0])
    q = torch.tensor([0.2, 0.6, 0.1, 0.1])
    # max(0, p - q) = [0.3, 0, 0.1, 0] -> normalised [0.75, 0, 0.25, 0]
    torch.testing.assert_close(residual_distribution(p, q), torch.tensor([0.75, 0.0, 0.25, 0.0]))
    torch.testing.assert_close(residual_distribution(p, p), p)  # no residual: never used, but still valid


def test_stops_at_an_end_of_turn_token(target, other, tiny_tokenizer, prompt_ids):
    greedy = generate_text(target, tiny_tokenizer, torch.tensor([prompt_ids]), GREEDY, 32).token_ids
    stop = greedy[9]
    for draft in (ModelDraft(other), ModelDraft(target), PromptLookupDraft(len(tiny_tokenizer))):
        result = run(target, draft, tiny_tokenizer, prompt_ids, k=4, stop_ids=[stop])
        assert list(result.token_ids) == greedy[: greedy.index(stop) + 1] and result.finish_reason == "eos"
        assert result.text == tiny_tokenizer.decode(greedy[: greedy.index(stop)])  # the stop token's text is left out


@pytest.mark.parametrize("k", [1, 4, 16])
@pytest.mark.parametrize("max_new_tokens", [1, 2, 7])
def test_never_goes_past_max_new_tokens(k, max_new_tokens, target, tiny_tokenizer, prompt_ids):
    result = run(target, ModelDraft(target), tiny_tokenizer, prompt_ids, SamplingSettings(seed=1), k, max_new_tokens)
    assert len(result.token_ids) == max_new_tokens and result.finish_reason == "length"


def test_cancel_stops_between_steps(target, other, tiny_tokenizer, prompt_ids):
    cancel = threading.Event()
    seen = []
    for step in speculative_steps(CachedModel(target), ModelDraft(other), tiny_tokenizer, prompt_ids, GREEDY, 4, 100,
                                  cancel=cancel):
        seen.append(step)
        if len(seen) == 2:
            cancel.set()
    assert len(seen) == 2  # no step after the one during which cancel was set
    assert collect_run(seen, tiny_tokenizer, "other", 4, len(prompt_ids)).finish_reason == "cancelled"
    result = run(target, ModelDraft(other), tiny_tokenizer, prompt_ids, cancel=cancel)
    assert result.token_ids == () and result.finish_reason == "cancelled"


# ---------------------------------------------------------------------------------------------
# Limits and the speed-up arithmetic
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k, max_new_tokens, message", [
    (0, 10, r"k \(draft tokens per step\) must be a whole number in 1..16"),
    (MAX_K + 1, 10, "in 1..16, got 17"),
    (4, 0, "max_new_tokens must be a whole number in 1..512"),
    (4, MAX_NEW_TOKENS + 1, "got 513"),
    (2.5, 10, "got 2.5"),
])
def test_bad_limits_are_refused_with_the_range(k, max_new_tokens, message):
    with pytest.raises(SpeculativeError, match=message):
        check_request(k, max_new_tokens)


def test_prompts_empty_refused_and_long_capped(tiny_tokenizer):
    with pytest.raises(SpeculativeError, match="The prompt is empty"):
        prepare_prompt(tiny_tokenizer, "   ")
    ids, notes = prepare_prompt(tiny_tokenizer, "Paris " * 2000, chat=False)
    assert len(ids) == MAX_PROMPT_TOKENS and "only its last 1024" in notes[0]
    assert ids == tiny_tokenizer("Paris " * 2000)["input_ids"][-MAX_PROMPT_TOKENS:]


def test_predicted_speedup_formula():
    # alpha 0.8, k 4, c 0.1: (1 - 0.8^5) / (0.2 * 1.4) = 0.67232 / 0.28
    assert predicted_speedup(0.8, 4, 0.1) == pytest.approx(0.67232 / 0.28)
    assert predicted_speedup(1.0, 4, 0.25) == pytest.approx(5 / 2)  # the alpha -> 1 limit
    assert predicted_speedup(0.0, 3, 0.5) == pytest.approx(1 / 2.5)  # nothing accepted: pure overhead
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1.75)
    assert predicted_speedup_for_steps(0.8, [4, 4, 4], 0.1) == pytest.approx(predicted_speedup(0.8, 4, 0.1))
    # A step that drafted nothing costs one check and yields one token.
    assert predicted_speedup_for_steps(0.8, [0], 0.1, verify_cost_ratio=2.0) == pytest.approx(0.5)


def test_stats_and_speed_report_add_up(target, other, tiny_tokenizer, prompt_ids):
    result = run(target, ModelDraft(other), tiny_tokenizer, prompt_ids, SamplingSettings(seed=3), k=3, max_new_tokens=30)
    stats = acceptance_stats(result)
    assert sum(stats.accepted_length_counts) == stats.steps == len(result.steps)
    assert sum(row.checked for row in stats.by_position) == stats.checked
    assert sum(row.accepted for row in stats.by_position) == stats.accepted
    assert stats.tokens_per_target_forward == pytest.approx(30 / stats.steps)
    assert stats.alpha == pytest.approx(sum(t.accept_probability for s in result.steps for t in s.drafted
                                            if t.outcome != "unchecked") / stats.checked)
    plain = PlainRun(result.token_ids, "", seconds=result.seconds * 2, first_token_seconds=0.0)
    speed = speed_report(result, plain, stats)
    assert speed.measured_speedup == pytest.approx(2.0) and speed.same_tokens
    assert speed.predicted_speedup == pytest.approx(predicted_speedup(stats.alpha, 3, speed.cost_ratio))


def test_the_race_baseline_is_the_generation_loop(target, tiny_tokenizer, prompt_ids):
    settings = SamplingSettings(temperature=0.8, seed=9)
    reference = generate_text(target, tiny_tokenizer, torch.tensor([prompt_ids]), settings, 20)
    steps = list(plain_decode_steps(target, tiny_tokenizer, prompt_ids, settings, 20))
    plain = collect_plain(steps)
    assert list(plain.token_ids) == reference.token_ids and plain.text == reference.text
    assert plain.seconds == pytest.approx(sum(seconds for _, seconds in steps))
    assert plain.first_token_seconds == steps[0][1]
    assert plain.seconds_per_token == pytest.approx((plain.seconds - steps[0][1]) / 19)


def test_a_draft_with_a_wider_output_layer_still_gives_the_targets_output(target, vocab, tiny_tokenizer, prompt_ids):
    # Models of one family may pad their embeddings differently (Qwen2.5: 151,936 vs 152,064 rows).
    wider = tiny_lm(vocab + 20, seed=1)
    reference = generate_text(target, tiny_tokenizer, torch.tensor([prompt_ids]), GREEDY, 24).token_ids
    greedy = run(target, ModelDraft(wider, target_vocab_size=vocab), tiny_tokenizer, prompt_ids, k=3, max_new_tokens=24)
    assert list(greedy.token_ids) == reference
    sampled = run(target, ModelDraft(wider, target_vocab_size=vocab), tiny_tokenizer, prompt_ids,
                  SamplingSettings(temperature=2.0, seed=2), k=3, max_new_tokens=24)
    assert all(token.token_id < vocab for step in sampled.steps for token in step.drafted)
    # A narrower draft (the target pads more): its q is widened with zeros, and the output is still the target's.
    padded_target = tiny_lm(vocab + 20, seed=0, layers=4)
    with torch.no_grad():
        padded_target.lm_head.weight[vocab:] = 0.0  # untrained padding rows: logit 0, never the argmax here
    reference = generate_text(padded_target, tiny_tokenizer, torch.tensor([prompt_ids]), GREEDY, 24).token_ids
    result = run(padded_target, ModelDraft(tiny_lm(vocab, seed=1)), tiny_tokenizer, prompt_ids, k=3, max_new_tokens=24)
    assert list(result.token_ids) == reference and acceptance_stats(result).checked > 0
    with pytest.raises(SpeculativeError, match="Token id 310 is outside this model's vocabulary"):
        CachedModel(tiny_lm(vocab, seed=1)).feed([5, 310])

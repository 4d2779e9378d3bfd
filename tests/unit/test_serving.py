"""Serving compute: the scheduling simulator (hand-checked cases and invariants), the paged block table
(exact counts), the KV-cache formula against real cache tensors, and batched decoding on the tiny model."""

from __future__ import annotations

import math
import random
import threading

import pytest
import torch

from playground.attention.shape import AttentionShape
from playground.serving import (MeasurementCancelled, ServingInputError, StepCostModel, batched_greedy, block_table,
                                check_batch_sizes, format_step_costs, formula_cache_bytes, free_memory_bytes,
                                measure_batching, measured_cache_bytes, parse_lengths, parse_step_costs, simulate)

FLAT = StepCostModel({1: 1.0})


# -- the step cost model ---------------------------------------------------------------------------


def test_step_costs_interpolate_between_measured_points_and_stay_flat_outside():
    costs = StepCostModel({1: 0.010, 5: 0.030})
    assert costs(1) == 0.010 and costs(5) == 0.030
    assert costs(3) == pytest.approx(0.020)  # halfway
    assert costs(64) == 0.030  # never extrapolated beyond what was measured


def test_step_costs_round_trip_through_text():
    assert parse_step_costs(format_step_costs({1: 0.025, 64: 0.09})).as_json() == {"1": 0.025, "64": 0.09}
    for bad in ("", "1-25", "0:10", "4:0", "a:b"):
        with pytest.raises(ServingInputError):
            parse_step_costs(bad)


def test_parse_lengths_refuses_what_it_cannot_simulate():
    assert parse_lengths("12, 40 8;3", 10, 100) == [12, 40, 8, 3]
    for bad in ("", "0", "1.5", "-3", "101", "x"):
        with pytest.raises(ServingInputError):
            parse_lengths(bad, 10, 100)
    with pytest.raises(ServingInputError, match="At most 2 requests"):
        parse_lengths("1 2 3", 2, 100)


# -- static vs continuous, by hand ------------------------------------------------------------------


def test_static_batching_by_hand():
    # slots 2: batch {0: 3 tok, 1: 1 tok} runs 3 steps (request 1 is padding for 2 of them); then {2: 2 tok}
    schedule = simulate([3, 1, 2], slots=2, policy="static", step_cost=StepCostModel({1: 1.0, 2: 1.5}))
    assert [(r.start_step, r.finish_step) for r in schedule.requests] == [(0, 3), (0, 1), (3, 5)]
    assert schedule.step_batches == (2, 2, 2, 1, 1)
    assert schedule.total_seconds == pytest.approx(3 * 1.5 + 2 * 1.0)
    assert [r.start_seconds for r in schedule.requests] == [0.0, 0.0, 4.5]
    assert schedule.mean_waiting_seconds == pytest.approx(1.5)
    assert schedule.slot_utilisation == pytest.approx(6 / (2 * 5))


def test_continuous_batching_by_hand():
    # request 1 finishes after step 1; request 2 takes its slot at step 1 and finishes with request 0
    schedule = simulate([3, 1, 2], slots=2, policy="continuous", step_cost=StepCostModel({1: 1.0, 2: 1.5}))
    assert [(r.start_step, r.finish_step) for r in schedule.requests] == [(0, 3), (0, 1), (1, 3)]
    assert schedule.step_batches == (2, 2, 2)
    assert schedule.total_seconds == pytest.approx(4.5)
    assert schedule.throughput == pytest.approx(6 / 4.5)
    assert [r.finish_seconds for r in schedule.requests] == [4.5, 1.5, 4.5]


def test_one_slot_serves_requests_one_after_another_under_both_policies():
    for policy in ("static", "continuous"):
        schedule = simulate([2, 3, 1], slots=1, policy=policy, step_cost=FLAT)
        assert [(r.start_step, r.finish_step) for r in schedule.requests] == [(0, 2), (2, 5), (5, 6)]


def random_cases(count: int):
    rng = random.Random(21)
    for _ in range(count):
        lengths = [rng.randint(1, 30) for _ in range(rng.randint(1, 15))]
        slots = rng.randint(1, 8)
        cost, costs = rng.uniform(0.005, 0.05), {}
        for batch in range(1, 9):  # non-decreasing in the batch, like every measured curve
            cost += rng.choice([0.0, rng.uniform(0, 0.02)])
            costs[batch] = cost
        yield lengths, slots, StepCostModel(costs)


def test_invariants_on_random_cases():
    for lengths, slots, costs in random_cases(300):
        static = simulate(lengths, slots, "static", costs)
        continuous = simulate(lengths, slots, "continuous", costs)
        for schedule in (static, continuous):
            # every request generates all its tokens, without pause, after it starts; nothing runs past the end
            assert [r.finish_step - r.start_step for r in schedule.requests] == lengths
            assert max(r.finish_step for r in schedule.requests) == schedule.total_steps
            assert max(schedule.step_batches) <= slots
            # rows at each step: the requests running then (static also counts finished rows kept as padding)
            running = [sum(r.start_step <= s < r.finish_step for r in schedule.requests)
                       for s in range(schedule.total_steps)]
            assert all(rows >= n for rows, n in zip(schedule.step_batches, running))
            if schedule.policy == "continuous":
                assert list(schedule.step_batches) == running
            # first come, first served
            assert [r.start_step for r in schedule.requests] == sorted(r.start_step for r in schedule.requests)
            assert schedule.total_seconds == pytest.approx(math.fsum(costs(b) for b in schedule.step_batches))
        assert continuous.total_steps <= static.total_steps
        assert continuous.total_seconds <= static.total_seconds + 1e-12
        assert all(c.start_step <= s.start_step for c, s in zip(continuous.requests, static.requests))


def test_simulation_refuses_bad_input():
    for lengths, slots, policy in (([], 1, "static"), ([0], 1, "static"), ([1], 0, "static"), ([1], 1, "fifo")):
        with pytest.raises(ServingInputError):
            simulate(lengths, slots, policy, FLAT)


# -- paging ----------------------------------------------------------------------------------------


def test_block_table_by_hand():
    table = block_table([5, 3, 9], block_size=4, reserve_tokens=12)
    # token 0 of each request opens blocks 0, 1, 2; token 4 opens blocks for requests 0 and 2; token 8 for request 2
    assert table.physical_blocks == ((0, 3), (1,), (2, 4, 5))
    assert table.blocks_used == 6 and table.tokens == 17
    assert table.wasted_tokens_paged == 6 * 4 - 17  # 3 + 1 + 3 empty slots in the last blocks
    assert table.wasted_tokens_reserved == 3 * 12 - 17
    assert [table.last_block_fill(i) for i in range(3)] == [1, 3, 1]
    data = table.as_json(bytes_per_token=10)
    assert data["wasted_bytes_paged"] == 70 and data["wasted_bytes_reserved"] == 190


def test_block_table_invariants():
    rng = random.Random(3)
    for _ in range(200):
        lengths = [rng.randint(1, 100) for _ in range(rng.randint(1, 12))]
        block = rng.randint(1, 32)
        table = block_table(lengths, block, max(lengths) + rng.randint(0, 50))
        flat = [b for blocks in table.physical_blocks for b in blocks]
        assert sorted(flat) == list(range(len(flat)))  # every physical block used once, no gaps
        assert [len(b) for b in table.physical_blocks] == [math.ceil(n / block) for n in lengths]
        assert 0 <= table.wasted_tokens_paged <= len(lengths) * (block - 1)
        assert table.wasted_tokens_paged <= table.wasted_tokens_reserved + len(lengths) * (block - 1)
    assert block_table([16, 32], 16, 32).wasted_tokens_paged == 0  # exact multiples: nothing wasted


def test_block_table_refuses_a_reservation_shorter_than_a_request():
    with pytest.raises(ServingInputError, match="longest request"):
        block_table([10, 50], 16, 40)


# -- the KV cache, measured and predicted -------------------------------------------------------------


def test_formula_by_hand():
    shape = AttentionShape(num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64)
    assert formula_cache_bytes(shape, tokens=100, batch=2, bytes_per_value=4) == 2 * 30 * 3 * 64 * 4 * 100 * 2


def test_measured_cache_bytes_equal_the_formula_on_the_tiny_model(tiny_model, tiny_tokenizer):
    from transformers import DynamicCache

    shape = AttentionShape.from_config(tiny_model.config)
    for batch, tokens in ((1, 1), (3, 7), (5, 20)):
        cache = DynamicCache()
        ids = torch.randint(0, len(tiny_tokenizer), (batch, tokens))
        with torch.inference_mode():
            tiny_model(input_ids=ids, past_key_values=cache, use_cache=True)
        independent = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
        assert measured_cache_bytes(cache) == independent == formula_cache_bytes(shape, tokens, batch, 4)


def test_free_memory_is_a_positive_number_of_bytes():
    assert free_memory_bytes("cpu") > 0


# -- batched decoding ------------------------------------------------------------------------------


def test_batched_greedy_equals_each_prompt_alone(tiny_model, tiny_tokenizer):
    prompts = [tiny_tokenizer(text)["input_ids"] for text in ("The capital", "Attention is all you need.", "def")]
    together = batched_greedy(tiny_model, prompts, 6, tiny_tokenizer.pad_token_id)
    alone = [batched_greedy(tiny_model, [p], 6, tiny_tokenizer.pad_token_id)[0] for p in prompts]
    reference = [tiny_model.generate(torch.tensor([p]), max_new_tokens=6, do_sample=False, min_new_tokens=6,
                                     pad_token_id=0)[0, len(p):].tolist() for p in prompts]
    assert together == alone == reference


def test_measure_batching_on_the_tiny_model(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer("The capital of France", return_tensors="pt")["input_ids"]
    seen = []
    curve = measure_batching(tiny_model, ids, [1, 2, 4], 3, progress=lambda done, total: seen.append((done, total)))
    assert [p.batch for p in curve.points] == [1, 2, 4]
    assert seen[-1] == (9, 9)
    for point in curve.points:
        assert len(point.step_times) == 3 and all(t > 0 for t in point.step_times)
        assert point.total_tokens_per_second == pytest.approx(point.batch / point.step_seconds)
        assert point.kv.tokens == ids.shape[1] + 1 + 3  # the prompt, the warm-up step's token, one per timed step
        assert point.kv.measured_bytes == point.kv.formula_bytes
    assert curve.speedup(curve.points[0]) == pytest.approx(1.0)
    assert set(curve.step_costs()) == {1, 2, 4}


def test_measure_batching_stops_when_cancelled(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer("The capital", return_tensors="pt")["input_ids"]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(MeasurementCancelled):
        measure_batching(tiny_model, ids, [1, 2], 2, cancel=cancel)


def test_batch_sizes_are_checked_against_the_cap():
    assert check_batch_sizes([4, 1, 4], 64) == (1, 4)
    for bad in ([], [0], [128]):
        with pytest.raises(ServingInputError):
            check_batch_sizes(bad, 64)

"""Attention compute on a tiny random Llama (4 query heads, 2 KV heads): masks against independent
constructions, weights against a direct transformers forward, the score story, GQA grouping, KV cache."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import transformers.masking_utils as hf_masks

from playground import attention as att
from playground.runtime.precision import quantize_dynamic_int8

PROMPT = "The capital of France is Paris. Attention is all you need, and tokens attend to earlier tokens."


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def tril(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def reference_mask(pattern: str, n: int, w: int, p: int, c: int) -> torch.Tensor:
    """The same masks built a different way: triangles, bands and block diagonals."""
    if pattern == "bidirectional":
        return torch.ones(n, n, dtype=torch.bool)
    if pattern == "causal":
        return tril(n)
    if pattern == "sliding_window":
        return tril(n) & torch.ones(n, n, dtype=torch.bool).triu(diagonal=-(w - 1))
    if pattern == "prefix_lm":
        mask = tril(n)
        mask[:p, :p] = True
        return mask
    if pattern == "chunked":
        sizes = [c] * (n // c) + ([n % c] if n % c else [])
        return torch.block_diag(*[tril(size) for size in sizes]) if sizes else tril(0)
    raise AssertionError(pattern)


@pytest.mark.parametrize("pattern", ["bidirectional", "causal", "sliding_window", "prefix_lm", "chunked"])
def test_masks_equal_an_independent_construction_for_all_sizes(pattern):
    for n in range(0, 11):
        for size in range(1, n + 3):
            mask = att.build_mask(pattern, n, window=size, prefix_length=size, chunk_size=size)
            assert torch.equal(mask, reference_mask(pattern, n, size, size, size)), (pattern, n, size)
            count, formula = att.allowed_pairs_formula(pattern, [n], window=size, prefix_length=size, chunk_size=size)
            assert count == int(mask.sum()), (pattern, n, size, formula)


def hf_mask(function, n: int) -> torch.Tensor:
    """Evaluate a transformers mask function (batch, head, q, kv) -> bool on the whole [n, n] grid."""
    zero = torch.tensor(0)
    return function(zero, zero, torch.arange(n).unsqueeze(1), torch.arange(n).unsqueeze(0)).expand(n, n)


def test_masks_agree_with_transformers_mask_functions():
    n = 9
    assert torch.equal(att.build_mask("causal", n), hf_mask(hf_masks.causal_mask_function, n))
    for window in (1, 3, 12):
        expected = hf_mask(hf_masks.sliding_window_causal_mask_function(window), n)
        assert torch.equal(att.build_mask("sliding_window", n, window=window), expected)
    for chunk in (1, 4, 9):
        expected = hf_mask(hf_masks.chunked_causal_mask_function(chunk, torch.tensor([0])), n)
        assert torch.equal(att.build_mask("chunked", n, chunk_size=chunk), expected)
    documents = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    packed = hf_masks.and_masks(hf_masks.causal_mask_function,
                                hf_masks.packed_sequence_mask_function(torch.tensor([documents])))
    assert torch.equal(att.build_mask("document", n, document_ids=documents), hf_mask(packed, n))


def test_document_mask_is_block_diagonal_causal_and_counts_match():
    view = att.explore_mask("one two three\nfour five\nsix seven eight nine", "document")
    (sequence,) = view.sequences
    assert sequence.tokens == ("one", "·two", "·three", "four", "·five", "six", "·seven", "·eight", "·nine")
    assert torch.equal(sequence.allowed, torch.block_diag(tril(3), tril(2), tril(4)))
    assert sequence.allowed_pairs == sequence.formula_pairs == 6 + 3 + 10


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_masks_a_batch_of_two_prompts(side):
    view = att.explore_mask("a b c d e\nx y", f"padding_{side}")
    long, short = view.sequences
    assert torch.equal(long.allowed, tril(5)) and long.tokens == ("a", "·b", "·c", "·d", "·e")
    expected = torch.zeros(5, 5, dtype=torch.bool)
    if side == "left":
        expected[3:, 3:] = tril(2)
        assert short.tokens == (att.PAD_LABEL, att.PAD_LABEL, att.PAD_LABEL, "x", "·y")
    else:
        expected[:2, :2] = tril(2)
        assert short.tokens == ("x", "·y", att.PAD_LABEL, att.PAD_LABEL, att.PAD_LABEL)
    assert torch.equal(short.allowed, expected)
    assert short.allowed_pairs == short.formula_pairs == 3 and short.total_pairs == 25
    assert "3 pads" in short.name
    assert view.compute_note.startswith("18 of 2 × 5² = 50 query-key pairs are allowed (36.0%)")


def test_mask_explorer_labels_tokens_and_explains_the_cost(tiny_tokenizer):
    def tokenize(text):
        return att.token_labels(tiny_tokenizer, tiny_tokenizer(text)["input_ids"])

    view = att.explore_mask("The capital of France", "causal", tokenize=tokenize)
    (sequence,) = view.sequences
    assert "".join(sequence.tokens).replace("·", " ") == "The capital of France"
    n = len(sequence.tokens)
    assert sequence.allowed_pairs == n * (n + 1) // 2 and f"{n}·{n + 1}/2" in sequence.formula
    assert f"{sequence.allowed_pairs} of {n}² = {n * n}" in view.compute_note
    window = att.explore_mask("a b c d e f g h", "sliding_window", window=3)
    assert "n·W" in window.compute_note and "(= 8·3)" in window.compute_note
    json.dumps(view.as_json())


def test_mask_input_errors_say_what_to_do():
    with pytest.raises(att.AttentionInputError, match="two lines"):
        att.explore_mask("only one prompt", "padding_left")
    with pytest.raises(att.AttentionInputError, match="Unknown mask pattern 'diagonal'"):
        att.explore_mask("text", "diagonal")
    with pytest.raises(att.AttentionInputError, match="window W must be at least 1"):
        att.explore_mask("text", "sliding_window", window=0)


def test_long_mask_text_is_capped_with_a_note():
    view = att.explore_mask(" ".join(["word"] * 300), "causal", max_tokens=50)
    assert len(view.sequences[0].tokens) == 50 and "300 tokens" in view.note
    packed = att.explore_mask("\n".join(["a b c d e f g h i j"] * 8), "document", max_tokens=25)
    assert len(packed.sequences[0].tokens) == 25 and "first 3 documents" in packed.note


# ---------------------------------------------------------------------------------------------
# Real weights on the tiny model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eager_model(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.set_attn_implementation("eager")
    return model


@pytest.fixture(scope="module")
def run(eager_model, tiny_tokenizer):
    return att.run_attention(eager_model, tiny_tokenizer, PROMPT)


def test_weights_equal_a_direct_output_attentions_forward(run, eager_model, tiny_tokenizer):
    ids = tiny_tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = eager_model(ids, output_attentions=True).attentions
    assert run.token_ids == tuple(ids[0].tolist()) and run.length == ids.shape[1]
    assert len(run.weights) == len(expected) == 2
    for ours, theirs in zip(run.weights, expected):
        torch.testing.assert_close(ours, theirs[0], rtol=0, atol=1e-6)


def test_every_row_sums_to_one_and_nothing_looks_ahead(run):
    for layer in range(run.shape.num_layers):
        for head in [None, *range(run.shape.num_heads)]:
            view = att.attention_view(run, layer, head)
            assert view.max_row_sum_error < 1e-5
            assert view.max_above_diagonal == 0.0
            assert torch.equal(view.weights.triu(diagonal=1), torch.zeros_like(view.weights))
            assert torch.equal(view.allowed, tril(run.length))
    mean = att.attention_view(run, 1, None).weights
    torch.testing.assert_close(mean, run.weights[1].mean(dim=0))


def test_score_story_rebuilds_every_heads_weights_from_q_and_k(run):
    n = run.length
    for layer in range(run.shape.num_layers):
        for head in range(run.shape.num_heads):
            story = att.score_story(run, layer, head)
            assert story.max_abs_diff_vs_model < 1e-5
            assert torch.equal(story.allowed, tril(n))
            assert story.scale == pytest.approx(run.shape.head_dim ** -0.5)
            # An independent float64 softmax of the masked scores gives the same weights.
            masked = story.scores.double().masked_fill(~tril(n), float("-inf"))
            torch.testing.assert_close(torch.softmax(masked, dim=-1).float(), run.weights[layer][head],
                                       rtol=0, atol=1e-5)


def test_score_story_works_on_an_int8_dynamic_quantized_model(tiny_model, tiny_tokenizer):
    # The app's default CPU model swaps nn.Linear for torch.ao quantized Linear: hooks and Q/K still work.
    model = quantize_dynamic_int8(copy.deepcopy(tiny_model))
    model.set_attn_implementation("eager")
    quantized_run = att.run_attention(model, tiny_tokenizer, PROMPT)
    assert type(model.model.layers[0].self_attn.q_proj).__module__.startswith("torch.ao")
    for head in range(quantized_run.shape.num_heads):
        assert att.score_story(quantized_run, 1, head).max_abs_diff_vs_model < 1e-5


def test_gqa_query_heads_share_kv_heads(run, eager_model, tiny_tokenizer):
    shape = run.shape
    assert (shape.num_heads, shape.num_kv_heads, shape.group_size) == (4, 2, 2)
    assert [shape.kv_head_of(h) for h in range(4)] == [0, 0, 1, 1]
    assert shape.kv_groups() == ((0, 1), (2, 3))
    nine = att.AttentionShape(30, 9, 3, 64)
    assert nine.kv_groups() == ((0, 1, 2), (3, 4, 5), (6, 7, 8)) and nine.kv_head_of(5) == 1
    # Change only KV head 1's key projection: only query heads 2 and 3 (its group) may change.
    model = copy.deepcopy(eager_model)
    k_proj = model.model.layers[0].self_attn.k_proj
    head_dim = shape.head_dim
    with torch.no_grad():
        k_proj.weight[head_dim: 2 * head_dim] += torch.randn(head_dim, k_proj.weight.shape[1])
    changed = att.run_attention(model, tiny_tokenizer, PROMPT).weights[0]
    difference = (changed - run.weights[0]).abs().amax(dim=(1, 2))  # [heads]
    assert difference[:2].max() == 0 and difference[2:].min() > 1e-3


def test_a_wrong_kv_mapping_would_be_caught(run, monkeypatch):
    # The story's check is not vacuous: pairing query head 1 with KV head 1 breaks the match.
    monkeypatch.setattr(att.AttentionShape, "kv_head_of", lambda self, head: head % self.num_kv_heads)
    assert att.score_story(run, 0, 1).max_abs_diff_vs_model > 1e-3


def test_run_needs_eager_attention_and_a_prompt(tiny_model, eager_model, tiny_tokenizer):
    with pytest.raises(RuntimeError, match="eager"):
        att.run_attention(tiny_model, tiny_tokenizer, PROMPT)  # the fixture model uses SDPA
    with pytest.raises(att.AttentionInputError, match="empty"):
        att.run_attention(eager_model, tiny_tokenizer, "   ")


def test_long_prompts_are_capped_with_a_note(eager_model, tiny_tokenizer):
    text = "Tokens attend to earlier tokens. " * 40
    capped = att.run_attention(eager_model, tiny_tokenizer, text, max_tokens=64)
    assert capped.length == 64 and capped.total_tokens > 64
    assert f"first 64 are analysed" in capped.note and str(capped.total_tokens) in capped.note
    assert capped.weights[0].shape == (4, 64, 64)


def test_chat_template_wraps_the_prompt(eager_model, tiny_tokenizer):
    chat_run = att.run_attention(eager_model, tiny_tokenizer, "Hello", chat=True)
    assert "<|im_start|>" in chat_run.tokens and chat_run.tokens[-1] == "↵"


def test_layer_and_head_parsing_names_the_range(run):
    assert att.parse_layer("1", run.shape) == 1 and att.parse_head("mean", run.shape) is None
    assert att.parse_head("3", run.shape) == 3 and att.parse_head(2.0, run.shape) == 2
    with pytest.raises(att.AttentionInputError, match=r"2 layers \(0..1\)"):
        att.parse_layer(2, run.shape)
    with pytest.raises(att.AttentionInputError, match=r"4 query heads \(0..3\)"):
        att.parse_head("7", run.shape)
    with pytest.raises(att.AttentionInputError, match="'mean' or a number"):
        att.parse_head("first", run.shape)


def test_query_row_is_the_row_of_the_matrix(run):
    view = att.attention_view(run, 0, 2)
    row = att.query_row(view, 5)
    assert row.keys == run.tokens[:6] and row.token == run.tokens[5]
    assert row.weights == pytest.approx(view.weights[5, :6].tolist()) and sum(row.weights) == pytest.approx(1, abs=1e-5)
    with pytest.raises(att.AttentionInputError, match="out of range"):
        att.query_row(view, run.length)


def hand_view(weights: torch.Tensor, tokens: tuple[str, ...]) -> att.AttentionView:
    n = len(tokens)
    return att.AttentionView(tokens, 0, 0, 0, weights, tril(n), 0.0, 0.0)


def test_head_patterns_recognise_sinks_previous_token_and_self():
    n = 6
    tokens = ("A", "·b", ",", "·c", ".", "·d")
    sink = torch.zeros(n, n)
    sink[:, 0] = 1
    previous = torch.zeros(n, n)
    previous[0, 0] = 1
    previous[torch.arange(1, n), torch.arange(0, n - 1)] = 1
    assert att.head_pattern(hand_view(sink, tokens)).dominant == ("sink", 1.0)
    assert att.head_pattern(hand_view(previous, tokens)).dominant == ("previous token", 1.0)
    assert att.head_pattern(hand_view(torch.eye(n), tokens)).dominant == ("self", 1.0)
    single = att.head_pattern(hand_view(torch.ones(1, 1), ("A",)))  # token 0 is both the first token and itself
    assert (single.first_token, single.same_token, single.previous_token) == (1.0, 1.0, 0.0)
    # Uniform over the allowed keys: query i spreads over i+1 keys, entropy log2(i+1).
    uniform = tril(n).float() / tril(n).float().sum(dim=-1, keepdim=True)
    pattern = att.head_pattern(hand_view(uniform, tokens))
    assert pattern.dominant[0] == "spread"
    assert pattern.entropy_bits == pytest.approx(sum(torch.log2(torch.arange(2, n + 1).double())).item() / (n - 1))
    # Punctuation keys "," (2) and "." (4): query i sees those at positions <= i.
    expected = sum((2 <= i) / (i + 1) + (4 <= i) / (i + 1) for i in range(1, n)) / (n - 1)
    assert pattern.punctuation == pytest.approx(expected)
    # A punctuation token in first place is the sink's: it is not counted twice.
    assert att.head_pattern(hand_view(sink, ("#",) + tokens[1:])).punctuation == 0


def test_grid_thumbnails_keep_the_block_maximum(run):
    grid = att.attention_grid(run, 0, None, "heads")
    assert len(grid.views) == 4 and [p.head for p in grid.patterns] == [0, 1, 2, 3]
    across = att.attention_grid(run, 0, 3, "layers")
    assert [v.layer for v in across.views] == [0, 1] and {v.head for v in across.views} == {3}
    weights = torch.rand(100, 100)
    pooled, block = att.downsample_max(weights, cells=48)
    assert block == 3 and pooled.shape == (34, 34)
    assert pooled[1, 2] == weights[3:6, 6:9].max() and pooled[-1, -1] == weights[99:, 99:].max()
    with pytest.raises(att.AttentionInputError, match="Grid mode"):
        att.attention_grid(run, 0, None, "rows")


def test_attention_json_is_plain_json_with_the_numbers(run):
    view = att.attention_view(run, 1, 2)
    grid = att.attention_grid(run, 1, 2, "heads")
    story = att.score_story(run, 1, 2)
    data = json.loads(json.dumps(att.attention_json(run, view, grid, story)))
    assert data["tokens"] == list(run.tokens) and data["layer"] == 1 and data["head"] == 2
    torch.testing.assert_close(torch.tensor(data["weights"]), run.weights[1][2], rtol=0, atol=1e-8)
    assert data["shape"]["kv_head_of_query_head"] == [0, 0, 1, 1]
    assert data["checks"]["story_max_abs_diff_vs_model"] < 1e-5 and len(data["grid"]["patterns"]) == 4


def test_run_cache_returns_the_same_run_only_for_the_same_model(run, eager_model):
    cache = att.RunCache(size=2)
    cache.put(PROMPT, False, run)
    assert cache.get(eager_model, PROMPT, False) is run
    assert cache.get(eager_model, PROMPT, True) is None and cache.get(object(), PROMPT, False) is None
    for text in ("a", "b"):
        cache.put(text, False, run)
    assert cache.get(eager_model, PROMPT, False) is None  # evicted: only the last two are kept


# ---------------------------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------------------------


def test_kv_cache_estimate_equals_the_bytes_of_a_real_cache(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        cache = tiny_model(ids, use_cache=True).past_key_values
    measured = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    shape = att.AttentionShape.from_config(tiny_model.config)
    estimate = att.kv_cache_estimate(shape, ids.shape[1], "float32")
    gqa = next(v for v in estimate.variants if v.is_this_model)
    assert gqa.name == "GQA" and estimate.cache_bytes(gqa.kv_heads) == measured


def test_kv_cache_variants_scale_with_kv_heads():
    shape = att.AttentionShape(num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64)
    estimate = att.kv_cache_estimate(shape, 8192, "float32")
    sizes = {v.name: estimate.cache_bytes(v.kv_heads) for v in estimate.variants}
    assert sizes["GQA"] == 2 * 30 * 3 * 64 * 8192 * 4 == 377_487_360
    assert sizes["MHA"] == 3 * sizes["GQA"] and sizes["MQA"] * 3 == sizes["GQA"]
    half = att.kv_cache_estimate(shape, 8192, "bfloat16", batch_size=4)
    assert half.cache_bytes(3) == sizes["GQA"] // 2 * 4
    assert 8192 in estimate.curve_contexts and estimate.curve_contexts[0] == 1
    data = json.loads(json.dumps(estimate.as_json()))
    assert data["bytes_per_token"] == 46_080 and [v["name"] for v in data["variants"]] == ["MHA", "GQA", "MQA"]
    mha_model = att.kv_cache_estimate(att.AttentionShape(2, 4, 4, 8), 10, "float32")
    assert [(v.name, v.is_this_model) for v in mha_model.variants] == [("MHA", True), ("MQA", False)]
    with pytest.raises(att.AttentionInputError, match="dtype"):
        att.kv_cache_estimate(shape, 10, "float64")
    with pytest.raises(att.AttentionInputError, match="at least 1"):
        att.kv_cache_estimate(shape, 0, "float32")


def test_punctuation_ignores_the_whitespace_glyphs_of_a_label():
    assert att.is_punctuation("·,") and att.is_punctuation("↵.") and att.is_punctuation("→;")
    # A space token is drawn as a middle dot, which unicodedata calls punctuation: it is whitespace here.
    assert not att.is_punctuation("·") and not att.is_punctuation("·b") and not att.is_punctuation("∅")

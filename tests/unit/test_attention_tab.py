"""The Attention tab's handlers (AttentionHandlers, called directly) on the tiny model, through a stand-in
for the model manager: wiring, empty states, friendly errors, and that changing layer/head reuses the forward pass."""

from __future__ import annotations

import gradio as gr
import pytest

from playground import attention as att
from playground.ui import attention_tab


@pytest.fixture(scope="module")
def handlers(tiny_context):
    return attention_tab.AttentionHandlers(tiny_context)


@pytest.fixture(scope="module")
def demo(tiny_context):
    with gr.Blocks() as demo:
        attention_tab.create_attention_tab(tiny_context)
    return demo


def test_the_tab_has_its_three_api_endpoints(demo):
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    assert {"attention", "attention_mask", "kv_cache"} <= names


def test_attention_handler_returns_figures_and_numbers_and_restores_sdpa(handlers, tiny_loaded):
    outputs = handlers.show_attention(attention_tab.DEFAULT_PROMPT, 1, "2", "heads", False)
    status, heatmap, chips, query, row_plot, grid_plot, patterns, story_plot, data, layer, head = outputs
    assert tiny_loaded.model.config._attn_implementation == "sdpa"  # eager only for the view
    n = len(data["tokens"])
    assert data["layer"] == 1 and data["head"] == 2 and len(data["weights"]) == n
    assert data["checks"]["max_row_sum_error"] < 1e-5 and data["checks"]["story_max_abs_diff_vs_model"] < 1e-5
    assert f"**{n} tokens**" in status and "KV head 1 ← query heads 2, 3" in status
    assert query["maximum"] == n - 1 and query["value"] == n - 1 and layer["maximum"] == 1
    assert [value for _, value in head["choices"]] == ["mean", "0", "1", "2", "3"]
    assert len(chips) == n and max(score for _, score in chips) == 1.0
    assert all(isinstance(score, float) for _, score in chips)  # None would render as plain, unclickable text
    assert list(patterns.columns)[0] == "head" and len(patterns) == 4
    for figure in (heatmap, row_plot, grid_plot, story_plot):
        assert figure.data


def test_changing_layer_or_head_reuses_the_forward_pass(handlers, tiny_loaded, monkeypatch):
    text = "Tokens attend to earlier tokens."
    handlers.show_attention(text, 0, "mean", "heads", False)
    calls = []
    monkeypatch.setattr(att, "run_attention", lambda *args, **kwargs: calls.append(args))
    _, _, _, _, _, _, _, _, data, _, _ = handlers.show_attention(text, 1, "3", "layers", False)
    assert calls == [] and data["layer"] == 1 and data["grid"]["mode"] == "layers"


def test_empty_prompt_is_a_friendly_empty_state(handlers):
    status, heatmap, *_, data, _, _ = handlers.show_attention("   ", 0, "mean", "heads", False)
    assert data == {"empty": True, "message": attention_tab.EMPTY_PROMPT}
    assert "Type a prompt" in status and heatmap.layout.annotations[0].text == attention_tab.EMPTY_PROMPT


def test_bad_layer_is_a_specific_user_error(handlers):
    with pytest.raises(gr.Error, match=r"this model has 2 layers \(0..1\)"):
        handlers.show_attention("Hello", 5, "mean", "heads", False)


def test_mask_handler_uses_the_model_tokenizer(handlers, tiny_tokenizer):
    note, figure, data = handlers.show_mask("The capital of France", "sliding_window", 2, 4, 4)
    tokens = data["sequences"][0]["tokens"]
    assert tokens == att.token_labels(tiny_tokenizer, tiny_tokenizer("The capital of France")["input_ids"])
    n = len(tokens)
    assert data["sequences"][0]["allowed_pairs"] == 2 * n - 1 and "✓" in note and "tokenizer" in note
    assert handlers.show_mask("", "causal", 2, 4, 4)[2] == {"empty": True}


def test_mask_explorer_and_kv_calculator_without_a_model(stub_context):
    handlers = attention_tab.AttentionHandlers(stub_context(None))
    note, _, data = handlers.show_mask("one two\nthree", "padding_right", 3, 4, 4)
    assert "No model is loaded yet" in note and data["sequences"][1]["tokens"] == ["three", att.PAD_LABEL]
    with pytest.raises(gr.Error, match="No model is loaded"):
        handlers.show_kv_cache(8192, "auto (the model's compute dtype)", 1)


def test_kv_handler_reads_the_model_config(handlers):
    note, figure, data = handlers.show_kv_cache(1000, attention_tab.KV_DTYPES[0], 2)
    assert data["dtype"] == "float32" and data["batch_size"] == 2 and data["num_kv_heads"] == 2
    gqa = next(v for v in data["variants"] if v["this_model"])
    assert gqa["bytes"] == 2 * 2 * 2 * 8 * 1000 * 4 * 2  # K,V x layers x KV heads x head dim x context x 4 B x batch
    assert "1,000 tokens" in note and "multi-head attention would need 2.0×" in note


def test_layer_and_head_controls_offer_only_the_models_own_range():
    from transformers import LlamaConfig

    # SmolLM2-135M's shape: 30 layers, 9 query heads sharing 3 KV heads
    config = LlamaConfig(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)
    layer, head = attention_tab.model_controls(att.AttentionShape.from_config(config))
    assert layer["maximum"] == 29 and "value" not in layer  # the visitor's chosen layer stays
    assert [value for _, value in head["choices"]] == ["mean", *map(str, range(9))]
    assert head["choices"][4] == ("head 3 (KV 1)", "3")


def test_page_load_sets_the_ranges_of_the_model_that_is_there(handlers, stub_context):
    mask_and_kv = [attention_tab.DEFAULT_MASK_TEXT, "causal", 3, 4, 4, 1024, attention_tab.KV_DTYPES[0], 1]
    *_, layer, head = handlers.on_page_load(*mask_and_kv)
    assert layer["maximum"] == 1 and len(head["choices"]) == 5  # the tiny model: 2 layers, 4 heads
    *_, layer, head = attention_tab.AttentionHandlers(stub_context(None)).on_page_load(*mask_and_kv)
    assert isinstance(layer, type(gr.skip())) and isinstance(head, type(gr.skip()))  # no model yet: left as built


def test_every_view_control_listens_to_keyboard_and_typed_changes(demo):
    """Sliders fire `input` on arrow keys and typed numbers (and on drags) but `release` only on the mouse:
    each control of a view must re-render on `input` (or `change`), never only on `release`."""
    blocks = {block._id: block for block in demo.blocks.values()}
    listened = {(blocks[target].label, event) for fn in demo.fns.values() for target, event in fn.targets
                if target in blocks}
    for label in ("Layer", "Head", "Small multiples", "Query token position", "Window W (tokens each query sees)",
                  "Context length (tokens)"):
        assert (label, "input") in listened, label


def _skipped(value) -> bool:
    return isinstance(value, dict) and value == gr.skip()  # gr.skip() is an update that changes nothing


def _sent(outputs):
    """The names of the attention outputs a handler sends (not gr.skip())."""
    names = ("status", "heatmap", "chips", "query", "row", "grid", "patterns", "story", "json", "layer", "head")
    return {name for name, value in zip(names, outputs) if not _skipped(value)}


def _payload(value):
    return value.to_json() if hasattr(value, "to_json") else value


@pytest.mark.parametrize("mode", ["heads", "layers"])
def test_a_layer_or_head_move_sends_the_heatmap_first_then_only_what_depends_on_it(handlers, mode):
    """Moving the head re-slices the cached forward: the heatmap, status and query row first, then the story and
    the numbers; the grid only when it shows this head (layers mode), the model's ranges never. Together they
    equal the full answer of show_attention for the same inputs. The query slider and its row travel with the
    heatmap: sent by the queued follow-up, they overwrote a query position the user picked in the meantime (the
    keyboard e2e test, under load: the row stayed on token 18 after two presses to 16)."""
    text = "Tokens attend to earlier tokens."
    full = handlers.show_attention(text, 1, "2", mode, False)
    first = handlers.move_layer_or_head(text, 1, "2", mode, False)
    assert _sent(first) == {"status", "heatmap", "chips", "query", "row"}
    for follow_up, grid_follows in ((handlers.after_head_move, mode == "layers"),
                                    (handlers.after_layer_move, mode == "heads")):
        rest = follow_up(text, 1, "2", mode, False)
        grid = {"grid", "patterns"} if grid_follows else set()
        assert _sent(rest) == {"story", "json"} | grid
        for index, value in enumerate(rest):
            merged = first[index] if _skipped(value) else value
            if not _skipped(merged):
                if hasattr(merged, "equals"):  # the patterns table
                    assert merged.equals(full[index])
                else:
                    assert _payload(merged) == _payload(full[index]), index
    assert _sent(handlers.change_grid_mode(text, 1, "2", mode, False)) == {"grid", "patterns", "json"}


def test_layer_head_and_grid_mode_moves_are_wired_to_their_own_small_events(demo):
    blocks = {block._id: block for block in demo.blocks.values()}
    by_trigger = {}
    for fn in demo.fns.values():
        for target, event in fn.targets:
            if target in blocks:
                by_trigger.setdefault(f"{blocks[target].label}.{event}", []).append(fn)
    assert [fn.name for fn in by_trigger["Layer.input"]] == ["move_layer_or_head"]
    assert [fn.name for fn in by_trigger["Head.input"]] == ["move_layer_or_head"]
    assert [fn.name for fn in by_trigger["Small multiples.input"]] == ["change_grid_mode"]
    assert {fn.name for fn in by_trigger["Prompt.submit"]} == {"show_attention"}
    follow_ups = {fn.name for fn in demo.fns.values() if fn.trigger_after is not None}
    assert {"after_layer_move", "after_head_move"} <= follow_ups

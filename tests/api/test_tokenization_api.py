"""The Tokenization tab's endpoints, driven through gradio_client against the launched app (real model)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

TEXT = "Hello world! Tokenizers split naïve text 🤗 into pieces.\n\tdef f(x): return x"


def tokenize(client, text, names=("model", "minilm", "bytes"), extra="", special=False):
    counts, html, _figure, payload, input_tokens = client.predict(text, list(names), extra, special,
                                                                  api_name="/tokenize")
    return counts, html, payload, input_tokens


def test_tokenize_ids_equal_the_tokenizers(client, real_model, settings):
    from playground.runtime.tokenizers import load_tokenizer

    counts, html, payload, input_tokens = tokenize(client, TEXT)
    model = payload["tokenizers"]["model"]
    assert model["ids"] == real_model.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert model["tokens"] == real_model.tokenizer.convert_ids_to_tokens(model["ids"])
    assert model["lossless"] and model["starts"][0] == 0 and model["ends"][-1] == len(TEXT)
    assert model["starts"][1:] == model["ends"][:-1]  # the spans tile the text
    assert model["counts"]["context_length"] == real_model.context_length == 8192
    minilm = load_tokenizer("minilm", settings)
    assert payload["tokenizers"]["minilm"]["ids"] == minilm(TEXT, add_special_tokens=False)["input_ids"]
    assert payload["tokenizers"]["bytes"]["ids"] == list(TEXT.encode("utf-8"))
    assert input_tokens == len(model["ids"])
    assert [row[0] for row in counts["data"]][0].startswith("Loaded model: SmolLM2-135M-Instruct")
    assert "pgt-t" in html and payload["errors"] == {}


def test_special_tokens_and_template_text(client, real_model):
    text = "<|im_start|>user\nhi<|im_end|>"
    _, _, payload, _ = tokenize(client, text, names=("model",), special=True)
    model = payload["tokenizers"]["model"]
    assert model["ids"] == real_model.tokenizer(text)["input_ids"]
    assert model["special_token_indices"] == [index for index, token in enumerate(model["tokens"])
                                              if token in ("<|im_start|>", "<|im_end|>")] != []


def test_an_unavailable_tokenizer_does_not_stop_the_others(client):
    _, html, payload, _ = tokenize(client, TEXT, extra="someone/not-cached-anywhere, not a name!")
    assert set(payload["tokenizers"]) == {"model", "minilm", "bytes"}
    assert "offline" in payload["errors"]["someone/not-cached-anywhere"]
    assert "not a tokenizer we know" in payload["errors"]["not a name!"]
    assert "pgt-error" in html


def test_empty_text_is_an_empty_state(client):
    counts, html, payload, input_tokens = tokenize(client, "")
    assert counts["data"] in ([], [[""] * len(counts["headers"])], [[None] * len(counts["headers"])])
    assert "Type or paste some text" in html
    assert payload["tokenizers"] == {} and input_tokens == 0


def test_long_text_counts_exact_view_capped(client, real_model):
    text = ("Paris is the capital of France. Токенизатор 🤗 12345\n" * 2000)[:100_000]
    counts, html, payload, _ = tokenize(client, text)
    model = payload["tokenizers"]["model"]
    assert model["counts"]["tokens"] == len(real_model.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert model["counts"]["characters"] == 100_000 and not model["complete"]
    assert len(model["ids"]) == payload["per_token_limit"] < model["counts"]["tokens"]
    assert payload["chip_view_truncated"] and "100,000 characters" in html
    assert len(html) < 600_000
    full = client.predict(text, ["model"], "", False, api_name="/tokenize_full")
    assert full["tokenizers"]["model"]["complete"]
    assert len(full["tokenizers"]["model"]["ids"]) == model["counts"]["tokens"]


def test_chat_template(client, real_model):
    rows = [["system", "Be brief."], ["user", "What is a token?"]]
    summary, html, prompt, payload = client.predict({"headers": ["role", "content"], "data": rows}, True,
                                                    api_name="/chat_template")
    messages = [{"role": role, "content": content} for role, content in rows]
    expected = real_model.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                        return_dict=True)["input_ids"]
    assert payload["ids"] == expected
    assert prompt == real_model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    counts = payload["counts"]
    assert counts["special"] + counts["template"] + counts["content"] == counts["total"] == len(expected)
    assert f"**{counts['template_overhead']:,} tokens**" in summary and "pgt-special" in html


def test_chat_template_bad_role_is_a_clear_error(client):
    with pytest.raises(Exception, match="role must be one of"):
        client.predict({"headers": ["role", "content"], "data": [["robot", "beep"]]}, True, api_name="/chat_template")


def test_bpe_merges(client):
    text = "the cat sat on the mat, the cat sat on the hat"
    summary, _step, step_html, _figure, table, payload = client.predict(text, "text", 10, api_name="/bpe_merges")
    assert payload["matches_trainer"] and len(payload["merges"]) == 10 and "✓" in summary
    assert payload["tokens_per_step"][0] == len(text)
    assert [row[0] for row in table["data"]] == list(range(1, 11))
    assert "Merge" in step_html


def test_estimate_cost(client):
    rows = [["a", 1.0, 2.0], ["b", 0.5, 0.0]]
    table, payload = client.predict({"headers": ["name", "in", "out"], "data": rows}, 1000, 500, 10,
                                    api_name="/estimate_cost")
    assert [round(item["total_cost"], 6) for item in payload["estimates"]] == [0.02, 0.005]
    assert table["data"][0][0] == "a"
    with pytest.raises(Exception, match="zero or more"):
        client.predict({"headers": ["name", "in", "out"], "data": [["a", -1, 1]]}, 1, 1, 1, api_name="/estimate_cost")

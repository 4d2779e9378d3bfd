"""LoRA compute on the tiny model: data, settings, the loss, parameter arithmetic, training, before/after,
the adapter round trip and merging. References: transformers' own loss and LR schedules, PEFT's counts,
PeftModel.from_pretrained, and hand-written arithmetic."""

from __future__ import annotations

import copy
import importlib.util
import json
import threading
import zipfile

import pytest
import torch

from playground import lora
from playground.config import Settings
from playground.generation import encode_prompt, generate_text
from playground.runtime import ModelLoadError, ModelManager
from playground.runtime.variants import base_model_key

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def manager(tiny_model_dir, tmp_path_factory):
    return ModelManager(Settings(model=str(tiny_model_dir), precision="none", device="cpu", offline=True,
                                 cache_dir=tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def base(manager):
    """The tiny model as the app loads it (fp32, CPU): what the LoRA tab trains a copy of."""
    return manager.load()


@pytest.fixture(scope="module")
def pirate():
    return lora.builtin_dataset("pirate")


def small_run(tokenizer, dataset: lora.Dataset, settings: lora.LoraSettings, n_train: int = 24, **kwargs) -> lora.TrainingRun:
    train = lora.tokenize_split(tokenizer, dataset.train[:n_train], settings.max_length, settings.mask_prompt)
    evaluation = lora.tokenize_split(tokenizer, dataset.eval[:8], settings.max_length, settings.mask_prompt)
    return lora.TrainingRun(train, evaluation, settings, tokenizer.pad_token_id, **kwargs)


@pytest.fixture(scope="module")
def trained(base, pirate):
    """A LoRA adapter trained for a few steps on the tiny model (shared by the before/after tests)."""
    settings = lora.LoraSettings(rank=4, alpha=8, dropout=0.0, target_modules=ALL_LINEAR, learning_rate=2e-2,
                               warmup_steps=0, steps=8, eval_every=8, schedule="constant")
    model = lora.attach_lora(base.model, settings)
    events = []
    assert lora.train_lora(model, small_run(base.tokenizer, pirate, settings, emit=events.append)) == "completed"
    adapter = lora.TrainedAdapter("test", model, base.tokenizer, base, settings, "pirate", ("What is 2 plus 3?",))
    return adapter, events


# -- datasets --------------------------------------------------------------------------------


def test_shipped_datasets_are_what_the_script_writes():
    spec = importlib.util.spec_from_file_location("make_datasets", lora.ASSETS / "make_datasets.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.build_all()
    assert set(built) == set(lora.BUILTIN_DATASETS)
    for name, splits in built.items():
        for split, rows in splits.items():
            assert (lora.ASSETS / name / f"{split}.jsonl").read_text(encoding="utf-8") == script.to_jsonl(rows)
        dataset = lora.builtin_dataset(name)
        assert (len(dataset.train), len(dataset.eval)) == (270, 30)
        assert not {e.prompt for e in dataset.train} & {e.prompt for e in dataset.eval}  # eval is unseen


def test_json_dataset_answers_are_json_that_matches_the_sentence():
    for example in lora.builtin_dataset("json").train:
        answer = json.loads(example.response)
        assert set(answer) == {"name", "age", "city"}
        assert answer["name"] in example.prompt and str(answer["age"]) in example.prompt


def test_malformed_lines_are_reported_with_line_numbers_and_the_rest_is_used():
    text = "\n".join([
        '{"instruction": "Say hi", "response": "Hi!"}',
        '{"instruction": "broken", ',
        "",
        '{"instruction": "Translate", "input": "chat", "output": "cat"}',
        '{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}',
        '{"messages": [{"role": "assistant", "content": "no question"}]}',
        '{"instruction": "", "response": "x"}',
        '[1, 2]',
    ])
    dataset = lora.dataset_from_jsonl(text, seed=0)
    assert len(dataset.train) + len(dataset.eval) == 3
    rejected = {r.line: r.reason for r in dataset.rejected}
    assert set(rejected) == {2, 6, 7, 8}
    assert "not valid JSON" in rejected[2] and "at least a user and an assistant" in rejected[6]
    assert "instruction" in rejected[7] and "JSON object" in rejected[8]
    prompts = {e.prompt for e in dataset.train + dataset.eval}
    assert "Translate\n\nchat" in prompts  # the optional input is appended to the instruction


@pytest.mark.parametrize("text", ["", "\n\n", '{"nope": 1}\n{"instruction": "a", "response": "b"}'])
def test_an_empty_or_unusable_dataset_is_a_clear_error(text):
    with pytest.raises(lora.DatasetError, match="at least 2 usable examples"):
        lora.dataset_from_jsonl(text)


def test_a_huge_upload_is_capped_with_a_note(monkeypatch):
    monkeypatch.setattr(lora.data, "MAX_UPLOAD_LINES", 5)
    text = "\n".join(json.dumps({"instruction": f"q{i}", "response": f"a{i}"}) for i in range(9))
    dataset = lora.dataset_from_jsonl(text)
    assert len(dataset.train) + len(dataset.eval) == 5 and "only the first 5" in dataset.notes[0]


def test_split_holds_out_a_tenth_deterministically():
    text = "\n".join(json.dumps({"instruction": f"q{i}", "response": f"a{i}"}) for i in range(40))
    first, second = lora.dataset_from_jsonl(text, seed=3), lora.dataset_from_jsonl(text, seed=3)
    assert len(first.eval) == 4 and first == second
    assert {e.line for e in first.train} | {e.line for e in first.eval} == set(range(1, 41))


# -- tokenization and batches ----------------------------------------------------------------


def test_prompt_is_masked_and_encoded_like_the_generation_loop(base, pirate):
    tokenizer = base.tokenizer
    example = pirate.train[0]
    tokenized = lora.tokenize_example(tokenizer, example, 512, mask_prompt=True)
    prompt_ids = encode_prompt(tokenizer, example.prompt).tolist()[0]
    assert list(tokenized.input_ids[:tokenized.prompt_length]) == prompt_ids
    assert all(label == lora.IGNORE_INDEX for label in tokenized.labels[:tokenized.prompt_length])
    response = tokenized.input_ids[tokenized.prompt_length:]
    assert list(tokenized.labels[tokenized.prompt_length:]) == list(response)
    assert tokenizer.decode(response).startswith(example.response + "<|im_end|>")
    unmasked = lora.tokenize_example(tokenizer, example, 512, mask_prompt=False)
    assert unmasked.labels == unmasked.input_ids


def test_long_sequences_are_truncated_and_counted_and_empty_responses_dropped(base, pirate):
    lengths = [len(lora.tokenize_example(base.tokenizer, e, 4096, True).input_ids) for e in pirate.train]
    limit = sorted(lengths)[len(lengths) // 2]
    split = lora.tokenize_split(base.tokenizer, pirate.train, limit, True)
    assert split.truncated == sum(n > limit for n in lengths)
    assert all(len(e.input_ids) <= limit for e in split.examples)
    prompt_only = min(lora.tokenize_example(base.tokenizer, e, 4096, True).prompt_length for e in pirate.train)
    dropped = lora.tokenize_split(base.tokenizer, pirate.train, prompt_only, True)
    assert dropped.dropped > 0 and len(dropped.examples) + dropped.dropped == len(pirate.train)


def test_collate_pads_right_and_masks_padding():
    examples = [lora.TokenizedExample((5, 6, 7), (-100, 6, 7), 1, False), lora.TokenizedExample((8,), (8,), 0, False)]
    batch = lora.collate(examples, pad_token_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch.tokens == 4 and batch.target_tokens == 2


def test_shuffled_batches_visit_every_example_once_per_epoch():
    examples = [lora.TokenizedExample((i, i), (i, i), 0, False) for i in range(10)]
    stream = lora.shuffled_batches(examples, 5, seed=1, pad_token_id=0)
    epoch = torch.cat([next(stream).input_ids[:, 0] for _ in range(2)])
    assert sorted(epoch.tolist()) == list(range(10))


# -- settings and schedule -------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("rank", 0, "rank must be between 1 and 64, got 0"),
    ("learning_rate", 1.0, "learning_rate must be between 1e-06 and 0.1"),
    ("dropout", 0.9, "dropout must be between 0 and 0.5"),
    ("batch_size", 2.5, "batch_size must be a whole number"),
    ("max_length", None, "max_length must be a number between 16 and 2048"),
    ("schedule", "linear", "schedule must be one of"),
    ("target_modules", (), "at least one target module"),
])
def test_out_of_range_settings_are_rejected_with_the_range(field, value, message):
    with pytest.raises(lora.LoraSettingsError, match=message):
        lora.LoraSettings(**{field: value})


def test_epochs_set_the_number_of_steps():
    assert lora.LoraSettings(steps=7).total_steps(270) == 7
    assert lora.LoraSettings(epochs=1, batch_size=4, grad_accumulation=2).total_steps(270) == 34  # ceil(270 / 8)


@pytest.mark.parametrize("schedule", lora.SCHEDULES)
def test_learning_rate_schedule_matches_transformers(schedule):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    settings = lora.LoraSettings(schedule=schedule, warmup_steps=4, learning_rate=1e-3)
    total = 20
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=settings.learning_rate)
    make = get_cosine_schedule_with_warmup if schedule == "cosine" else get_constant_schedule_with_warmup
    scheduler = make(optimizer, 4, total) if schedule == "cosine" else make(optimizer, 4)
    for step in range(total):
        assert lora.learning_rate_at(step, total, settings) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
        optimizer.step()
        scheduler.step()


# -- loss, parameter counts, the zero-initialised B ------------------------------------------


def test_loss_equals_transformers_loss_on_a_padded_masked_batch(base, pirate):
    model = lora.attach_lora(base.model, lora.LoraSettings(dropout=0.0))
    split = lora.tokenize_split(base.tokenizer, pirate.train[:4], 96, True)
    batch = lora.collate(split.examples, base.tokenizer.pad_token_id)
    with torch.no_grad():
        total, count = lora.loss_sum(model, batch)
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    assert count == batch.target_tokens
    assert float(total) / count == pytest.approx(float(reference), rel=1e-5)


@pytest.mark.parametrize("targets, rank", [(("q_proj", "v_proj"), 8), (ALL_LINEAR, 3), (("down_proj",), 16)])
def test_trainable_parameters_equal_pefts_count_and_the_arithmetic(base, targets, rank):
    model = lora.attach_lora(base.model, lora.LoraSettings(rank=rank, target_modules=targets))
    trainable, _ = model.get_nb_trainable_parameters()
    budget = lora.lora_budget(base.model, targets, rank)
    config = base.model.config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * hidden // config.num_attention_heads
    shapes = {"q_proj": (hidden, hidden), "k_proj": (kv, hidden), "v_proj": (kv, hidden), "o_proj": (hidden, hidden),
              "gate_proj": (config.intermediate_size, hidden), "up_proj": (config.intermediate_size, hidden),
              "down_proj": (hidden, config.intermediate_size)}
    by_hand = sum(layers * rank * (shapes[t][0] + shapes[t][1]) for t in targets)
    assert trainable == budget.lora_total == by_hand
    assert budget.full_total == sum(layers * shapes[t][0] * shapes[t][1] for t in targets)
    assert budget.reduction_factor == budget.full_total / by_hand


def test_budget_works_on_the_int8_model_too(manager, base):
    int8 = manager.load(precision="int8", activate=False)
    assert lora.linear_layer_names(int8.model) == lora.linear_layer_names(base.model) == ALL_LINEAR
    assert lora.lora_budget(int8.model, ["q_proj"], 4, int8.parameters).lora_total == \
        lora.lora_budget(base.model, ["q_proj"], 4).lora_total


def test_unknown_target_modules_are_rejected_with_the_real_names(base):
    with pytest.raises(lora.LoraSettingsError, match="q_proj"):
        lora.attach_lora(base.model, lora.LoraSettings(target_modules=("c_attn",)))


def test_with_b_zero_the_adapted_model_equals_the_base_before_training(base):
    model = lora.attach_lora(base.model, lora.LoraSettings(target_modules=ALL_LINEAR, dropout=0.0)).eval()
    ids = encode_prompt(base.tokenizer, "What is the capital of France?")
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base.model(input_ids=ids).logits)


# -- training ---------------------------------------------------------------------------------


def test_training_lowers_the_eval_loss_and_leaves_the_base_untouched(base, pirate):
    before = {name: p.clone() for name, p in base.model.named_parameters()}
    settings = lora.LoraSettings(rank=8, alpha=16, dropout=0.0, target_modules=ALL_LINEAR, learning_rate=2e-2,
                               warmup_steps=2, steps=24, eval_every=12, batch_size=4)
    events = []
    model = lora.attach_lora(base.model, settings)
    assert lora.train_lora(model, small_run(base.tokenizer, pirate, settings, n_train=32, emit=events.append)) == "completed"
    evals = [e["eval_loss"] for e in events if e["event"] == "eval"]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 25)) and len(evals) == 3
    assert evals[-1] < 0.8 * evals[0], evals  # clearly below the start
    assert all(e["grad_norm"] > 0 and e["tokens_per_second"] > 0 for e in steps)
    assert all(torch.equal(p, before[name]) for name, p in base.model.named_parameters())


def test_gradient_accumulation_weights_tokens_like_one_big_batch(base, pirate):
    """One step of batch 4 and one of 2 x 2 accumulated see the same 4 examples: same update."""
    results = []
    for batch_size, accumulation in ((4, 1), (2, 2)):
        settings = lora.LoraSettings(dropout=0.0, steps=1, warmup_steps=0, batch_size=batch_size,
                                   grad_accumulation=accumulation, schedule="constant")
        model = lora.attach_lora(base.model, settings)
        lora.train_lora(model, small_run(base.tokenizer, pirate, settings, n_train=8))
        results.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    for name, value in results[0].items():
        torch.testing.assert_close(results[1][name], value, rtol=1e-4, atol=1e-6)


def test_cancel_stops_within_a_step(base, pirate):
    settings = lora.LoraSettings(steps=50, eval_every=1000, warmup_steps=0)
    cancel = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if event.get("step") == 2 and event["event"] == "step":
            cancel.set()

    model = lora.attach_lora(base.model, settings)
    assert lora.train_lora(model, small_run(base.tokenizer, pirate, settings, emit=emit, cancel=cancel)) == "cancelled"
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    assert all(p.grad is None for p in model.parameters())  # the partial step's gradients are dropped


# -- before / after, download, merge ----------------------------------------------------------


def test_before_is_the_base_model_and_after_is_the_adapted_model(trained, base):
    adapter, _ = trained
    prompt = "What is 2 plus 3?"
    [pair] = lora.compare_answers(adapter, [prompt], max_new_tokens=12)
    ids = encode_prompt(base.tokenizer, prompt)
    reference = generate_text(base.model, base.tokenizer, ids, max_new_tokens=12, eos_token_ids=base.eos_token_ids)
    assert pair.before == reference.text
    merged = copy.deepcopy(adapter.model).merge_and_unload()
    assert pair.after == generate_text(merged, base.tokenizer, ids, max_new_tokens=12,
                                       eos_token_ids=base.eos_token_ids).text


def test_next_token_shift_is_the_two_softmaxes(trained, base):
    adapter, _ = trained
    shift = lora.next_token_shift(adapter, "What is 2 plus 3?", top_n=5)
    before = lora.next_token_logits(base.model, base.tokenizer, "What is 2 plus 3?").softmax(-1)
    after = lora.next_token_logits(adapter.model, base.tokenizer, "What is 2 plus 3?").softmax(-1)
    for token in shift.tokens:
        assert token.before == pytest.approx(float(before[token.token_id]), abs=1e-6)
        assert token.after == pytest.approx(float(after[token.token_id]), abs=1e-6)
    assert [t.delta for t in shift.tokens] == sorted((t.delta for t in shift.tokens), reverse=True)
    kl = float((after.double() * (after.double().log2() - before.double().log2())).sum())
    assert shift.kl_bits == pytest.approx(kl, rel=1e-6) and shift.kl_bits > 0
    with pytest.raises(lora.LoraError, match="Enter a prompt"):
        lora.next_token_shift(adapter, "  ")


def test_downloaded_adapter_reloaded_with_peft_reproduces_the_logits(trained, base, tmp_path):
    from peft import PeftModel

    adapter, _ = trained
    archive = lora.save_adapter_zip(adapter, tmp_path)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as bundle:
        assert set(bundle.namelist()) >= {"adapter_model.safetensors", "adapter_config.json"}
        bundle.extractall(unpacked)
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base.model), unpacked).eval()
    ids = encode_prompt(base.tokenizer, "What color is grass?")
    with torch.no_grad():
        expected = adapter.model(input_ids=ids).logits
        assert not torch.allclose(expected, base.model(input_ids=ids).logits)  # the adapter does something
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=0, atol=1e-6)


def test_merge_matches_the_adapter_and_adopt_makes_it_active_until_unloaded(trained, manager, base):
    adapter, _ = trained
    merged = lora.merge_adapter(adapter, base)
    assert merged.spec.key == f"{base.spec.key}+lora:test"
    assert base_model_key(merged.spec.key) == base.spec.key
    ids = encode_prompt(base.tokenizer, "What color is grass?")
    with torch.no_grad():
        torch.testing.assert_close(merged.model(input_ids=ids).logits, adapter.model(input_ids=ids).logits,
                                   rtol=1e-5, atol=1e-5)
    assert manager.adopt(merged, merged.spec.key) is merged
    assert manager.active() is merged and manager.status()["model"]["model"] == merged.spec.key
    # Tabs that reload "the active model" in another precision get a reason, not "Unknown model";
    # the same precision and device is the adopted model itself.
    assert manager.load(merged.spec.key, "none", "cpu", activate=False) is merged
    with pytest.raises(ModelLoadError, match="no weights on disk.*int8 on cpu.*held only as none on cpu"):
        manager.load(merged.spec.key, "int8", "cpu", activate=False)
    assert manager.load(base.spec.key, "none", "cpu") is base and manager.active() is base


def test_merging_for_an_int4_app_gives_an_int4_model(trained, manager):
    from playground.runtime.int4 import Int4Linear

    adapter, _ = trained
    int4 = manager.load(precision="int4", activate=False)
    merged = lora.merge_adapter(adapter, int4)
    assert merged.precision.quantization == "int4"
    assert isinstance(merged.model.model.layers[0].self_attn.q_proj, Int4Linear)
    ids = encode_prompt(int4.tokenizer, "What color is grass?")
    with torch.no_grad():  # the adapter's effect survives the 4-bit packing
        assert not torch.allclose(merged.model(input_ids=ids).logits, int4.model(input_ids=ids).logits, atol=1e-4)


def test_merging_for_an_int8_app_gives_an_int8_model(trained, manager):
    adapter, _ = trained
    int8 = manager.load(precision="int8", activate=False)
    merged = lora.merge_adapter(adapter, int8)
    assert merged.precision.quantization == "int8"
    assert "Linear" in type(merged.model.model.layers[0].self_attn.q_proj).__name__
    assert not isinstance(merged.model.model.layers[0].self_attn.q_proj, torch.nn.Linear)


def test_qlora_path_trains_adapters_beside_a_4bit_base(tiny_tokenizer, tmp_path, pirate):
    """QLoRA as on a GPU, here with bitsandbytes' CPU kernels: NF4 base, fp32 adapters, falling loss.
    (hidden 128: NF4 packs weights in blocks of 64, more than the usual tiny model's 32.)"""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=128, intermediate_size=256,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=256, tie_word_embeddings=True))
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    base = ModelManager(Settings(model=str(tmp_path / "model"), precision="nf4", device="cpu", offline=True,
                                 cache_dir=tmp_path / "cache")).load()
    assert lora.is_4bit(base.model)
    settings = lora.LoraSettings(steps=4, eval_every=4, dropout=0.0, learning_rate=1e-2, warmup_steps=0,
                               target_modules=("q_proj", "v_proj", "o_proj"))
    adapted = lora.attach_lora(base.model, settings)
    assert adapted.get_nb_trainable_parameters()[0] == lora.lora_budget(base.model, settings.target_modules, 8,
                                                                      base.parameters).lora_total
    assert all(p.dtype == torch.float32 for p in adapted.parameters() if p.requires_grad)
    assert type(base.model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"  # the base is untouched
    events = []
    assert lora.train_lora(adapted, small_run(base.tokenizer, pirate, settings, n_train=16, emit=events.append)) == "completed"
    evals = [e["eval_loss"] for e in events if e["event"] == "eval"]
    assert evals[-1] < evals[0]


def test_lora_data_module_documents_itself():
    import doctest

    assert doctest.testmod(lora.data).failed == 0


def test_hostile_jsonl_lines_are_rejected_by_line_not_raised():
    """Issue 24 #9: a line nested 100,000 deep raised RecursionError; "\\ud800" in a text reached the tokenizer."""
    good = '{"instruction": "a", "response": "b"}'
    deep = "[" * 100_000 + "]" * 100_000
    surrogate = '{"instruction": "a\\ud800", "response": "b"}'
    long_message = json.dumps({"messages": [{"role": "robot", "content": "x" * 100_000}, {"role": "assistant",
                                                                                          "content": "y"}]})
    examples, rejected, _ = lora.parse_jsonl("\n".join([good, deep, surrogate, long_message, good]))
    assert len(examples) == 2
    reasons = {r.line: r.reason for r in rejected}
    assert "nested" in reasons[2] and "lone surrogate" in reasons[3] and len(reasons[4]) < 300


# -- the comparison's "too short" sentence (compare.why_unchanged) ------------------------------------------------


def test_a_run_that_changed_the_answers_and_the_loss_says_nothing():
    from playground.lora.compare import why_unchanged

    assert why_unchanged(False, 40, 2e-3, ("eval loss", 3.0, 1.5)) == ""


def test_identical_answers_after_a_real_drop_in_loss_say_the_top_token_did_not_flip_yet():
    from playground.lora.compare import why_unchanged

    sentence = why_unchanged(True, 40, 2e-3, ("eval loss", 3.0, 1.5))
    assert sentence.startswith("The greedy answers did not change although its eval loss fell from 3.00 to 1.50 "
                               "(-50.0%)")
    assert "Try more steps (say 80) or more new tokens per answer" in sentence


def test_a_loss_that_barely_moved_is_explained_even_when_an_answer_changed():
    from playground.lora.compare import why_unchanged

    sentence = why_unchanged(False, 10, 1e-4, ("train loss", 2.0, 1.9))
    assert sentence == ("The adapter has barely trained: this run trained only 10 steps at learning rate 0.0001, "
                        "and its train loss moved only from 2.00 to 1.90 (-5.0%). Try at least 40 steps and a "
                        "learning rate near 0.002, then compare again.")
    assert "no loss was recorded" in why_unchanged(True, 0, 2e-3, None)

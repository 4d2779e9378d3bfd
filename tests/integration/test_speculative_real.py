"""Speculative decoding on the embedded SmolLM2-135M (fp32 target): greedy output is the target's,
token for token, for every draft option and several k, and equals transformers' assisted generation."""

from __future__ import annotations

import pytest
import torch

from playground.drafts import CachedModel, DraftTokenizerError, ModelDraft, PromptLookupDraft, check_same_tokenizer
from playground.generation import generate_text
from playground.sampling import SamplingSettings
from playground.speculative import acceptance_stats, prepare_prompt, speculative_generate

pytestmark = pytest.mark.slow

GREEDY = SamplingSettings(temperature=0.0)
NEW_TOKENS = 20
PROMPT = ("Here is a note: The kettle must not be filled above the MAX line. Unplug the base when the kettle is "
          "not in use. Copy the note word for word.")


@pytest.fixture(scope="module")
def target(model_manager):
    return model_manager.load("smollm2-135m-instruct", "none", "cpu", activate=False)


@pytest.fixture(scope="module")
def int8_copy(model_manager):
    return model_manager.load("smollm2-135m-instruct", "int8", "cpu", activate=False)


@pytest.fixture(scope="module")
def prompt_ids(target):
    return prepare_prompt(target.tokenizer, PROMPT)[0]


@pytest.fixture(scope="module")
def greedy_reference(target, prompt_ids):
    return generate_text(target.model, target.tokenizer, torch.tensor([prompt_ids]), GREEDY, NEW_TOKENS).token_ids


@pytest.fixture(scope="module")
def int4_copy(model_manager):
    return model_manager.load("smollm2-135m-instruct", "int4", "cpu", activate=False)


def drafts(target, int8_copy, int4_copy):
    return {
        "int4 copy": lambda: ModelDraft(int4_copy.model, int4_copy.lock),
        "int8 copy": lambda: ModelDraft(int8_copy.model, int8_copy.lock),
        "layers 20-29 skipped": lambda: ModelDraft(target.model, target.lock, skip_layers=range(20, 30)),
        "prompt lookup": lambda: PromptLookupDraft(target.model.config.vocab_size),
    }


@pytest.mark.parametrize("k", [2, 5])
def test_greedy_speculative_output_is_the_targets_for_every_draft(k, target, int8_copy, int4_copy, prompt_ids,
                                                                  greedy_reference):
    for name, make in drafts(target, int8_copy, int4_copy).items():
        run = speculative_generate(CachedModel(target.model, target.lock), make(), target.tokenizer, prompt_ids,
                                   GREEDY, k, NEW_TOKENS, target.eos_token_ids)
        assert list(run.token_ids) == greedy_reference, name
        stats = acceptance_stats(run)
        assert stats.checked > 0, name  # the draft really proposed tokens


def test_greedy_equals_transformers_assisted_generation(target, int8_copy, prompt_ids):
    ids = torch.tensor([prompt_ids])
    common = {"do_sample": False, "max_new_tokens": NEW_TOKENS, "pad_token_id": target.tokenizer.pad_token_id}
    with torch.inference_mode():
        assisted = target.model.generate(ids, assistant_model=int8_copy.model, num_assistant_tokens=4,
                                          num_assistant_tokens_schedule="constant", **common)[0, len(prompt_ids):]
        lookup = target.model.generate(ids, prompt_lookup_num_tokens=4, **common)[0, len(prompt_ids):]
    for draft, reference in ((ModelDraft(int8_copy.model, int8_copy.lock), assisted),
                             (PromptLookupDraft(target.model.config.vocab_size), lookup)):
        run = speculative_generate(CachedModel(target.model, target.lock), draft, target.tokenizer, prompt_ids, GREEDY,
                                   4, NEW_TOKENS, target.eos_token_ids)
        assert list(run.token_ids) == reference.tolist()


def test_a_draft_with_another_tokenizer_is_refused(target, tiny_tokenizer):
    with pytest.raises(DraftTokenizerError, match="differs from the target's"):
        check_same_tokenizer(target.tokenizer, tiny_tokenizer, "a tiny test model")

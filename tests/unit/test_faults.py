"""Injected faults during generation: out of memory in a forward, a client that stops reading mid-stream.
The model lock is released, the message says what happened, and the next request works. (Failed loads,
a truncated safetensors cache, OOM during training and the cancel event are injected in test_manager.py,
test_loading.py, test_lora_job.py and test_generation.py.)"""

from __future__ import annotations

import threading

import pytest
import torch

from playground.generation import generate_text, generate_tokens
from playground.ui.errors import to_user_error


@pytest.fixture
def prompt_ids(tiny_tokenizer):
    return torch.tensor([tiny_tokenizer.encode("hello world")])


def lock_is_free(lock: threading.Lock) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


def test_out_of_memory_in_a_forward_frees_the_lock_says_so_and_the_next_request_works(
        tiny_model, tiny_tokenizer, prompt_ids, monkeypatch):
    lock = threading.Lock()
    expected = generate_text(tiny_model, tiny_tokenizer, prompt_ids, max_new_tokens=5, lock=lock).text
    original = type(tiny_model).forward
    calls = {"n": 0}

    def forward_that_runs_out_of_memory(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third forward: mid-generation, after the prefill
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny_model), "forward", forward_that_runs_out_of_memory)
    with pytest.raises(torch.OutOfMemoryError) as raised:
        generate_text(tiny_model, tiny_tokenizer, prompt_ids, max_new_tokens=5, lock=lock)
    assert lock_is_free(lock)
    assert str(to_user_error(raised.value)).startswith("'Out of memory. Try a shorter input")
    monkeypatch.setattr(type(tiny_model), "forward", original)
    assert generate_text(tiny_model, tiny_tokenizer, prompt_ids, max_new_tokens=5, lock=lock).text == expected


def test_a_stream_closed_mid_way_stops_generating_and_frees_the_lock(tiny_model, tiny_tokenizer, prompt_ids):
    lock = threading.Lock()
    forwards = []
    hook = tiny_model.register_forward_hook(lambda module, args, output: forwards.append(1))
    try:
        stream = generate_tokens(tiny_model, tiny_tokenizer, prompt_ids, max_new_tokens=50, lock=lock)
        next(stream), next(stream)
        stream.close()  # what gradio does when the browser goes away: the generator is closed
        assert lock_is_free(lock) and len(forwards) == 2
    finally:
        hook.remove()


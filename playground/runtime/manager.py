"""ModelManager: the app's one door to models — thread-safe, cached, with progress and clear errors.

One load runs at a time. Loaded models are cached per (model, precision, device); a failed load
leaves the previously active model in place. Nothing loads at import or construction time.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from playground.config import Settings
from playground.runtime.locks import nobody
from playground.runtime.errors import ModelLoadError
from playground.runtime.loading import LoadedModel, ProgressFn, load_causal_lm, load_embedding_model, resolve_device
from playground.runtime.precision import resolve_precision
from playground.runtime.registry import (
    DEFAULT_EMBEDDING_MODEL,
    UnknownModelError,
    allowed_model_names,
    check_model_allowed,
    resolve_model,
)


class ModelBusyError(ModelLoadError):
    """Another load is running and did not finish within the wait."""


@dataclass(frozen=True)
class LoadKey:
    model: str  # ModelSpec.key
    precision: str  # resolved (Precision.quantization), never "auto"
    device: str  # resolved, never "auto"


@dataclass(frozen=True)
class LoadState:
    """What the header shows about loading, independent of which model is active."""

    phase: str  # idle | loading | ready | failed
    target: str = ""  # what is being (or was last) loaded
    fraction: float = 0.0
    message: str = ""
    elapsed_seconds: float = 0.0


class ModelManager:
    def __init__(self, settings: Settings, max_cached: int = 4) -> None:
        self.settings = settings
        self.max_cached = max_cached
        self._models: OrderedDict[LoadKey, LoadedModel] = OrderedDict()
        self._active: LoadKey | None = None
        self._in_memory: set[str] = set()  # names of adopted models: no weights on disk to load them from
        self._load_lock = threading.Lock()  # one load at a time
        self._state_lock = threading.Lock()  # guards _state, _active, _models bookkeeping
        self._idle = threading.Event()
        self._idle.set()
        self._state = LoadState("idle", message="No model loaded yet.")
        self._started_at = 0.0
        self._embedder: Any = None
        self._embedder_lock = threading.Lock()
        self.allowed_models = allowed_model_names(settings)  # None: any model
        # Whose forwards go first on a model's lock (runtime.locks.ModelLock); the app installs the rule.
        self.urgent: Callable[[], bool] = nobody

    # -- queries -------------------------------------------------------------------------------

    @property
    def state(self) -> LoadState:
        with self._state_lock:
            if self._state.phase == "loading":
                return LoadState(**{**asdict(self._state), "elapsed_seconds": time.perf_counter() - self._started_at})
            return self._state

    def active(self) -> LoadedModel | None:
        with self._state_lock:
            return self._models.get(self._active) if self._active else None

    def _is_urgent(self) -> bool:
        return self.urgent()

    def resident(self, key: LoadKey) -> LoadedModel | None:
        """A model held in memory (None once evicted), without making it active or touching the LRU order."""
        with self._state_lock:
            return self._models.get(key)

    def residents(self) -> list[tuple[LoadKey, LoadedModel]]:
        """Every model held in memory, least recently used first."""
        with self._state_lock:
            return list(self._models.items())

    def status(self) -> dict[str, Any]:
        """Everything the header shows, as plain data (also the `model_status` API)."""
        loaded = self.active()
        return {"loading": asdict(self.state), "model": loaded.status() if loaded else None,
                "cached": [asdict(key) for key in self._models]}

    def require_active(self, wait_seconds: float = 300.0) -> LoadedModel:
        """The active model, waiting for a running load to finish first."""
        if not self._idle.wait(wait_seconds):
            raise ModelBusyError(f"The model is still loading after {wait_seconds:.0f} s: {self.state.message}")
        loaded = self.active()
        if loaded is None:
            state = self.state
            detail = f" The last load failed: {state.message}" if state.phase == "failed" else ""
            raise ModelLoadError("No model is loaded. Pick one in the header and press Load." + detail)
        return loaded

    def resolve_key(self, model: str, precision: str = "auto", device: str = "auto") -> LoadKey:
        """The cache key of a request; refuses a model outside the server's allowlist before touching it."""
        if model in self._in_memory:
            return self._in_memory_key(model, precision, device)
        try:
            check_model_allowed(model, self.allowed_models)
            spec = resolve_model(model)
        except UnknownModelError as error:
            raise ModelLoadError(str(error)) from error
        resolved_device = resolve_device(device)
        return LoadKey(spec.key, resolve_precision(precision, resolved_device).quantization, resolved_device)

    def _in_memory_key(self, model: str, precision: str, device: str) -> LoadKey:
        """An adopted model can only be had as it was adopted: there are no weights to load another copy from."""
        resolved_device = resolve_device(device)
        key = LoadKey(model, resolve_precision(precision, resolved_device).quantization, resolved_device)
        with self._state_lock:
            held = [k for k in self._models if k.model == model]
        if key in held:
            return key
        where = (f"it is held only as {held[0].precision} on {held[0].device}" if held
                 else "it is no longer in memory")
        raise ModelLoadError(f"{model} was built in memory (a base model with a merged LoRA adapter) and has no "
                             f"weights on disk, so it cannot be loaded as {key.precision} on {key.device}: "
                             f"{where}. Load its base model in the header (or Unload in the LoRA tab) for that.")

    # -- loading -------------------------------------------------------------------------------

    def load(
        self,
        model: str | None = None,
        precision: str | None = None,
        device: str | None = None,
        progress: ProgressFn | None = None,
        wait_seconds: float = 600.0,
        activate: bool = True,
    ) -> LoadedModel:
        """Load (or fetch from cache) a model and, by default, make it the active one.

        Raises ModelLoadError with a user-facing message; the active model is untouched on failure.
        """
        model = model or self.settings.model
        precision = precision or self.settings.precision
        device = device or self.settings.device
        key = self.resolve_key(model, precision, device)
        cached = self._cached(key, activate)
        if cached is not None:
            return cached
        if not self._load_lock.acquire(timeout=wait_seconds):
            raise ModelBusyError(f"Another model is loading ({self.state.target}: {self.state.message}). "
                                 "Wait for it to finish, then try again.")
        try:
            cached = self._cached(key, activate)  # it may have been loaded while we waited
            if cached is not None:
                return cached
            return self._load_locked(key, precision, progress, activate)
        finally:
            self._load_lock.release()

    def _cached(self, key: LoadKey, activate: bool) -> LoadedModel | None:
        with self._state_lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                if activate:
                    self._active = key
                    if self._state.phase != "loading":  # a running load keeps reporting its own progress
                        # the header shows this model now: a previous failure or an adopted model's name goes
                        self._state = LoadState("ready", key.model, 1.0, f"Using {loaded.spec.label} (in memory)",
                                                loaded.load_seconds)
            return loaded

    def _load_locked(self, key: LoadKey, requested: str, progress: ProgressFn | None,
                     activate: bool) -> LoadedModel:
        spec = resolve_model(key.model)
        precision = resolve_precision(requested, key.device, spec.key)

        def report(fraction: float, message: str) -> None:
            with self._state_lock:
                self._state = LoadState("loading", spec.key, fraction, message)
            if progress is not None:
                progress(fraction, message)

        with self._state_lock:
            self._started_at = time.perf_counter()
            self._idle.clear()
        try:
            report(0.0, f"Loading {spec.label}")
            loaded = load_causal_lm(spec, precision, key.device, self.settings.cache_dir,
                                    self.settings.offline, report)
        except BaseException as error:
            message = str(error) if isinstance(error, ModelLoadError) else f"{type(error).__name__}: {error}"
            with self._state_lock:
                self._state = LoadState("failed", spec.key, 0.0, message,
                                        time.perf_counter() - self._started_at)
            self._idle.set()
            if isinstance(error, ModelLoadError):
                raise
            raise ModelLoadError(message) from error
        loaded.lock.urgent = self._is_urgent  # the app decides who goes first (the presenter, in a class)
        with self._state_lock:
            self._models[key] = loaded
            if activate:
                self._active = key
            self._evict_beyond_limit()
            self._state = LoadState("ready", spec.key, 1.0, f"Loaded {spec.label} in {loaded.load_seconds:.1f} s",
                                    loaded.load_seconds)
        self._idle.set()
        return loaded

    def _over_budget(self) -> bool:
        budget = self.settings.model_memory_mb * 2**20
        return len(self._models) > self.max_cached or (
            budget > 0 and sum(loaded.memory_bytes for loaded in self._models.values()) > budget)

    def _evict_beyond_limit(self) -> None:
        """Drop least-recently-used models (never the active one) until at most `max_cached` stay and,
        with a budget (`--model-memory-mb`), their weights fit in it."""
        while len(self._models) > 1 and self._over_budget():
            victim = next(key for key in self._models if key != self._active)
            del self._models[victim]
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def adopt(self, loaded: LoadedModel, key_model: str, wait_seconds: float = 60.0) -> LoadedModel:
        """Make an in-memory model (e.g. base + a merged LoRA adapter, key '<base>+lora:<id>') the active
        one, cached like a loaded model; `load(<base>)` switches back."""
        if not self._load_lock.acquire(timeout=wait_seconds):
            raise ModelBusyError(f"Another model is loading ({self.state.target}); try again when it is done.")
        try:
            key = LoadKey(key_model, loaded.precision.quantization, loaded.device)
            with self._state_lock:
                self._models[key] = loaded
                self._models.move_to_end(key)
                self._active = key
                self._in_memory.add(key_model)
                self._evict_beyond_limit()
                self._state = LoadState("ready", key_model, 1.0, f"Using {loaded.spec.label}", loaded.load_seconds)
            return loaded
        finally:
            self._load_lock.release()

    def discard(self, key_model: str) -> int:
        """Forget every copy of an adopted (in-memory) model that is not the active one, e.g. an adapter the
        presenter stopped publishing: nobody can switch to it by name afterwards. Returns how many went."""
        with self._state_lock:
            gone = [k for k in self._models if k.model == key_model and k != self._active]
            for key in gone:
                del self._models[key]
            if not any(k.model == key_model for k in self._models):
                self._in_memory.discard(key_model)
        if gone:
            gc.collect()
        return len(gone)

    def start_background_load(self) -> threading.Thread:
        """Load the configured model in a daemon thread so the page can open at once."""

        def run() -> None:
            try:
                self.load()
            except ModelLoadError:
                pass  # the failure is recorded in self.state and shown in the header
            finally:
                self._idle.set()

        self._idle.clear()  # a request arriving before the thread begins its load waits for it
        thread = threading.Thread(target=run, name="model-preload", daemon=True)
        thread.start()
        return thread

    # -- embedding model (RAG) -----------------------------------------------------------------

    def embedding_model(self, progress: ProgressFn | None = None) -> Any:
        """The embedded sentence-transformers model, loaded once on first use."""
        with self._embedder_lock:
            if self._embedder is None:
                spec = resolve_model(DEFAULT_EMBEDDING_MODEL, kind="embedding")
                device = resolve_device(self.settings.device)
                self._embedder = load_embedding_model(spec, device, self.settings.cache_dir,
                                                      self.settings.offline, progress or (lambda f, m: None))
            return self._embedder

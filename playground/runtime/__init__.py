"""The only package that loads model weights. See docs/ARCHITECTURE.md."""

from playground.runtime.errors import DeviceUnavailableError, ModelLoadError
from playground.runtime.loading import LoadedModel, resolve_device
from playground.runtime.precision import Precision, precision_options, requantize, resolve_precision
from playground.runtime.manager import LoadKey, LoadState, ModelBusyError, ModelManager
from playground.runtime.registry import PRESETS, ModelSpec, UnknownModelError, causal_lm_presets, resolve_model

__all__ = [
    "PRESETS",
    "DeviceUnavailableError",
    "LoadKey",
    "LoadState",
    "LoadedModel",
    "ModelBusyError",
    "ModelLoadError",
    "ModelManager",
    "ModelSpec",
    "Precision",
    "UnknownModelError",
    "causal_lm_presets",
    "precision_options",
    "requantize",
    "resolve_device",
    "resolve_model",
    "resolve_precision",
]

"""The runtime's errors: a load failed for a reason the user can act on (the message names the fix)."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A load failed for a reason the user can act on; the message names the problem and the fix."""


class DeviceUnavailableError(ModelLoadError):
    pass

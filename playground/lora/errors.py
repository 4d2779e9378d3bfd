"""The LoRA area's errors: user-facing problems whose message says what to change (the UI shows it as is)."""

from __future__ import annotations


class LoraError(ValueError):
    """A user-facing problem with the data, the settings or the job; the message says what to change."""


class DatasetError(LoraError):
    pass


class LoraSettingsError(LoraError):
    pass


class JobBusyError(LoraError):
    pass


class NoAdapterError(LoraError):
    pass

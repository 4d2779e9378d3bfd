"""What every tab receives: the settings and the model manager (the app's only door to models)."""

from __future__ import annotations

from dataclasses import dataclass

from playground.config import Settings
from playground.limits import Limits
from playground.runtime import LoadedModel, ModelManager


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    models: ModelManager

    @property
    def limits(self) -> Limits:
        """The per-request caps of this server (tighter on a public deployment)."""
        return self.settings.limits

    def model(self) -> LoadedModel:
        """The active model, waiting for a running load; raises ModelLoadError with a fix if none."""
        return self.models.require_active()

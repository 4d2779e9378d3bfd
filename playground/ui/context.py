"""What every tab receives: the settings, the model manager (the app's only door to models), the sessions
(who is asking, and in which role) and the class (the server's one classroom slot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playground.classroom import ClassHost
from playground.config import Settings
from playground.engine import EngineTokenSource, engine_from_settings
from playground.limits import Limits
from playground.runtime import LoadedModel, ModelManager
from playground.sessions import PresenterGate, SessionRegistry, is_loopback
from playground.ui.access import current_session_id


def sessions_for(settings: Settings) -> SessionRegistry:
    """No presenter key and a loopback-only server: the local user is the presenter (a laptop app)."""
    return SessionRegistry(PresenterGate(settings.presenter_key, open_to_all=is_loopback(settings.host)))


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    models: ModelManager
    sessions: SessionRegistry = field(default=None)  # type: ignore[assignment]  # filled from settings
    classroom: ClassHost = field(default_factory=ClassHost)
    visitor: Any = None  # the page's gr.BrowserState holding the browser's visitor token (an input for handlers
    #                      that must find the visitor's session at page load, before anything else ran)
    engine: EngineTokenSource | None = field(default=None)  # the --engine serving the token-level tabs; filled
    #                                                          from settings (None: the local model serves them)

    def __post_init__(self) -> None:
        if self.sessions is None:
            object.__setattr__(self, "sessions", sessions_for(self.settings))
        if self.engine is None:
            object.__setattr__(self, "engine", engine_from_settings(self.settings))

    def claim_page(self, token: str | None) -> str:
        """Link the calling page to its browser's visitor token (SessionRegistry.claim); returns the token for
        the browser to keep. A page's load events run side by side, so the page's own claim may come after
        them: every page-load handler that acts for the visitor (joins its class, shows its role, its job, its
        model) takes `visitor` as an input and calls this first."""
        return self.sessions.claim(current_session_id(), token)

    @property
    def limits(self) -> Limits:
        """The per-request caps of this server (tighter on a public deployment)."""
        return self.settings.limits

    def model(self) -> LoadedModel:
        """The model the calling session's tabs use: its private model (its own adapter merged), else the
        resident model it picked, else the server's active model (waiting for a running load; raises
        ModelLoadError with a fix if none)."""
        session = self.sessions.find(current_session_id())
        if session is not None and session.private_model is not None:
            return session.private_model
        if session is not None and session.model_key is not None:
            chosen = self.models.resident(session.model_key)
            if chosen is not None:
                return chosen
            session.model_key = None  # evicted: back to the server's model
        return self.models.require_active()

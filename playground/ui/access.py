"""Who is calling: the caller's session (gradio's session hash) and role, for every handler.

gradio sets the calling request in a context variable around each event handler (plain or generator), so
any handler, and anything it calls, can ask which session it serves without a `gr.Request` parameter.
Refusals are `AccessDenied` (a ValueError): `@user_errors` shows them as a plain one-sentence gr.Error.
"""

from __future__ import annotations

from gradio.context import LocalContext

from playground.sessions import Session, SessionRegistry


def current_session_id() -> str | None:
    """gradio's session hash of the request being served; None outside a request (a direct call)."""
    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) if request is not None else None


def current_client_host() -> str | None:
    """The address the request came from (behind a proxy: the proxy's; it bounds what one address holds)."""
    request = LocalContext.request.get(None)
    client = getattr(request, "client", None) if request is not None else None
    return getattr(client, "host", None)


def current_session(sessions: SessionRegistry) -> Session:
    """The caller's session: the browser's visitor session when the page claimed one (it survives reloads),
    else the page's own. A new session on a full server is refused (SessionsFull, a one-sentence message)."""
    return sessions.get(current_session_id(), host=current_client_host())


def visitor_id(sessions: SessionRegistry) -> str:
    """The id that owns things (a training job, a poll answer, class membership): stable across reloads."""
    return current_session(sessions).id


def require_presenter(sessions: SessionRegistry, action: str) -> None:
    """Refuse `action` (words that finish "Only the presenter can ...") unless the caller is the presenter."""
    sessions.require_presenter(current_session_id(), action)

"""Authentication by the console's session cookie, for requests without a bearer token.

State-changing requests (anything but GET, HEAD, OPTIONS) authenticated by the cookie
must echo the session's CSRF token in `X-CSRF-Token`, and a cross-origin `Origin` is
refused, on top of the cookie's SameSite=Strict.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException

from api.deps import ApiDeps
from console import COOKIE, CSRF_HEADER, Session, csrf_matches
from security import Principal

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    origin = connection.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == connection.headers.get("host", "")


async def current_session(connection: ASGIConnection[Any, Any, Any, Any], deps: ApiDeps) -> tuple[str, Session] | None:
    """The valid session the request's cookie names, if any."""
    console = deps.console
    session_id = connection.cookies.get(COOKIE)
    if console is None or not session_id:
        return None
    session = console.sessions.get(session_id)
    if session is None:
        return None
    checked = await console.still_valid(session, deps.security)
    if checked is None:
        console.sessions.close(session_id)
        return None
    return session_id, checked


async def session_principal(connection: ASGIConnection[Any, Any, Any, Any], deps: ApiDeps) -> Principal | None:
    found = await current_session(connection, deps)
    if found is None:
        return None
    _, session = found
    if connection.scope.get("method", "GET") not in _SAFE:
        if not _same_origin(connection):
            raise PermissionDeniedException(detail="cross-origin request refused")
        if not csrf_matches(session, connection.headers.get(CSRF_HEADER)):
            raise PermissionDeniedException(
                detail="missing or wrong X-CSRF-Token: send the csrf_token of GET /api/v1/session"
            )
    return session.principal

"""Console logins: open, read and close a cookie session (see `api.cookie_auth` for its use)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException

from api.auth import requires
from api.cookie_auth import current_session, session_principal
from api.deps import Deps
from api.examples import body
from api.problems import Problem, problem_response
from console import COOKIE, Session
from security import Actor, Permission, Principal, PrincipalKind


class Login(msgspec.Struct, forbid_unknown_fields=True):
    """A user name and password, or an API token."""

    username: str | None = None
    password: str | None = None
    token: str | None = None


_LOGIN_EXAMPLES = body(
    ("password", "A user name and password", {"username": "olga", "password": "change-me-now"}),
    ("token", "An API token instead", {"token": "fh_..."}),
)


class SessionView(msgspec.Struct):
    authenticated: bool
    # false: development mode, no login; every request acts as an admin of every fleet.
    auth_enabled: bool
    user: str | None = None
    role: str | None = None
    fleets: list[str] = msgspec.field(default_factory=list)
    permissions: list[str] = msgspec.field(default_factory=list)
    # Send back in X-CSRF-Token on every state-changing request made with the session cookie.
    csrf_token: str | None = None


def _view(principal: Principal | None, session: Session | None, auth_enabled: bool) -> SessionView:
    if principal is None:
        return SessionView(authenticated=False, auth_enabled=auth_enabled)
    return SessionView(
        authenticated=True,
        auth_enabled=auth_enabled,
        user=principal.name,
        role=principal.role.value,
        fleets=sorted(principal.fleets),
        permissions=sorted(p.value for p in principal.permissions if p is not Permission.PUBLIC),
        csrf_token=session.csrf if session is not None else None,
    )


def _cookie(request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path="/",
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _remote(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client is not None else "unknown"


class SessionController(Controller):
    path = "/api/v1/session"
    tags = ["console"]  # noqa: RUF012 - Litestar reads this class attribute

    @get(
        "/",
        summary="The console login this request carries (if any), with its CSRF token",
        opt=requires(Permission.PUBLIC),
    )
    async def read(self, request: Request[Any, Any, Any], deps: Deps) -> SessionView:
        if not deps.auth_enabled:
            return _view(Principal.dev(), None, auth_enabled=False)
        found = await current_session(request, deps)
        return _view(found[1].principal, found[1], True) if found else _view(None, None, True)

    @post(
        "/",
        summary="Log in to the console: sets an HttpOnly session cookie",
        status_code=200,
        opt=requires(Permission.PUBLIC),
    )
    async def login(
        self, request: Request[Any, Any, Any], deps: Deps, data: Annotated[Login, _LOGIN_EXAMPLES]
    ) -> Response[Any]:
        console, security = deps.console, deps.security
        if not deps.auth_enabled:
            return Response(_view(Principal.dev(), None, auth_enabled=False))
        if console is None or security is None:
            raise NotAuthorizedException(detail="console logins are not available on this hub")
        ip = _remote(request)
        name = data.username or ""
        keys = (f"ip:{ip}", f"user:{name}") if name else (f"ip:{ip}",)
        wait = max(console.login_backoff.blocked_for(k) for k in keys)
        if wait > 0:
            problem = Problem(
                "https://fleethub.dev/problems/login-backoff",
                "Too many failed logins",
                429,
                f"too many failed logins; try again in {wait:.0f} s",
            )
            return problem_response(request, problem, {"Retry-After": str(max(1, round(wait)))})
        principal: Principal | None = None
        if data.token:
            principal = await security.authenticate_token(data.token.strip())
        elif data.username and data.password:
            principal = await security.login_user(data.username, data.password)
        if principal is None or principal.kind is not PrincipalKind.USER:
            for key in keys:
                console.login_backoff.failed(key)
            raise NotAuthorizedException(detail="wrong user name or password, or an unknown, revoked or expired token")
        for key in keys:
            console.login_backoff.succeeded(key)
        session_id, session = console.sessions.open(principal)
        await security.audit(
            Actor(principal.actor, f"{ip}"), "console.login", detail={"via": "token" if data.token else "password"}
        )
        response = Response(_view(principal, session, True))
        response.set_cookie(_cookie(request, session_id, int(console.settings.session_ttl_s)))
        return response

    @delete("/", summary="Log out of the console", status_code=204, opt=requires(Permission.PUBLIC))
    async def logout(self, request: Request[Any, Any, Any], deps: Deps) -> Response[None]:
        if deps.console is not None:
            principal = await session_principal(request, deps)
            session_id = request.cookies.get(COOKIE)
            if principal is not None and session_id:
                deps.console.sessions.close(session_id)
        response: Response[None] = Response(None, status_code=204)
        response.set_cookie(_cookie(request, "", 0))
        return response

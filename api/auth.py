"""Authentication and authorisation for every route: fail closed.

Every route handler must say what it needs in its `opt`:

    @get("/{vehicle_id:str}/commands", opt=requires(Permission.COMMANDS_READ))
    @post("/{vehicle_id:str}/commands", opt=requires(Permission.COMMANDS_SEND))

`authorize`, installed as an app-level guard by `create_app`, then

1. refuses (403) any route that declares no permission, so a new module cannot
   forget to protect a route (`tests/integration/api/test_route_permissions.py`
   enumerates every route as well);
2. authenticates the request: `Authorization: Bearer <token>` (401 when missing,
   unknown, revoked or expired), else the console's session cookie (`api.cookie_auth`),
   or the development principal when `auth.enabled` is false;
3. checks the principal's role has the permission (403);
4. for a route with a `vehicle_id` path parameter, answers 404 when the vehicle
   belongs to a fleet the principal does not see, exactly as for a vehicle that does
   not exist, so nothing leaks across tenants.

Handlers read the principal with a `principal: Caller` parameter, filter lists with
`principal.fleet_filter()`, check resources found by other keys with
`ensure_fleet(principal, fleet, what)`, and hand the service `actor=actor_of(request)`:
the service builds the audit entry and its store commits it in the same transaction as
the change (`security.audit`). A commands module, for example, needs no more than:

    @post("/{vehicle_id:str}/commands", opt=requires(Permission.COMMANDS_SEND))
    async def send(self, request: Request[Any, Any, Any], deps: Deps, vehicle_id: VehicleId, ...) -> ...:
        ...  # the guard has already 404'd a vehicle of another fleet
        await service.create(vehicle_id, data.name, data.args, actor=actor_of(request))

`audit(...)` records after the fact, for writes whose store cannot take the entry yet
(twin desired state and tags, written by the ingest pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from api.cookie_auth import session_principal
from api.deps import ApiDeps
from kernel import NotFound
from security import Actor, Permission, Principal

# How handlers ask for the caller: `principal: Caller`.
Caller = NamedDependency[Principal]

OPT_PERMISSION: Final = "permission"
# For /healthz and /metrics: public when this `ApiDeps` flag is on, else the permission applies.
OPT_PUBLIC_IF: Final = "public_if"
_STATE_PRINCIPAL: Final = "fleethub_principal"
_STATE_FLEET: Final = "fleethub_vehicle_fleet"


def requires(permission: Permission, **extra: Any) -> dict[str, Any]:
    """The `opt` of a route handler that needs `permission`."""
    return {OPT_PERMISSION: permission, **extra}


def permission_of(handler: BaseRouteHandler) -> Permission | None:
    declared = handler.opt.get(OPT_PERMISSION)
    if isinstance(declared, Permission):
        return declared
    if isinstance(declared, str):
        try:
            return Permission(declared)
        except ValueError:
            return None
    return None


def is_framework_route(handler: BaseRouteHandler) -> bool:
    """Litestar's own routes (the OpenAPI schema and docs UI), which hold no fleet data."""
    fn = getattr(handler, "fn", None)
    return bool(getattr(fn, "__module__", "").startswith("litestar."))


def deps_of(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiDeps:
    deps: ApiDeps = connection.app.state["fleethub_deps"]
    return deps


def _unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": 'Bearer realm="fleethub"'})


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    permission = permission_of(handler)
    if permission is None:
        if is_framework_route(handler):
            return
        raise PermissionDeniedException(detail="this route declares no permission; it is closed until it does")
    deps = deps_of(connection)
    public_if = handler.opt.get(OPT_PUBLIC_IF)
    if permission is Permission.PUBLIC or (public_if is not None and getattr(deps, public_if, False)):
        return
    principal = await _authenticate(connection, deps)
    if not principal.can(permission):
        raise PermissionDeniedException(
            detail=f"role '{principal.role.value}' lacks the permission '{permission.value}'"
        )
    connection.state[_STATE_PRINCIPAL] = principal
    vehicle_id = connection.path_params.get("vehicle_id")
    if isinstance(vehicle_id, str):
        fleet = await vehicle_fleet(deps, vehicle_id)
        connection.state[_STATE_FLEET] = fleet
        if not principal.all_fleets and not principal.sees(fleet):
            raise NotFound(f"vehicle '{vehicle_id}' not found")


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any], deps: ApiDeps) -> Principal:
    if not deps.auth_enabled:
        return Principal.dev()
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        # The console's browser sends its session cookie instead (and a CSRF token on writes).
        from_session = await session_principal(connection, deps)
        if from_session is not None:
            return from_session
        raise _unauthorized("send an API token: Authorization: Bearer <token>")
    if deps.security is None:
        raise _unauthorized("no credential store is configured")
    principal = await deps.security.authenticate_token(token.strip())
    if principal is None:
        raise _unauthorized("the token is unknown, revoked or expired")
    return principal


async def vehicle_fleet(deps: ApiDeps, vehicle_id: str) -> str | None:
    """The fleet of a vehicle: its twin's, else its credential's; None when unknown."""
    try:
        return (await deps.service.get_twin(vehicle_id)).fleet
    except NotFound:
        pass
    if deps.security is not None:
        return await deps.security.fleet_of(vehicle_id)
    return None


def actor_of(request: Request[Any, Any, Any]) -> Actor:
    """Who made a request and from where, as the audit log records it."""
    return Actor.of(principal_of(request), remote_of(request))


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """The principal `authorize` admitted (the development principal on public routes)."""
    found = request.state.get(_STATE_PRINCIPAL)
    return found if isinstance(found, Principal) else Principal.dev()


def ensure_fleet(principal: Principal, fleet: str | None, what: str) -> None:
    """404 (as if absent) for a resource of a fleet the principal does not see."""
    if not principal.sees(fleet):
        raise NotFound(f"{what} not found")


def remote_of(request: Request[Any, Any, Any]) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client is not None else "unknown"


async def audit(
    request: Request[Any, Any, Any],
    deps: ApiDeps,
    action: str,
    *,
    vehicle_id: str | None = None,
    fleet: str | None = None,
    target: str | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    """Record a write in the audit log: who (the principal), what, when, from where."""
    if deps.security is None:
        return
    if fleet is None and vehicle_id is not None:
        found = request.state.get(_STATE_FLEET)
        fleet = found if isinstance(found, str) else await vehicle_fleet(deps, vehicle_id)
    actor = Actor.of(principal_of(request), remote_of(request))
    # The entry, like every response, leaves out what has no value rather than carrying nulls.
    present = {k: v for k, v in (detail or {}).items() if v is not None}
    await deps.security.audit(actor, action, vehicle_id=vehicle_id, fleet=fleet, target=target, detail=present)

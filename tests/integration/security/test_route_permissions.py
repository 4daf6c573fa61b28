"""Every route of the app declares its permission, and the guard closes any route that does not."""

import dataclasses

import httpx
from litestar import Litestar, get
from litestar.datastructures import State
from prometheus_client import CollectorRegistry

from api import ApiDeps, ComponentHealth, Health, create_app
from api.auth import OPT_PUBLIC_IF, authorize, is_framework_route, permission_of
from api.broker_auth import broker_only
from console import Console, ConsoleSettings
from security import Permission
from twin import MemoryStore, TwinService


async def _ok() -> Health:
    return Health("ok", {"store": ComponentHealth("ok")})


def _deps(**kw) -> ApiDeps:
    store = MemoryStore()
    return ApiDeps(service=TwinService(store), history=store, registry=CollectorRegistry(), health=_ok, **kw)


def _app() -> Litestar:
    return create_app(_deps())


def test_every_route_declares_a_permission() -> None:
    """Each handler of ours names a Permission in opt; only Litestar's schema routes are exempt."""
    undeclared, checked = [], 0
    for route in _app().routes:
        for handler in getattr(route, "route_handlers", ()):
            if is_framework_route(handler):
                continue
            checked += 1
            if permission_of(handler) is None:
                undeclared.append(f"{sorted(handler.http_methods)} {route.path}")
    assert checked > 30
    assert undeclared == []


def _console_app() -> Litestar:
    deps = _deps()
    return create_app(dataclasses.replace(deps, console=Console(ConsoleSettings(), deps.service)))


def test_only_health_metrics_and_the_console_shell_may_be_public() -> None:
    """No data route is public: /healthz and /metrics through their settings; the console's page, assets,
    settings and login (which hold no fleet data) always. (The console's static files are served by
    Litestar's own handler, which `is_framework_route` exempts like the schema routes.) The broker's
    endpoints need no token but the broker's shared secret, checked by their own guard."""
    public, broker = [], []
    for route in _console_app().routes:
        for handler in getattr(route, "route_handlers", ()):
            if is_framework_route(handler):
                continue
            if permission_of(handler) is Permission.PUBLIC or OPT_PUBLIC_IF in handler.opt:
                if broker_only in handler.resolve_guards():
                    broker.append(route.path)
                else:
                    public.append(route.path)
    assert all(path.startswith("/broker-auth/") for path in broker)
    assert len(set(broker)) == 6
    assert sorted(set(public)) == [
        "/",
        "/api/v1/console/config",
        "/api/v1/session",
        "/healthz",
        "/metrics",
    ]


async def test_a_route_without_a_permission_is_refused() -> None:
    """A handler that forgets opt={"permission": ...} answers 403 even in development mode."""

    @get("/forgotten")
    async def forgotten() -> str:
        return "leak"

    deps = _deps(auth_enabled=False)
    app = Litestar([forgotten], guards=[authorize], state=State({"fleethub_deps": deps}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        assert (await client.get("/forgotten")).status_code == 403


async def test_without_a_credential_store_authenticated_routes_are_closed() -> None:
    """ApiDeps left at its defaults (auth on, no store) answers 401: the API fails closed."""
    app = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        assert (await client.get("/api/v1/vehicles")).status_code == 401
        assert (await client.get("/api/v1/vehicles", headers={"Authorization": "Bearer fh_x"})).status_code == 401
        assert (await client.get("/healthz")).status_code == 200

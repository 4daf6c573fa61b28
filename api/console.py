"""The console's pages and endpoints: `/`, its static assets, the fleet in bulk, the live stream, tiles.

Every asset is served by the hub. The page's Content-Security-Policy allows requests
to the hub's own origin only, plus the tile server's when `console.tile_url` names one.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, Response, Router, get
from litestar.exceptions import HTTPException
from litestar.params import PathParameter
from litestar.response import Stream
from litestar.static_files import create_static_files_router

from api.auth import Caller, requires
from api.cookie_auth import current_session
from api.deps import ApiDeps, Deps
from console import COOKIE, STATIC_DIR, Console, ConsoleSettings, TooManyClients
from kernel import NotFound
from security import Permission

_encode = msgspec.json.Encoder().encode
# Bodies at least this large are gzipped for browsers that accept it (the bulk fleet: ~2 MB at 20,000).
_GZIP_MIN = 16_384
# How long the bulk endpoint waits for the index's first load before answering 503.
_READY_WAIT_S = 30.0


class ConsoleConfig(msgspec.Struct):
    auth_enabled: bool
    # A tile URL template for the basemap, or "" (draw the bundled outline; no request leaves the hub).
    tile_url: str
    tile_attribution: str
    tile_max_zoom: int
    live_interval_s: float


def console_of(deps: ApiDeps) -> Console:
    if deps.console is None:
        raise NotFound("the console is disabled on this hub (console.enabled = false)")
    return deps.console


def _tile_url(settings: ConsoleSettings) -> str:
    if settings.tile_mbtiles:
        return "/api/v1/console/tiles/{z}/{x}/{y}"
    return settings.tile_url


def content_security_policy(settings: ConsoleSettings) -> str:
    images = "'self' data: blob:"
    if settings.tile_url:
        parts = urlsplit(settings.tile_url)
        host = parts.netloc.replace("{s}.", "*.")
        images += f" {parts.scheme}://{host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src {images}; connect-src 'self'; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


@functools.cache
def _index() -> bytes:
    # Read once: the file ships with the package.
    return (STATIC_DIR / "index.html").read_bytes()


@get("/", include_in_schema=False, opt=requires(Permission.PUBLIC))
async def index_page(deps: Deps) -> Response[bytes]:
    console = console_of(deps)
    return Response(
        _index(),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": content_security_policy(console.settings),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


@get(
    "/api/v1/console/config",
    tags=["console"],
    summary="Console settings the page needs",
    opt=requires(Permission.PUBLIC),
)
async def console_config(deps: Deps) -> ConsoleConfig:
    settings = console_of(deps).settings
    return ConsoleConfig(
        auth_enabled=deps.auth_enabled,
        tile_url=_tile_url(settings),
        tile_attribution=settings.tile_attribution,
        tile_max_zoom=settings.tile_max_zoom,
        live_interval_s=settings.live_interval_s,
    )


@get(
    "/api/v1/console/fleet",
    tags=["console"],
    summary="Every vehicle of the caller's fleets as parallel arrays (id, fleet, lat, lon, speed, soc, state ...)",
    opt=requires(Permission.TWINS_READ),
)
async def fleet(request: Request[Any, Any, Any], deps: Deps, principal: Caller) -> Response[bytes]:
    console = console_of(deps)
    try:
        await asyncio.wait_for(console.index.ready.wait(), _READY_WAIT_S)
    except TimeoutError:
        raise HTTPException(status_code=503, detail="the console is still loading the fleet; try again") from None
    console.feed.refresh_index()
    scope = principal.fleet_filter()
    columns = console.index.columns(None if scope is None else frozenset(scope))
    body = _encode({"seq": console.feed.seq, "at": time.time(), "count": len(columns), "vehicles": columns})
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if len(body) >= _GZIP_MIN and "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


@get(
    "/api/v1/console/live",
    tags=["console"],
    summary="Server-sent events: batches of changed vehicles, alert and command events of the caller's fleets",
    opt=requires(Permission.TWINS_READ),
)
async def live(request: Request[Any, Any, Any], deps: Deps, principal: Caller) -> Stream:
    console = console_of(deps)
    scope = principal.fleet_filter()
    try:
        client = console.feed.connect(
            None if scope is None else frozenset(scope),
            alerts=principal.can(Permission.ALERTS_READ),
            commands=principal.can(Permission.COMMANDS_READ),
        )
    except TooManyClients as exc:
        raise HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "10"}) from None
    cookie_session = request.cookies.get(COOKIE) is not None and deps.auth_enabled

    async def still_allowed() -> bool:
        """A logout, a revoked token or a deleted user ends the stream at the next heartbeat."""
        if cookie_session:
            return await current_session(request, deps) is not None
        if principal.token_id is not None and deps.security is not None:
            token = await deps.security.token(principal.token_id)
            return token is not None and token.valid_at(deps.security.clock())
        return True

    async def events() -> AsyncIterator[bytes]:
        try:
            retry_ms = int(max(1.0, console.settings.live_interval_s) * 2000)
            yield f'retry: {retry_ms}\nevent: hello\ndata: {{"seq": {console.feed.seq}}}\n\n'.encode()
            async for batch in client.batches(console.settings.live_heartbeat_s):
                if batch is None:
                    if not await still_allowed():
                        return
                    yield b": ping\n\n"
                    continue
                yield b"event: batch\ndata: " + batch + b"\n\n"
        finally:
            console.feed.disconnect(client)

    return Stream(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@get(
    "/api/v1/console/tiles/{z:int}/{x:int}/{y:int}",
    tags=["console"],
    summary="A basemap tile from console.tile_mbtiles",
    include_in_schema=False,
    opt=requires(Permission.TWINS_READ),
)
async def tile(
    deps: Deps,
    z: Annotated[int, PathParameter()],
    x: Annotated[int, PathParameter()],
    y: Annotated[int, PathParameter()],
) -> Response[bytes]:
    console = console_of(deps)
    if console.tiles is None:
        raise NotFound("no tile file is configured (console.tile_mbtiles)")
    data = await console.tiles.tile(z, x, y)
    if data is None:
        raise NotFound(f"no tile {z}/{x}/{y}")
    return Response(data, media_type=console.tiles.content_type, headers={"Cache-Control": "max-age=86400"})


def console_routes(*, enabled: bool) -> list[Any]:
    """The console's route handlers; its assets under /console/ always (the API docs page uses them too)."""
    assets: Router = create_static_files_router(
        path="/console",
        directories=[STATIC_DIR],
        opt=requires(Permission.PUBLIC),
        include_in_schema=False,
        send_as_attachment=False,
    )
    return [index_page, console_config, fleet, live, tile, assets] if enabled else [assets]

"""The `[console]` settings: the operator web UI served at `/`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class ConsoleSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: Annotated[
        bool, Meta(description="false: no web UI at `/` and no console endpoints (the HTTP API is unaffected).")
    ] = True
    tile_url: Annotated[
        str,
        Meta(
            description="A raster tile URL template ({z}/{x}/{y}, optional {s}) for a real basemap, e.g. your own "
            'tile server. "" (the default): no request leaves the hub; the map draws a bundled country outline.'
        ),
    ] = ""
    tile_attribution: Annotated[
        str,
        Meta(description="Shown in the map's corner when tile_url or tile_mbtiles is set (tile providers require it)."),
    ] = ""
    tile_mbtiles: Annotated[
        str, Meta(description="A local MBTiles file of raster tiles, served by the hub at /console/tiles/{z}/{x}/{y}.")
    ] = ""
    tile_max_zoom: Annotated[int, Meta(ge=1, le=24, description="The deepest zoom level the map offers.")] = 19
    session_ttl_s: Annotated[float, Meta(gt=0, description="A console login lasts this long (seconds).")] = 12 * 3600.0
    session_idle_s: Annotated[
        float, Meta(gt=0, description="A console login ends sooner after this long unused (seconds).")
    ] = 3600.0
    max_sessions: Annotated[
        int, Meta(ge=1, description="Logins held at once; the least recently used is ended beyond it.")
    ] = 10_000
    live_interval_s: Annotated[
        float,
        Meta(
            ge=0.05,
            le=60,
            description="A live client gets at most one update per vehicle per interval, batched (seconds).",
        ),
    ] = 1.0
    live_max_clients: Annotated[
        int, Meta(ge=1, description="Live streams open at once; more are refused (503) until one closes.")
    ] = 200
    live_client_buffer: Annotated[
        int,
        Meta(
            ge=1,
            description="Batches waiting for one live client; a client that falls this far behind is dropped "
            "(it reconnects and resynchronises from the REST API).",
        ),
    ] = 10
    live_heartbeat_s: Annotated[
        float,
        Meta(
            gt=0,
            description="A comment line on an idle stream this often, so proxies keep it open and dead peers "
            "are noticed.",
        ),
    ] = 15.0

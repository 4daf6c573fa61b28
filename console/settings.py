"""The `[console]` settings: the operator web UI served at `/`."""

from __future__ import annotations

from typing import Annotated

import msgspec


class ConsoleSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # false: no web UI at `/` and no console endpoints (the HTTP API is unaffected).
    enabled: bool = True
    # A raster tile URL template ({z}/{x}/{y}, optional {s}) for a real basemap, e.g. your own tile
    # server. "" (the default): no request leaves the hub; the map draws a bundled country outline.
    tile_url: str = ""
    # Shown in the map's corner when tile_url or tile_mbtiles is set (tile providers require it).
    tile_attribution: str = ""
    # A local MBTiles file of raster tiles, served by the hub at /console/tiles/{z}/{x}/{y}.
    tile_mbtiles: str = ""
    tile_max_zoom: Annotated[int, msgspec.Meta(ge=1, le=24)] = 19
    # A console login lasts this long (seconds), and ends sooner after this long unused.
    session_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 12 * 3600.0
    session_idle_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    # Logins held at once; the least recently used is ended beyond it.
    max_sessions: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    # A live client gets at most one update per vehicle per interval, batched (seconds).
    live_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 1.0
    # Live streams open at once; more are refused (503) until one closes.
    live_max_clients: Annotated[int, msgspec.Meta(ge=1)] = 200
    # Batches waiting for one live client; a client that falls this far behind is dropped (it reconnects
    # and resynchronises from the REST API).
    live_client_buffer: Annotated[int, msgspec.Meta(ge=1)] = 10
    # A comment line on an idle stream this often, so proxies keep it open and dead peers are noticed.
    live_heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0

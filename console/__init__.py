"""The operator console: a web UI served by the hub at `/`, and the server side it needs.

`Console` holds an in-memory index of every vehicle (for the map and the list), the
live feed (coalesced, batched, bounded per client) and the console's login sessions.
`api.console` serves its pages, assets and endpoints; the static front end lives in
`web-ui/` (ES modules, no build step; libraries vendored in `web-ui/vendor/`).
"""

from console.index import FleetIndex, OpenAlerts
from console.live import ALERT_PREFIX, COMMAND_PREFIX, LiveClient, LiveFeed, LiveSink, Publisher, TooManyClients
from console.rows import Columns, VehicleRow, VehicleState, row_of
from console.service import STATIC_DIR, Console
from console.sessions import COOKIE, CSRF_HEADER, MemorySessions, Session, SessionStore, csrf_matches
from console.settings import ConsoleSettings

__all__ = [
    "ALERT_PREFIX",
    "COMMAND_PREFIX",
    "COOKIE",
    "CSRF_HEADER",
    "STATIC_DIR",
    "Columns",
    "Console",
    "ConsoleSettings",
    "FleetIndex",
    "LiveClient",
    "LiveFeed",
    "LiveSink",
    "MemorySessions",
    "OpenAlerts",
    "Publisher",
    "Session",
    "SessionStore",
    "TooManyClients",
    "VehicleRow",
    "VehicleState",
    "csrf_matches",
    "row_of",
]

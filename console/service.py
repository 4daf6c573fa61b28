"""The console's server side in one object: fleet index, live feed, sessions and tiles."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog
from prometheus_client import CollectorRegistry

from console.index import FleetIndex, OpenAlerts, TwinSource
from console.live import LiveFeed, LiveMetrics
from console.sessions import MemorySessions, Session, SessionStore
from console.settings import ConsoleSettings
from console.tiles import MbTiles
from security import LoginBackoff, Principal, PrincipalKind, SecurityService

log = structlog.get_logger(__name__)

# Not a valid module name on purpose: setuptools would take its folders for packages.
STATIC_DIR = Path(__file__).parent / "web-ui"


class Console:
    """Use as an async context manager: it loads the index and runs the live ticker while open."""

    def __init__(
        self,
        settings: ConsoleSettings,
        twins: TwinSource,
        *,
        open_alerts: OpenAlerts | None = None,
        registry: CollectorRegistry | None = None,
        sessions: SessionStore | None = None,
        login_backoff: LoginBackoff | None = None,
    ) -> None:
        self.settings = settings
        self.twins = twins
        self.open_alerts = open_alerts
        self.index = FleetIndex()
        self.feed = LiveFeed(
            self.index,
            interval_s=settings.live_interval_s,
            max_clients=settings.live_max_clients,
            client_buffer=settings.live_client_buffer,
            metrics=LiveMetrics(registry) if registry is not None else None,
        )
        self.sessions: SessionStore = sessions or MemorySessions(
            ttl_s=settings.session_ttl_s, idle_s=settings.session_idle_s, max_sessions=settings.max_sessions
        )
        # Failed console logins, per address and per user name (the [abuse] login settings).
        self.login_backoff = login_backoff or LoginBackoff(free=3, base_s=1.0, max_s=300.0)
        self.tiles = MbTiles(settings.tile_mbtiles) if settings.tile_mbtiles else None
        self.static_dir = STATIC_DIR
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._load(), name="console-index-load"),
            loop.create_task(self.feed.run(), name="console-live"),
        ]
        return self

    def close_streams(self) -> None:
        """End every live stream (the hub is stopping)."""
        for client in list(self.feed.clients):
            self.feed.disconnect(client)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close_streams()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _load(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.index.load(self.twins, self.open_alerts)
            # The store may be briefly unavailable at start; the console waits rather than stay empty.
            except Exception as exc:
                log.warning("console fleet index load failed, retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            return

    async def still_valid(self, session: Session, security: SecurityService | None) -> Session | None:
        """The session with its principal re-read from the security store; None once it no longer holds."""
        principal = session.principal
        if principal.kind is not PrincipalKind.USER or security is None:
            return session
        if principal.token_id is not None:
            token = await security.token(principal.token_id)
            if token is None or not token.valid_at(security.clock()):
                return None
        user = await security.find_user(principal.name)
        if user is None:
            # The bootstrap token's principal has no stored user; it lives as long as its session.
            return session if principal.name == "bootstrap" and principal.token_id is None else None
        if user.disabled:
            return None
        session.principal = Principal.user(user.name, user.role, user.fleets, token_id=principal.token_id)
        return session

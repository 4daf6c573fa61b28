"""The state of a node's PostgreSQL LISTEN connections, for `/healthz` and `/metrics`.

A node in worker mode holds up to two: the console's live relay (`fleethub_live`) and the
forwarded-writes listener (`fleethub_requests`). Each reconnects on its own with backoff;
while one is down the node still works (forwarded writes are polled, the live relay
re-reads everything once it is back), so a down listener is reported, not fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from psycopg import sql

from kernel import isoformat

log = structlog.get_logger(__name__)

# Reconnect backoff of both listeners: from the first delay, doubling, up to the last.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


class ListenMetrics:
    """One gauge and one counter per listener (label `listener`: `live` or `requests`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.listening = Gauge(
            "fleethub_cluster_listening",
            "1 while this node's LISTEN connection is open (worker mode), 0 while it reconnects",
            ["listener"],
            registry=registry,
        )
        self.reconnects = Counter(
            "fleethub_cluster_listen_reconnects",
            "LISTEN connections of this node lost and reopened (worker mode)",
            ["listener"],
            registry=registry,
        )


class ListenState:
    """Whether one LISTEN connection is open, since when, how often it was lost, and why last."""

    def __init__(self, name: str, metrics: ListenMetrics | None = None) -> None:
        self.name = name
        self.metrics = metrics
        self.listening = False
        # Wall-clock time of the last change (opened or lost); None until the first attempt ends.
        self.since: float | None = None
        self.reconnects = 0
        self.last_error: str | None = None
        if metrics is not None:
            metrics.listening.labels(name).set(0)

    def opened(self) -> None:
        self.listening = True
        self.since = time.time()
        if self.metrics is not None:
            self.metrics.listening.labels(self.name).set(1)

    def lost(self, error: BaseException) -> None:
        if self.listening:
            self.reconnects += 1
            if self.metrics is not None:
                self.metrics.reconnects.labels(self.name).inc()
        self.listening = False
        self.since = time.time()
        self.last_error = f"{type(error).__name__}: {error}"[:300]
        if self.metrics is not None:
            self.metrics.listening.labels(self.name).set(0)

    def status(self) -> dict[str, Any]:
        return {
            "listening": self.listening,
            "since": isoformat(self.since),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }


def next_delay(delay: float) -> float:
    return min(delay * 2, BACKOFF_MAX_S)


async def hold_listen(
    url: str,
    state: ListenState,
    channel: str | Callable[[psycopg.AsyncConnection[Any]], Awaitable[str]],
    heard: Callable[[str], Awaitable[None]],
    *,
    opened: Callable[[], None] = lambda: None,
    lost: Callable[[], None] = lambda: None,
) -> None:
    """Hold one LISTEN connection until cancelled, handing each payload to `heard`.

    `opened` runs once the LISTEN is in place (what was announced before it was not heard),
    `lost` whenever the connection ends. Whatever ends it, the node reconnects with backoff;
    one notification that fails is logged and the others are still served.
    """
    delay = BACKOFF_FIRST_S
    while True:
        try:
            connect = psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
            async with await connect as conn:
                name = channel if isinstance(channel, str) else await channel(conn)
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                state.opened()
                opened()
                delay = BACKOFF_FIRST_S
                async for note in conn.notifies():
                    try:
                        await heard(note.payload)
                    except Exception:
                        log.exception("a notification failed", listener=state.name, payload=note.payload[:200])
        except Exception as exc:
            lost()
            state.lost(exc)
            log.warning("LISTEN connection lost, reconnecting", listener=state.name, error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = next_delay(delay)

"""The console's live feed on every node: what other nodes committed, heard through LISTEN.

Each node that serves the console LISTENs on its schema's `fleethub_live` channel (see
`cluster.announce`) and skips what it wrote itself (its own twin service and publishers
feed its live feed directly). Announced vehicle ids pile up in one set until the next
feed tick, so a burst of announcements costs one batched read per tick; the twins read
are handed to the feed as twin updates, alert and command events as hub messages.

Deleted twins are announced by whoever deletes them (`d`); the relay tells the feed at
once, whichever node wrote. An announced vehicle the tick no longer finds, and a
vehicle shown before a full re-read that the re-read does not find, were deleted too.

Bounded: beyond `cluster.live_max_pending` vehicle ids the set is dropped and the node
re-reads every twin instead (paged), as it also does after its LISTEN connection was
lost (a PostgreSQL restart): nothing announced meanwhile stays missing, and browsers are
told to reload alerts and commands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import structlog

from cluster.announce import DELETED, EVENT, EVENT_REF, EVENTS_LOST, TWINS, Notice, channel_of
from cluster.listening import ListenMetrics, ListenState, hold_listen
from console import LiveSink, OpenAlerts
from kernel import PostgresDatabase, cancel_and_wait
from twin import Store, TwinFilter, TwinState, TwinUpdate, UpdateKind

log = structlog.get_logger(__name__)


class RelaySink(LiveSink, Protocol):
    def resync(self) -> None:
        """Events may have been missed: clients should reload them."""
        ...

    def reload_alerts(self, open_alerts: Iterable[tuple[str, str, str]]) -> None:
        """Alert events may have been missed: these (alert id, vehicle id, severity) are the open ones."""
        ...

    def twins_removed(self, vehicle_ids: Iterable[str]) -> None:
        """These vehicles' twins were deleted."""
        ...

    def vehicle_ids(self) -> set[str]:
        """Every vehicle the feed shows."""
        ...


class LiveRelay:
    """LISTEN, coalesce, read in batches, feed `sink`; an async context manager holding two tasks."""

    def __init__(
        self,
        db: PostgresDatabase,
        store: Store,
        sink: RelaySink,
        *,
        writer: str,
        interval_s: float,
        max_pending: int,
        read_batch: int,
        open_alerts: OpenAlerts | None = None,
        metrics: ListenMetrics | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.sink = sink
        self.writer = writer
        self.interval_s = interval_s
        self.max_pending = max_pending
        self.read_batch = read_batch
        self.open_alerts = open_alerts
        self.pending: set[str] = set()
        # Set when announcements may have been missed or dropped: the next tick re-reads every twin.
        self.reload = False
        self.connected = asyncio.Event()
        self.listen = ListenState("live", metrics)
        # Held while the open alerts are re-read: events heard meanwhile are applied after the
        # re-read, so an alert changed in that window is not undone by the older snapshot.
        self._events = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.last_tick_error: str | None = None
        # Deleted since the current tick began: a read that started before the deletion must not
        # bring the vehicle back.
        self._gone: set[str] = set()

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name="cluster-live-listen"),
            loop.create_task(self._ticks(), name="cluster-live-ticks"),
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    # -- hearing -----------------------------------------------------------------------

    async def _listen(self) -> None:
        await hold_listen(
            self.db.url, self.listen, channel_of, self.heard, opened=self._opened, lost=self.connected.clear
        )

    def _opened(self) -> None:
        # Whatever was announced before this LISTEN (at start, or while the connection was
        # down) was not heard: read every twin once.
        self.reload = True
        self.connected.set()

    def status(self) -> dict[str, Any]:
        """For `/healthz`: the LISTEN connection, and what waits for the next tick."""
        return {
            **self.listen.status(),
            "pending_vehicles": len(self.pending),
            "reload_pending": self.reload,
            "last_tick_error": self.last_tick_error,
        }

    async def heard(self, payload: str) -> None:
        """Take one notification: vehicle ids are kept for the next tick, events go to the feed at once."""
        notice = Notice.parse(payload)
        if notice is None:
            return
        # Whoever deleted a twin, this node's console has not been told: no writer is skipped.
        if notice.kind == DELETED:
            gone = notice.body.split()
            self.pending.difference_update(gone)
            self._gone.update(gone)
            self.sink.twins_removed(gone)
            return
        if notice.writer == self.writer:
            return
        if notice.kind == TWINS:
            if self.reload:
                return
            self.pending.update(notice.body.split())
            if len(self.pending) > self.max_pending:
                log.warning(
                    "console live: too many vehicles changed elsewhere, re-reading them all", cap=self.max_pending
                )
                self.pending.clear()
                self.reload = True
            return
        async with self._events:
            if notice.kind == EVENT:
                event = notice.event()
                if event is not None:
                    self.sink.hub_message(*event)
            elif notice.kind == EVENT_REF:
                await self._read_event(notice.body)
            elif notice.kind == EVENTS_LOST:
                await self._reload_alerts()

    async def _read_event(self, ref: str) -> None:
        try:
            async with self.db.connection() as conn:
                cur = await conn.execute("SELECT topic, payload FROM cluster_live_events WHERE id = %s", (int(ref),))
                row = await cur.fetchone()
        except Exception as exc:
            log.warning("console live: could not read an event", ref=ref, error=f"{type(exc).__name__}: {exc}")
            await self._reload_alerts()
            return
        if row is not None:
            self.sink.hub_message(str(row[0]), bytes(row[1]))

    # -- reading -----------------------------------------------------------------------

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
                self.last_tick_error = None
            # The store may be unavailable for a while; what was pending is read again next time.
            except Exception as exc:
                self.last_tick_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning(
                    "console live: reading twins changed elsewhere failed", error=f"{type(exc).__name__}: {exc}"
                )
                self.reload = True

    async def tick(self) -> None:
        """Read what changed elsewhere since the last tick and hand it to the feed."""
        self._gone.clear()
        if self.reload:
            self.reload = False
            self.pending.clear()
            await self._read_all()
            async with self._events:
                await self._reload_alerts()
            return
        ids, self.pending = sorted(self.pending), set()
        for start in range(0, len(ids), self.read_batch):
            chunk = ids[start : start + self.read_batch]
            states = await self.store.load_twins(chunk)
            self._feed([states[v] for v in chunk if v in states])
            # Announced as changed, then deleted before this read: deleted.
            missing = [v for v in chunk if v not in states]
            if missing:
                self.sink.twins_removed(missing)

    async def _reload_alerts(self) -> None:
        """Re-read the open alerts into the feed (it tells browsers to reload alerts and commands)."""
        if self.open_alerts is None:
            self.sink.resync()
            return
        try:
            found = await self.open_alerts()
        except Exception as exc:
            log.warning("console live: could not re-read open alerts", error=f"{type(exc).__name__}: {exc}")
            self.sink.resync()
            return
        self.sink.reload_alerts(found)

    async def _read_all(self) -> None:
        """Every twin, paged; vehicles shown before it began and not found were deleted meanwhile."""
        shown = self.sink.vehicle_ids()
        after: str | None = None
        while True:
            page = await self.store.list_twins(TwinFilter(after=after, limit=self.read_batch))
            self._feed(page)
            shown.difference_update(s.vehicle_id for s in page)
            if len(page) < self.read_batch:
                break
            after = page[-1].vehicle_id
        if shown:
            self.sink.twins_removed(shown)

    def _feed(self, states: Sequence[TwinState]) -> None:
        if self._gone:
            states = [s for s in states if s.vehicle_id not in self._gone]
        if not states:
            return
        now = time.time()
        # The feed looks only at the state; the kind of change is not announced.
        self.sink.twin_updated([TwinUpdate(UpdateKind.TELEMETRY, s.vehicle_id, s, now) for s in states])

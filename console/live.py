"""The live feed: what changed in the fleet, coalesced and batched per client.

Inputs arrive through the `LiveSink` methods: twin updates (the twin service's
observer interface), and alert and command events as the MQTT messages the hub
publishes (`alerts/...`, `events/commands/...`). In one process they come straight
from the twin service and a tee in front of the broker; in worker mode the other nodes'
changes come through the same methods, from PostgreSQL LISTEN/NOTIFY (`cluster.live`).

Every `interval_s` the feed turns the vehicles that changed into rows (once each, however
often they reported) and gives each client one batch with the rows, alerts and command
events of the fleets it may see. A client's batches wait in a bounded buffer; a client
whose buffer is full is dropped and counted, never grown: its browser reconnects and
reloads the fleet from the REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from console.index import FleetIndex, columns_of
from console.rows import LAST_SEEN_STEP_S, VehicleRow
from twin import TwinState, TwinUpdate

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
ALERT_PREFIX = "alerts/"
COMMAND_PREFIX = "events/commands/"


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


class LiveSink(Protocol):
    """What feeds the live view, whatever the deployment."""

    def twin_updated(self, updates: list[TwinUpdate]) -> None: ...

    def hub_message(self, topic: str, payload: bytes) -> None: ...


class TooManyClients(Exception):
    pass


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clients = Gauge("fleethub_console_live_clients", "Live console streams open", registry=registry)
        self.dropped = Counter(
            "fleethub_console_live_dropped",
            "Live console clients dropped because they fell console.live_client_buffer batches behind",
            registry=registry,
        )
        self.refused = Counter(
            "fleethub_console_live_refused",
            "Live console streams refused because console.live_max_clients were open",
            registry=registry,
        )
        self.batches = Counter("fleethub_console_live_batches", "Batches queued for live clients", registry=registry)
        self.rows = Counter("fleethub_console_live_rows", "Vehicle rows sent to live clients", registry=registry)


@dataclass(eq=False, slots=True)
class LiveClient:
    """One browser's stream: the batches waiting for it, and what it may see."""

    fleets: frozenset[str] | None
    alerts: bool
    commands: bool
    limit: int
    pending: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False
    closed: bool = False

    def sees(self, fleet: str | None) -> bool:
        return self.fleets is None or (fleet is not None and fleet in self.fleets)

    def offer(self, batch: bytes) -> bool:
        """Queue a batch; False (and the client is dropped) when its buffer is full."""
        if len(self.pending) >= self.limit:
            self.dropped = True
            self.pending.clear()
            self.wake.set()
            return False
        self.pending.append(batch)
        self.wake.set()
        return True

    async def batches(self, heartbeat_s: float) -> AsyncIterator[bytes | None]:
        """Batches as they come; None after `heartbeat_s` without one. Ends when dropped or closed."""
        while not (self.dropped or self.closed):
            if not self.pending:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(heartbeat_s):
                        await self.wake.wait()
                if not self.pending and not (self.dropped or self.closed):
                    yield None
                    continue
            while self.pending and not self.dropped:
                yield self.pending.popleft()


class LiveFeed:
    """See the module docstring. `run()` is the ticker; the hub holds it as a task."""

    def __init__(
        self,
        index: FleetIndex,
        *,
        interval_s: float = 1.0,
        max_clients: int = 200,
        client_buffer: int = 10,
        metrics: LiveMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.interval_s = interval_s
        self.max_clients = max_clients
        self.client_buffer = client_buffer
        self.metrics = metrics
        self.clock = clock
        self.clients: set[LiveClient] = set()
        self.seq = 0
        self.dropped_total = 0
        self._dirty: dict[str, TwinState] = {}
        # The last-seen time last sent per vehicle: an unchanged row is re-sent only when it moved enough.
        self._sent_seen: dict[str, float] = {}
        self._touched: set[str] = set()
        self._alerts: list[dict[str, Any]] = []
        self._commands: list[dict[str, Any]] = []
        # More events than _MAX_EVENTS came within one tick: the batch tells browsers to reload instead.
        self._overflow = False
        # Vehicles whose twin was deleted since the last tick, with the fleet their row was in.
        self._removed: dict[str, str | None] = {}

    # -- inputs (LiveSink) -------------------------------------------------------------

    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        # Only the latest state per vehicle is kept; rows are built once per tick.
        for update in updates:
            self._dirty[update.vehicle_id] = update.state

    def hub_message(self, topic: str, payload: bytes) -> None:
        if not topic.startswith((ALERT_PREFIX, COMMAND_PREFIX)):
            return
        try:
            event = _decode(payload)
        except msgspec.DecodeError:
            log.warning("console: undecodable hub event", topic=topic)
            return
        if not isinstance(event, dict):
            return
        if topic.startswith(ALERT_PREFIX):
            row = self.index.alert(event)
            if row is not None:
                self._touched.add(row.vehicle_id)
            self._keep(self._alerts, event)
        else:
            self._keep(self._commands, event)

    def resync(self) -> None:
        """Events may have been missed (another node's were lost): the next batch tells browsers to reload them."""
        self._overflow = True

    def reload_alerts(self, open_alerts: Iterable[tuple[str, str, str]]) -> None:
        """Alert events may have been missed: take the open alerts as read, re-send the rows they change, resync."""
        self._touched |= self.index.replace_alerts(open_alerts)
        self._overflow = True

    def twins_removed(self, vehicle_ids: Iterable[str]) -> None:
        """These twins were deleted: drop their rows; the next batch tells browsers to drop them too."""
        for vid in vehicle_ids:
            self._dirty.pop(vid, None)
            self._sent_seen.pop(vid, None)
            self._touched.discard(vid)
            row = self.index.remove(vid)
            # Bounded by the index: only vehicles that had a row are remembered.
            if row is not None:
                self._removed[vid] = row.fleet

    def vehicle_ids(self) -> set[str]:
        """Every vehicle the feed shows, or is about to (a twin updated since the last tick)."""
        return set(self.index.rows) | set(self._dirty)

    def _keep(self, events: list[dict[str, Any]], event: dict[str, Any]) -> None:
        if len(events) < _MAX_EVENTS:
            events.append(event)
        else:
            self._overflow = True

    def tee(self, inner: Publisher | None) -> Publisher:
        """A publisher that shows every message to the feed, then publishes it through `inner`."""
        return _Tee(self, inner)

    # -- clients -----------------------------------------------------------------------

    def connect(self, fleets: frozenset[str] | None, *, alerts: bool, commands: bool) -> LiveClient:
        if len(self.clients) >= self.max_clients:
            if self.metrics:
                self.metrics.refused.inc()
            raise TooManyClients(f"{self.max_clients} live streams are open (console.live_max_clients)")
        client = LiveClient(fleets, alerts, commands, self.client_buffer)
        self.clients.add(client)
        if self.metrics:
            self.metrics.clients.set(len(self.clients))
        return client

    def disconnect(self, client: LiveClient) -> None:
        client.closed = True
        client.wake.set()
        self.clients.discard(client)
        if self.metrics:
            self.metrics.clients.set(len(self.clients))

    # -- the ticker --------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.tick()
            # A bug in one tick must not end live updates for everyone; the next tick tries again.
            except Exception:
                log.exception("console live tick failed")

    def refresh_index(self) -> None:
        """Bring the index up to date with every twin change so far (the bulk endpoint reads it)."""
        dirty, self._dirty = self._dirty, {}
        for state in dirty.values():
            self.index.update(state)

    def tick(self) -> None:
        """Turn what changed since the last tick into one batch per client."""
        if not self.clients:
            # Nobody is watching: rows are built when the index is next read, once per vehicle.
            self._alerts.clear()
            self._commands.clear()
            self._touched.clear()
            self._removed.clear()
            self._overflow = False
            return
        dirty, self._dirty = self._dirty, {}
        touched, self._touched = self._touched, set()
        alerts, self._alerts = self._alerts, []
        commands, self._commands = self._commands, []
        overflow, self._overflow = self._overflow, False
        removed, self._removed = self._removed, {}
        rows: dict[str, VehicleRow] = {}
        for vid, state in dirty.items():
            row, previous = self.index.update(state)
            seen = row.last_seen or 0.0
            if (
                previous is None
                or not row.looks_like(previous)
                or seen - self._sent_seen.get(vid, 0.0) >= LAST_SEEN_STEP_S
            ):
                rows[vid] = row
                self._sent_seen[vid] = seen
        for vid in touched:
            if vid not in rows and vid in self.index.rows:
                rows[vid] = self.index.rows[vid]
        if not (rows or alerts or commands or overflow or removed):
            return
        self.seq += 1
        ordered = sorted(rows.values(), key=lambda r: r.vehicle_id)
        shared: dict[tuple[frozenset[str] | None, bool, bool], bytes | None] = {}
        for client in list(self.clients):
            key = (client.fleets, client.alerts, client.commands)
            if key not in shared:
                shared[key] = self._batch(client, ordered, alerts, commands, overflow, removed)
            batch = shared[key]
            if batch is None:
                continue
            if not client.offer(batch):
                self.dropped_total += 1
                self.clients.discard(client)
                log.warning("console live client dropped: it fell behind", buffer=self.client_buffer)
                if self.metrics:
                    self.metrics.dropped.inc()
                    self.metrics.clients.set(len(self.clients))
            elif self.metrics:
                self.metrics.batches.inc()
        if self.metrics:
            self.metrics.rows.inc(len(ordered) * len(self.clients))

    def _batch(
        self,
        client: LiveClient,
        rows: list[VehicleRow],
        alerts: list[dict[str, Any]],
        commands: list[dict[str, Any]],
        overflow: bool,
        removed: dict[str, str | None],
    ) -> bytes | None:
        columns = columns_of(rows, client.fleets)
        gone = sorted(vid for vid, fleet in removed.items() if client.sees(fleet))
        seen_alerts = [a for a in alerts if client.sees(a.get("fleet"))] if client.alerts else []
        seen_commands = (
            [c for c in commands if client.sees(self.index.fleet_of(str(c.get("vehicle_id"))))]
            if client.commands
            else []
        )
        if not (len(columns) or seen_alerts or seen_commands or overflow or gone):
            return None
        return _encode(
            {
                "seq": self.seq,
                "at": self.clock(),
                "vehicles": columns,
                "alerts": seen_alerts,
                "commands": seen_commands,
                # Events were left out: reload alerts and commands from the API.
                "resync": overflow,
                # Vehicles whose twin was deleted (worker mode): drop their rows.
                "removed": gone,
            }
        )


# Alert and command events held between two ticks at most; beyond it the browser reloads from the API.
_MAX_EVENTS = 10_000


class _Tee:
    def __init__(self, feed: LiveFeed, inner: Publisher | None) -> None:
        self._feed = feed
        self._inner = inner

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        try:
            self._feed.hub_message(topic, payload)
        # The live view is a convenience; it must never stand between an event and its subscribers.
        except Exception:
            log.exception("console live feed failed on a hub event", topic=topic)
        if self._inner is not None:
            await self._inner.publish(topic, payload, qos=qos, retain=retain)

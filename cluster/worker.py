"""A hub worker behind an external broker: routing by partition, leases, the inbox, NOTIFY.

Every vehicle message is routed by its vehicle's partition:
- owned and ready here: into this worker's ingest pipeline (`TwinService`); acknowledged
  to the broker once the pipeline's verdict says it is committed;
- owned elsewhere (or a partition being taken over): into the inbox table, acknowledged
  once that insert commits; the owner takes it from there.
A batch the database fences off (this worker lost the lease meanwhile) is cancelled by
the pipeline; its messages are routed again, now to the inbox.

Rules and commands run only at the owner ("evaluate only at the owner"): the twin
pipeline only ever sees owned vehicles, so observers do too, and the rules engine and
command service are told which vehicles are theirs (`owns`) and rebuilt from the
database for each partition gained (`adopt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import psycopg
import structlog

from cluster.edge import ExternalBroker, Received
from cluster.inbox import INBOX_CHANNEL, Inbox
from cluster.leases import LeaseChange, Leases, fence_of
from cluster.partitions import Ownership, PartitionListener, partition_of
from cluster.presence import emqx_event, is_event
from cluster.schema import CHANNEL, JOB_PARTITION, install
from cluster.settings import ClusterSettings
from commands import CommandService
from kernel import ConfigError, PostgresDatabase, VehicleIds, VehicleSet
from rules import RulesEngine
from twin import DisconnectReason, Inbound, MessageKind, PendingDrop, TwinFilter, TwinService, Verdict

log = structlog.get_logger(__name__)

_VEHICLE = r"[A-Za-z0-9_.-]{1,64}"
_TOPIC = re.compile(
    rf"^vehicles/(?P<vid>{_VEHICLE})/(?:(?P<kind>telemetry|twin/get|twin/rejected|status)"
    rf"|commands/(?P<command>[^/]{{1,128}})/result)$"
)
_KINDS = {
    "telemetry": MessageKind.TELEMETRY,
    "twin/get": MessageKind.TWIN_GET,
    "twin/rejected": MessageKind.TWIN_REJECTED,
}


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


def inbound_of(msg: Received, now: float) -> list[Inbound]:
    """The pipeline items a broker message stands for (none: not a vehicle topic of ours)."""
    if is_event(msg.topic):
        return emqx_event(msg.topic, msg.payload, msg.qos, now)
    match = _TOPIC.match(msg.topic)
    if match is None:
        return []
    vid = match["vid"]
    if match["command"] is not None:
        return [Inbound(vid, MessageKind.COMMAND_RESULT, msg.payload, now, msg.qos, subtopic=match["command"])]
    kind = match["kind"]
    if kind == "status":
        # The birth/Last-Will convention: "online" once subscribed, "offline" as the will (or a clean goodbye).
        state = msg.payload.strip().lower()
        if state == b"online":
            return [
                Inbound(vid, MessageKind.CONNECTED, b"", now, msg.qos),
                Inbound(vid, MessageKind.SUBSCRIBED, b"", now, msg.qos, extra={"commands": "1"}),
            ]
        if state in {b"offline", b"offline-clean"}:
            reason = DisconnectReason.CLEAN if state == b"offline-clean" else DisconnectReason.CONNECTION_LOST
            return [Inbound(vid, MessageKind.DISCONNECTED, b"", now, msg.qos, extra={"reason": reason.value})]
        return []
    return [Inbound(vid, _KINDS[kind], msg.payload, now, msg.qos)]


class ClusterWorker:
    """Leases, routing, the inbox and the broker connection of one worker; an async context manager."""

    def __init__(
        self,
        settings: ClusterSettings,
        db: PostgresDatabase,
        service: TwinService,
        *,
        rules: RulesEngine | None = None,
        commands: CommandService | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.service = service
        self.rules = rules
        self.commands = commands
        # Other parts that keep per-vehicle state and follow the partitions (cluster/duties.py).
        self.listeners: list[PartitionListener] = []
        self.worker_id = settings.worker_id or default_worker_id()
        self.ownership = Ownership(settings.partitions)
        # Partitions whose takeover is done: their messages go straight into the pipeline.
        self.ready: set[int] = set()
        self.leases = Leases(
            db, self.worker_id, partitions=settings.partitions, lease_s=settings.lease_s, role=settings.role
        )
        self.inbox = Inbox(db)
        # Messages for other workers' partitions, waiting for the forwarder's next inbox write.
        # Bounded by the broker: none of them is acknowledged before it is written.
        self._forwarding: list[tuple[int, Inbound, Received | None]] = []
        self._forward_wake = asyncio.Event()
        # Set by a NOTIFY naming a partition ready here: the owner takes from the inbox at once.
        self._inbox_wake = asyncio.Event()
        # Inbox rows in the pipeline (left out of the next take), and rows committed (deleted by it).
        self._inbox_busy: set[int] = set()
        self._inbox_done: list[int] = []
        self._inbox_batches: set[asyncio.Task[None]] = set()
        self._inbox_in_flight = 0
        self.edge: ExternalBroker | None = None
        # Bounded by the broker: it hands over at most receive_maximum unacknowledged messages.
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # Sessions of dead workers being emptied (see `_empty_session`).
        self._reapers: list[asyncio.Task[None]] = []
        self._renewed_at = 0.0
        self._notified: dict[str, set[str]] = {"commands": set(), "alerts": set(), "jobs": set()}
        self._notice = asyncio.Event()
        # QoS 1 messages received and not yet acknowledged.
        self._outstanding = 0
        self._drained = asyncio.Event()
        self.forwarded = 0
        self.direct = 0
        self.moves = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with self.db.connection() as conn:
            found = await install(conn, self.settings.partitions)
        if found != self.settings.partitions:
            raise ConfigError(
                f"setting 'cluster.partitions' is {self.settings.partitions} but this database was set up "
                f"with {found}; every worker must use the same count"
            )
        self.db.set_fence(fence_of(self.worker_id, self.settings.partitions, {}))
        if self.rules is not None:
            self.rules.owns = self.ownership.owns
        if self.commands is not None:
            self.commands.owns = self.ownership.owns
            self.commands.dispatches_jobs = False
            self.commands.release(lambda _vid: True)
        loop = asyncio.get_running_loop()
        if self.settings.role == "worker":
            self.service.handlers.implied_presence = True
            # Messages arrive before any lease is held: they wait in the inbox for their owners.
            self.edge = ExternalBroker(self.settings, f"fleethub-{self.worker_id}", self._received)
            await self.edge.__aenter__()
            self._tasks += [
                loop.create_task(self._route(), name="cluster-route"),
                loop.create_task(self._forwarder(), name="cluster-forward"),
                loop.create_task(self._drain_inbox(), name="cluster-inbox"),
                loop.create_task(self._listen(), name="cluster-listen"),
                loop.create_task(self._adopt_notified(), name="cluster-notified"),
            ]
        return self

    async def start_leases(self) -> None:
        """Take the first leases and keep renewing them (after the rules engine has loaded its rules)."""
        await self._heartbeat_once()
        self._tasks.append(asyncio.get_running_loop().create_task(self._heartbeats(), name="cluster-leases"))
        log.info("cluster worker started", worker=self.worker_id, role=self.settings.role, held=len(self.ready))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.edge is not None and exc_type is None:
            # A clean leave: nothing new comes in; what came is committed (or forwarded) and acknowledged.
            self.edge.stop_consuming()
            if self._outstanding > 0:
                self._drained.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), self.settings.leave_timeout_s)
            if self._outstanding > 0:
                log.warning("left with messages unacknowledged; the broker sends them again", count=self._outstanding)
        for task in self._tasks + self._reapers:
            task.cancel()
        for task in self._tasks + self._reapers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks, self._reapers = [], []
        for task in list(self._inbox_batches):
            task.cancel()
        if self.edge is not None:
            await self.edge.__aexit__(exc_type, exc, tb)
        held, self.ownership.tokens = self.ownership.tokens, {}
        self.ready.clear()
        try:
            await self.leases.leave(held)
        # Leaving is a courtesy: if it fails the leases expire on their own.
        except Exception as failure:
            log.warning("could not give the leases back", error=f"{type(failure).__name__}: {failure}")

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The worker's long-running tasks; none ends while it runs, so one that does is a failure."""
        return list(self._tasks)

    @property
    def channel(self) -> ExternalBroker:
        if self.edge is None:
            raise RuntimeError("an api node has no broker connection")
        return self.edge

    # -- leases ------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self._heartbeat_once()
            except Exception as exc:
                log.error("lease heartbeat failed", error=f"{type(exc).__name__}: {exc}")
                if time.monotonic() - self._renewed_at > self.settings.lease_s:
                    # Our leases have expired by now; the database refuses our writes anyway.
                    await self._apply(LeaseChange({}, {}, frozenset(self.ownership.tokens)))

    async def _heartbeat_once(self) -> None:
        started = time.monotonic()
        change = await self.leases.step(dict(self.ownership.tokens))
        self._renewed_at = started
        await self._apply(change)
        if self.edge is not None:
            for dead in await self.leases.reap(self.settings.lease_s * 3):
                self._reapers.append(
                    asyncio.get_running_loop().create_task(self._empty_session(dead), name=f"cluster-reap-{dead}")
                )
            self._reapers = [t for t in self._reapers if not t.done()]

    async def _empty_session(self, dead: str) -> None:
        """Take over a dead worker's broker session and route what waited in it, then end it.

        Mosquitto queues shared-subscription messages for a member whose persistent session
        is offline; without this they would wait for a worker with that id to come back.
        """
        edge = ExternalBroker(self.settings, f"fleethub-{dead}", self._received, consume=False)
        try:
            async with edge:
                edge.last_message_at = time.monotonic()
                # Done when nothing came for 3 s and everything that came is acknowledged (2 min at most).
                for _ in range(600):
                    if edge.outstanding <= 0 and time.monotonic() - edge.last_message_at >= 3.0:
                        break
                    await asyncio.sleep(0.2)
            log.info("emptied the broker session of a dead worker", dead=dead, worker=self.worker_id)
        except Exception as exc:
            log.warning("could not empty a dead worker's session", dead=dead, error=f"{type(exc).__name__}: {exc}")

    async def _apply(self, change: LeaseChange) -> None:
        lost = set(change.lost) - set(change.gained)
        # A partition held but not ready is one whose takeover failed part-way (a store read
        # raised): the lease step renews it without reporting it gained, so it is taken over again
        # here, or its messages would wait in the inbox for as long as this worker holds it.
        gained = set(change.gained) | (set(change.held) - self.ready)
        if not lost and not gained:
            return
        if lost or change.gained:
            self.moves += 1
        self.ready -= lost | gained
        self.ownership.tokens = dict(change.held)
        self.db.set_fence(fence_of(self.worker_id, self.settings.partitions, change.held))
        everything = lost | gained
        moved = self.ownership.selects(everything)
        self.service.forget(moved)
        if lost:
            chosen = self.ownership.selects(lost)
            if self.rules is not None:
                self.rules.release(chosen)
            if self.commands is not None:
                self.commands.release(chosen)
            self._release_listeners(chosen)
        if gained:
            chosen = self.ownership.selects(gained)
            if self.rules is not None:
                await self.rules.adopt(chosen)
            online = await self._connected(chosen)
            # The twins of vehicles connected through another worker stay connected here.
            self.service.adopt_online(online)
            # Drops the last owner was still debouncing are finished here.
            self.service.adopt_pending(await self._pending_drops(chosen))
            if self.commands is not None:
                await self.commands.adopt(chosen)
                for vid in online:
                    self.commands.vehicle_connected(vid)
            await self._adopt_listeners(chosen)
            self.ready |= gained
            # What other workers forwarded for these partitions waits in the inbox.
            self._inbox_wake.set()
        if self.commands is not None:
            leads = JOB_PARTITION in self.ownership.tokens
            if leads and (JOB_PARTITION in gained or not self.commands.dispatches_jobs):
                await self.commands.reload_jobs()
            self.commands.dispatches_jobs = leads
        log.info(
            "partitions moved",
            worker=self.worker_id,
            gained=sorted(gained),
            lost=sorted(lost),
            held=len(self.ownership.tokens),
        )

    def _release_listeners(self, vehicle: Callable[[str], bool]) -> None:
        for listener in self.listeners:
            listener.release(vehicle)

    async def _adopt_listeners(self, vehicle: Callable[[str], bool]) -> None:
        for listener in self.listeners:
            await listener.adopt(vehicle)

    async def _connected(self, vehicles: VehicleSet) -> dict[str, float]:
        """Vehicles the database says are connected (and since when), among those of `vehicles`."""
        found: dict[str, float] = {}
        after: str | None = None
        while True:
            query = TwinFilter(connected=True, after=after, limit=1000, vehicles=vehicles)
            page = await self.service.store.list_twins(query)
            found |= {t.vehicle_id: t.connection.since or 0.0 for t in page}
            if len(page) < 1000:
                return found
            after = page[-1].vehicle_id

    async def _pending_drops(self, vehicles: VehicleSet) -> dict[str, PendingDrop]:
        """Drops among `vehicles` whose offline event no owner has recorded yet.

        The flag lives in the twin's stored state, so every disconnected twin of the
        partitions is read: one pass per partition gained.
        """
        found: dict[str, PendingDrop] = {}
        after: str | None = None
        while True:
            query = TwinFilter(connected=False, after=after, limit=1000, vehicles=vehicles)
            page = await self.service.store.list_twins(query)
            found |= {t.vehicle_id: p for t in page if (p := t.connection.pending_drop) is not None}
            if len(page) < 1000:
                return found
            after = page[-1].vehicle_id

    # -- routing -----------------------------------------------------------------------

    def _received(self, msg: Received) -> None:
        if msg.qos > 0:
            self._outstanding += 1
            if msg.source is not None:
                msg.source.outstanding += 1
        if msg.source is not None:
            msg.source.last_message_at = time.monotonic()
        self._queue.put_nowait(msg)

    async def _route(self) -> None:
        while True:
            msg = await self._queue.get()
            items = inbound_of(msg, time.time())
            if not items:
                self._ack(msg)
            for n, item in enumerate(items):
                last = n == len(items) - 1
                p = partition_of(item.vehicle_id, self.settings.partitions)
                if p in self.ready:
                    await self._submit(item, msg if last else None)
                else:
                    self._forwarding.append((p, item, msg if last else None))
                    self._forward_wake.set()

    async def _forwarder(self) -> None:
        """Write what waits for other workers to the inbox, one batch at a time.

        Routing goes on while a write is in flight, and what arrives meanwhile goes into the
        next write: the busier the worker, the larger (and fewer) its inbox transactions.
        """
        while True:
            await self._forward_wake.wait()
            # Gathering for a moment turns a trickle of single messages into one transaction.
            if len(self._forwarding) < self.settings.inbox_write_batch:
                await asyncio.sleep(self.settings.inbox_linger_s)
            self._forward_wake.clear()
            while self._forwarding:
                size = self.settings.inbox_write_batch
                batch, self._forwarding = self._forwarding[:size], self._forwarding[size:]
                await self._forward(batch)

    async def _submit(self, item: Inbound, msg: Received | None) -> None:
        self.direct += 1
        if item.qos == 0 or msg is None:
            await self.service.submit(item)
            return
        done: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        item.ack = done
        done.add_done_callback(lambda f: self._settled(f, item, msg))
        await self.service.submit(item)

    def _settled(self, done: asyncio.Future[Verdict], item: Inbound, msg: Received) -> None:
        if done.cancelled() or done.exception() is not None:
            # Fenced off or abandoned: not committed here. Route it again (the inbox, by now).
            item.ack = None
            self._queue.put_nowait(msg)
            return
        self._ack(msg)

    async def _forward(self, batch: list[tuple[int, Inbound, Received | None]]) -> None:
        delay = 0.05
        while True:
            try:
                await self.inbox.put([(p, item) for p, item, _ in batch])
                break
            # Not acknowledged until stored: the broker holds the messages meanwhile.
            except Exception as exc:
                log.error("inbox write failed, retrying", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.forwarded += len(batch)
        for _, _, msg in batch:
            if msg is not None:
                self._ack(msg)

    def _ack(self, msg: Received) -> None:
        if msg.qos > 0:
            self._outstanding -= 1
            if self._outstanding <= 0:
                self._drained.set()
            if msg.source is not None:
                msg.source.outstanding -= 1
        edge = msg.source or self.edge
        if edge is not None:
            edge.ack(msg)

    # -- the inbox ---------------------------------------------------------------------

    async def _drain_inbox(self) -> None:
        """Take this worker's partitions' rows from the inbox when told (NOTIFY) or every inbox_poll_s.

        Up to `inbox_in_flight` taken batches are in the pipeline at once: the next is taken
        while the last commits. Rows in the pipeline are left out of the next take; rows
        committed are deleted by it (the same statement).
        """
        while True:
            self._inbox_wake.clear()
            taken = 0
            full = self._inbox_in_flight >= self.settings.inbox_in_flight
            if not full:
                try:
                    taken = await self._drain_once()
                except Exception as exc:
                    log.error("inbox drain failed", error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(self.settings.inbox_poll_s)
            # Full: a batch that settles wakes this loop.
            if full or (taken < self.settings.inbox_batch and not self._inbox_done):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._inbox_wake.wait(), self.settings.inbox_poll_s)

    async def _drain_once(self) -> int:
        """Delete what committed, take the next rows and hand them to the pipeline; the rows taken."""
        parts = sorted(self.ready)
        committed, self._inbox_done = self._inbox_done, []
        try:
            if not parts:
                await self.inbox.done(committed)
                return 0
            rows = await self.inbox.take(parts, self.settings.inbox_batch, committed, self._inbox_busy)
        except BaseException:
            self._inbox_done = committed + self._inbox_done
            raise
        loop = asyncio.get_running_loop()
        waiting: list[tuple[int, asyncio.Future[Verdict]]] = []
        for row in rows:
            done: asyncio.Future[Verdict] = loop.create_future()
            row.item.ack = done
            waiting.append((row.id, done))
            self._inbox_busy.add(row.id)
        if waiting:
            self._inbox_in_flight += 1
            task = loop.create_task(self._settle_batch(waiting), name="cluster-inbox-batch")
            self._inbox_batches.add(task)
            task.add_done_callback(self._inbox_batches.discard)
        for row in rows:
            await self.service.submit(row.item)
        return len(rows)

    async def _settle_batch(self, waiting: list[tuple[int, asyncio.Future[Verdict]]]) -> None:
        """Wait for a taken batch's verdicts; what committed is deleted by the next take."""
        try:
            # A row whose verdict does not come in time stays in the inbox for a later pass.
            await asyncio.wait([f for _, f in waiting], timeout=30)
        finally:
            self._inbox_in_flight -= 1
            for row_id, f in waiting:
                self._inbox_busy.discard(row_id)
                if f.done() and not f.cancelled() and f.exception() is None:
                    self._inbox_done.append(row_id)
            self._inbox_wake.set()

    # -- what other nodes changed ------------------------------------------------------

    async def _listen(self) -> None:
        """LISTEN for commands queued and alerts changed elsewhere for vehicles this worker owns."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.db.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {INBOX_CHANNEL}")
                    # Rows may have come while the connection was away.
                    self._inbox_wake.set()
                    async for note in conn.notifies():
                        if note.channel == INBOX_CHANNEL:
                            self._inbox_noted(note.payload)
                        else:
                            self._noted(note.payload)
            except psycopg.Error as exc:
                log.warning("cluster LISTEN connection lost", error=str(exc))
                await asyncio.sleep(1.0)

    def _inbox_noted(self, payload: str) -> None:
        if any(p.isdigit() and int(p) in self.ready for p in payload.split()):
            self._inbox_wake.set()

    def _noted(self, payload: str) -> None:
        kind, writer, vid = [*payload.split(" ", 2), "", ""][:3]
        if writer == self.worker_id or kind not in self._notified:
            return
        if kind == "jobs":
            if self.commands is not None and self.commands.dispatches_jobs:
                self._notified["jobs"].add(vid)
                self._notice.set()
            return
        if partition_of(vid, self.settings.partitions) in self.ready:
            self._notified[kind].add(vid)
            self._notice.set()

    async def _adopt_notified(self) -> None:
        while True:
            await self._notice.wait()
            self._notice.clear()
            await asyncio.sleep(0.05)  # gathers a burst into one rebuild
            commands, self._notified["commands"] = self._notified["commands"], set()
            alerts, self._notified["alerts"] = self._notified["alerts"], set()
            jobs, self._notified["jobs"] = self._notified["jobs"], set()
            try:
                # Only these vehicles' rows are read (chosen by id in SQL), not the whole fleet's.
                if commands and self.commands is not None:
                    await self.commands.adopt(VehicleIds(frozenset(commands)))
                    for vid in await self._connected(VehicleIds(frozenset(commands))):
                        self.commands.vehicle_connected(vid)
                if alerts and self.rules is not None:
                    await self.rules.adopt(VehicleIds(frozenset(alerts)))
                if jobs and self.commands is not None and self.commands.dispatches_jobs:
                    await self.commands.reload_jobs()
            except Exception:
                log.exception("rebuilding vehicles changed elsewhere failed")
                # Taken again after a pause (rebuilding is idempotent): dropped, these vehicles would
                # stay stale here until their next change elsewhere, or until their partition moves.
                self._notified["commands"] |= commands
                self._notified["alerts"] |= alerts
                self._notified["jobs"] |= jobs
                await asyncio.sleep(1.0)
                self._notice.set()

    # -- health ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "worker": self.worker_id,
            "role": self.settings.role,
            "broker": self.settings.broker,
            "broker_connected": self.edge.connected if self.edge is not None else None,
            "partitions_held": len(self.ownership.tokens),
            "partitions_ready": len(self.ready),
            "forwarded": self.forwarded,
            "direct": self.direct,
        }

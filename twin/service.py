"""The twin service: one ordered consumer that owns every twin write.

Vehicle messages, presence changes and operator writes all pass through one queue and
one consumer, so there is a single writer and no lock. The consumer applies what it
takes to in-memory twins, then commits the whole batch in one transaction and only
then acknowledges: resolves QoS 1 futures (the broker sends PUBACK), answers API
callers and sends deltas. While a commit is in flight new items pile up and form the
next batch, so batches grow with load and latency stays low when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import msgspec
import structlog
from msgspec import Meta

from kernel import Fenced, InvalidPayload, LimitExceeded, NotFound, StoreError, is_fenced, isoformat
from twin.document import DeltaMessage, TwinAsOf, TwinDocument, to_as_of, to_document
from twin.errors import VersionConflict
from twin.inbound import ACCEPTED, Channel, DisconnectReason, Inbound, MessageKind, VehicleChannel, Verdict
from twin.limits import Limits, check_patch
from twin.merge import (
    apply_desired,
    apply_reported,
    compute_delta,
    merge_patch,
    refresh_desired_status,
    reject_desired,
)
from twin.metrics import IngestMetrics
from twin.model import Connection, HistoryRow, Json, PresenceEvent, TwinState
from twin.observe import TelemetryEnricher, TwinObserver, TwinUpdate, UpdateKind
from twin.paths import flatten, prune_empty
from twin.stores.protocol import HistoryQuery, Store, TwinFilter
from twin.telemetry import decode_object, split_envelope

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode


class IngestSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    queue_max: Annotated[
        int, Meta(ge=1, description="Items waiting for the consumer; when full, publishers wait (delayed PUBACK).")
    ] = 10_000
    batch_max: Annotated[int, Meta(ge=1, description="Items applied per group commit at most.")] = 1_000
    max_clock_ahead_s: Annotated[
        float, Meta(ge=0, description="Device timestamps further ahead of the hub's clock are refused.")
    ] = 300.0
    commit_retry_max_s: Annotated[
        float, Meta(gt=0, description="Longest pause between retries of a failed commit.")
    ] = 5.0
    reporting_window_s: Annotated[
        float,
        Meta(
            ge=0,
            description="A connected vehicle with no telemetry for this long shows `connection.reporting: false`.",
        ),
    ] = 120.0
    presence_debounce_s: Annotated[
        float,
        Meta(ge=0, description="A vehicle back within this long of dropping off is a flap: no events, `since` kept."),
    ] = 10.0


class CommandHooks(Protocol):
    """What the twin consumer tells the command service (see `commands.CommandService`)."""

    def vehicle_connected(self, vehicle_id: str) -> None: ...

    def vehicle_disconnected(self, vehicle_id: str) -> None: ...

    def vehicle_subscribed(self, vehicle_id: str) -> None: ...

    async def result_received(self, item: Inbound) -> None: ...


class ErrorMessage(msgspec.Struct):
    """Payload of `vehicles/{vid}/errors`."""

    error: str
    detail: str
    topic: str
    ts: str | None


class HealthReport(msgspec.Struct):
    running: bool
    queue_depth: int
    queue_max: int
    last_commit_at: str | None
    last_commit_error: str | None
    twins_cached: int


@dataclass(slots=True)
class _Op:
    """An operator write run inside the consumer; `fn` mutates and returns the result."""

    vehicle_id: str
    fn: Callable[[TwinState], Any]
    done: asyncio.Future[Any]
    create: bool = False
    # The paths the write patches, told to observers so they look only at what it touched.
    changed: tuple[tuple[str, ...], ...] = ()


@dataclass(slots=True)
class _Batch:
    dirty: dict[str, TwinState] = field(default_factory=dict)
    history: list[HistoryRow] = field(default_factory=list)
    acks: list[asyncio.Future[Verdict]] = field(default_factory=list)
    results: list[tuple[asyncio.Future[Any], Any]] = field(default_factory=list)
    # Messages to vehicles, sent only after the data they reflect is committed.
    outbox: list[tuple[str, Channel, bytes]] = field(default_factory=list)
    updates: list[TwinUpdate] = field(default_factory=list)
    presence: list[PresenceEvent] = field(default_factory=list)
    accepted: int = 0


@dataclass(slots=True)
class _Offline:
    """A dropped link not yet reported: it becomes an event at `due` unless the vehicle returns."""

    at: float
    reason: str
    # When the vehicle had come online; restored if it returns in time.
    since: float | None
    due: float


_STOP = object()
# Queued by the presence timer so debounced events are written by the consumer, in order.
_TICK = object()


class TwinService:
    """Owns twins in memory, persists them through a `Store`, talks back through a channel."""

    def __init__(
        self,
        store: Store,
        *,
        limits: Limits | None = None,
        settings: IngestSettings | None = None,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.settings = settings or IngestSettings()
        self.metrics = metrics
        self.clock = clock
        self.channel: VehicleChannel | None = None
        self.observers: list[TwinObserver] = []
        # Derived values added to each telemetry message (odometer, engine hours), in order.
        self.enrichers: list[TelemetryEnricher] = []
        # The command service, once the hub wires one: it takes command results and presence changes.
        self.commands: CommandHooks | None = None
        self._queue: asyncio.Queue[Inbound | _Op | object] = asyncio.Queue(self.settings.queue_max)
        self._twins: dict[str, TwinState] = {}
        # What the current batch's prefetch found in the store (None: no twin stored).
        self._fetched: dict[str, TwinState | None] = {}
        # Vehicles with an open session, including ones that have no twin yet.
        self._online: dict[str, float] = {}
        # Insertion order is due order: every entry waits the same debounce.
        self._offline: dict[str, _Offline] = {}
        self._presence_timer: asyncio.TimerHandle | None = None
        self._running = False
        self._last_commit_at: float | None = None
        self._last_commit_error: str | None = None

    # -- the inbound side ------------------------------------------------------------

    async def submit(self, item: Inbound) -> None:
        await self._queue.put(item)

    def try_submit(self, item: Inbound) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def stop(self) -> None:
        """Ask `run` to finish what is queued, commit it and return."""
        # The stop marker may wait behind a full queue; a task keeps the caller non-blocking.
        if not self.try_submit(_STOP):  # type: ignore[arg-type]
            self._stopper = asyncio.get_running_loop().create_task(self._queue.put(_STOP))

    async def run(self) -> None:
        """The consumer; returns after `stop()` once everything before it is committed."""
        self._running = True
        try:
            stopping = False
            while not stopping:
                first = await self._queue.get()
                items = [first]
                while len(items) < self.settings.batch_max:
                    try:
                        items.append(self._queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                if self.metrics:
                    self.metrics.queue_depth.set(self._queue.qsize())
                if any(i is _STOP for i in items):
                    stopping = True
                items = [i for i in items if i is not _STOP and i is not _TICK]
                # On stop, links that dropped are reported now: the hub will not be here to see them return.
                await self._process(items, flush_presence=stopping)
        finally:
            self._running = False
            if self._presence_timer is not None:
                self._presence_timer.cancel()
                self._presence_timer = None

    async def _process(self, items: list[Inbound | _Op | object], *, flush_presence: bool = False) -> None:
        await self._prefetch(items)
        try:
            await self._apply_and_commit(items, flush_presence)
        finally:
            self._fetched.clear()

    async def _prefetch(self, items: list[Inbound | _Op | object]) -> None:
        """Load the twins this batch needs that are not in memory, in one query.

        One store round trip per missing twin made a reconnecting fleet stall ingest:
        each is a hop to the store's thread and back through a busy event loop.
        """
        wanted = {
            item.vehicle_id for item in items if isinstance(item, Inbound | _Op) and item.vehicle_id not in self._twins
        }
        if not wanted:
            return
        try:
            found = await self.store.load_twins(sorted(wanted))
        # Each item then loads its own twin, and reports its own store error.
        except Exception as exc:
            log.warning("twin prefetch failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._fetched = {vid: found.get(vid) for vid in wanted}

    async def _apply_and_commit(self, items: list[Inbound | _Op | object], flush_presence: bool) -> None:
        batch = _Batch()
        for item in items:
            if isinstance(item, Inbound):
                await self._apply_inbound(item, batch)
            elif isinstance(item, _Op):
                await self._apply_op(item, batch)
        await self._report_offline(batch, everything=flush_presence)
        if batch.dirty or batch.history or batch.presence:
            try:
                await self._commit(batch)
            except Fenced as exc:
                self._abandon(batch, exc)
                return
        for ack in batch.acks:
            if not ack.done():
                ack.set_result(ACCEPTED)
        for fut, result in batch.results:
            if not fut.done():
                fut.set_result(result)
        if self.channel is not None:
            for vid, channel, payload in batch.outbox:
                self.channel.send(vid, channel, payload)
        if batch.updates:
            for observer in self.observers:
                try:
                    observer.twin_updated(batch.updates)
                # An observer's bug must not stop ingest; its own log says what went wrong.
                except Exception:
                    log.exception("twin observer failed", observer=type(observer).__name__)
        if self.metrics and batch.accepted:
            self.metrics.accepted.inc(batch.accepted)

    async def _commit(self, batch: _Batch) -> None:
        delay = 0.05
        twins = list(batch.dirty.values())
        while True:
            started = time.perf_counter()
            try:
                await self.store.write_batch(twins, batch.history, batch.presence)
            # Any store failure is retried, never dropped: acks wait until the batch commits.
            # Except a fenced write (a hub worker that lost a partition's lease): retrying cannot
            # succeed, so the batch is abandoned unacknowledged (see `_abandon`).
            except Exception as exc:
                if is_fenced(exc):
                    raise Fenced(str(exc)) from exc
                self._last_commit_error = f"{type(exc).__name__}: {exc}"
                if self.metrics:
                    self.metrics.commit_failures.inc()
                log.error("commit failed, retrying", error=self._last_commit_error, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.commit_retry_max_s)
                continue
            self._last_commit_at = self.clock()
            self._last_commit_error = None
            if self.metrics:
                self.metrics.commit_seconds.observe(time.perf_counter() - started)
                self.metrics.batch_size.observe(len(batch.history) + len(twins))
            return

    def _abandon(self, batch: _Batch, exc: Fenced) -> None:
        """Drop a batch the database fenced off: nothing of it was written or is acknowledged.

        Its twins leave the cache (they hold changes that were not committed); QoS 1 acks
        are cancelled, so the edge does not acknowledge them and they are delivered again
        to the partition's owner; operator writes fail with the error.
        """
        log.warning("batch fenced off: this worker no longer owns its vehicles", error=str(exc))
        for vid in batch.dirty:
            self._twins.pop(vid, None)
        for ack in batch.acks:
            ack.cancel()
        for fut, _ in batch.results:
            if not fut.done():
                fut.set_exception(exc)

    def forget(self, vehicle: Callable[[str], bool]) -> None:
        """Drop what memory holds about the vehicles `vehicle` selects (cached twins, presence).

        A hub worker calls it when partitions move: the next owner's view comes from the
        database, not from a cache that another worker's writes have made stale.
        """
        for cache in (self._twins, self._online, self._offline):
            for vid in [v for v in cache if vehicle(v)]:
                del cache[vid]

    # -- applying vehicle messages ---------------------------------------------------

    async def _apply_inbound(self, item: Inbound, batch: _Batch) -> None:
        if item.kind is MessageKind.COMMAND_RESULT and self.commands is not None:
            # The command service stores the result and then resolves the ack itself.
            await self.commands.result_received(item)
            return
        if item.ack is not None:
            batch.acks.append(item.ack)
        try:
            match item.kind:
                case MessageKind.TELEMETRY:
                    await self._telemetry(item, batch)
                case MessageKind.TWIN_GET:
                    await self._twin_get(item, batch)
                case MessageKind.TWIN_REJECTED:
                    await self._twin_rejected(item, batch)
                case MessageKind.CONNECTED:
                    await self._connected(item, batch)
                case MessageKind.DISCONNECTED:
                    await self._disconnected(item, batch)
                case MessageKind.SUBSCRIBED:
                    await self._subscribed(item, batch)
                case MessageKind.COMMAND_RESULT:
                    # Commands arrive with the command queue; until then a result has no command.
                    raise InvalidPayload("unknown_command", f"no command '{item.subtopic}' is waiting for a result")
        except InvalidPayload as exc:
            self._refuse(item, exc, batch)
        except StoreError as exc:
            log.error("store error while applying message", vehicle_id=item.vehicle_id, error=str(exc))

    def _refuse(self, item: Inbound, exc: InvalidPayload, batch: _Batch) -> None:
        log.warning(
            "message refused",
            vehicle_id=item.vehicle_id,
            kind=item.kind.value,
            reason=exc.reason,
            detail=exc.detail,
        )
        if self.metrics:
            self.metrics.refused.labels(exc.reason).inc()
        topic = item.kind.value if not item.subtopic else f"commands/{item.subtopic}/result"
        payload = _encode(ErrorMessage(exc.reason, exc.detail, topic, isoformat(self.clock())))
        batch.outbox.append((item.vehicle_id, Channel.ERRORS, payload))

    async def _telemetry(self, item: Inbound, batch: _Batch) -> None:
        obj = decode_object(item.payload)
        check_patch(obj, self.limits)
        env = split_envelope(obj, item.received_at, self.settings.max_clock_ahead_s)
        state = await self._twin(item.vehicle_id, create=True)
        if state is None:  # pragma: no cover - create=True always yields a twin
            raise StoreError("twin could not be created")
        before = dict(state.reported)
        data = self._enrich(state, env.ts, env.data)
        change = apply_reported(state, flatten(data), env.ts)
        if change.applied:
            try:
                _check_document_size(state, self.limits)
            except LimitExceeded:
                # Refused whole: the twin keeps exactly what it had.
                state.reported = before
                raise
        if change.changed:
            state.version += 1
            refresh_desired_status(state, item.received_at)
        state.connection.last_seen = item.received_at
        state.updated_at = item.received_at
        batch.dirty[state.vehicle_id] = state
        batch.history.append(HistoryRow(state.vehicle_id, env.ts, item.received_at, env.seq, data))
        batch.accepted += 1
        if change.applied:
            batch.updates.append(
                TwinUpdate(
                    UpdateKind.TELEMETRY,
                    state.vehicle_id,
                    state,
                    item.received_at,
                    tuple(change.changed),
                    change.previous,
                )
            )

    def _enrich(self, state: TwinState, ts: float, data: dict[str, Json]) -> dict[str, Json]:
        for enricher in self.enrichers:
            try:
                extra = enricher.enrich(state, ts, data)
            # A derived value is never worth the message: it is kept without it.
            except Exception:
                log.exception(
                    "telemetry enricher failed", enricher=type(enricher).__name__, vehicle_id=state.vehicle_id
                )
                continue
            if extra:
                data = {**data, **extra}
        return data

    async def _twin_get(self, item: Inbound, batch: _Batch) -> None:
        request_id: str | None = None
        if item.payload.strip():
            obj = decode_object(item.payload)
            raw = obj.get("request_id")
            if raw is not None and not isinstance(raw, str):
                raise InvalidPayload("bad_request_id", "'request_id' must be a string")
            request_id = raw
        state = await self._twin(item.vehicle_id)
        if state is None:
            raise InvalidPayload("unknown_vehicle", "no twin exists yet; publish telemetry first")
        doc = msgspec.to_builtins(self._document(state))
        if request_id is not None:
            doc["request_id"] = request_id
        batch.outbox.append((item.vehicle_id, Channel.DOCUMENT, _encode(doc)))

    async def _twin_rejected(self, item: Inbound, batch: _Batch) -> None:
        obj = decode_object(item.payload)
        check_patch(obj, self.limits)
        reasons = {k: v if isinstance(v, str) else _encode(v).decode() for k, v in obj.items()}
        state = await self._twin(item.vehicle_id)
        if state is None:
            raise InvalidPayload("unknown_vehicle", "no twin exists yet; publish telemetry first")
        unknown = reject_desired(state, reasons)
        if len(unknown) < len(reasons):
            state.version += 1
            state.updated_at = item.received_at
            batch.dirty[state.vehicle_id] = state
            batch.updates.append(TwinUpdate(UpdateKind.REJECTED, state.vehicle_id, state, item.received_at))
        if unknown:
            raise InvalidPayload("unknown_desired_key", f"no desired value at {', '.join(sorted(unknown))}")

    async def _connected(self, item: Inbound, batch: _Batch) -> None:
        vid = item.vehicle_id
        flap = self._offline.pop(vid, None)
        since = flap.since if flap is not None and flap.since is not None else item.received_at
        self._online[vid] = since
        if self.commands is not None:
            self.commands.vehicle_connected(vid)
        if self.metrics:
            self.metrics.connected_vehicles.set(len(self._online))
            if flap is not None:
                self.metrics.presence_flaps.inc()
        if flap is None:
            batch.presence.append(PresenceEvent(vid, item.received_at, True))
        state = await self._twin(vid)
        if state is None:
            return
        state.connection = Connection(connected=True, since=since, last_seen=item.received_at)
        batch.dirty[vid] = state
        if flap is None:
            batch.updates.append(TwinUpdate(UpdateKind.CONNECTED, vid, state, item.received_at))
        self._queue_delta(state, batch)

    async def _disconnected(self, item: Inbound, batch: _Batch) -> None:
        vid = item.vehicle_id
        since = self._online.pop(vid, None)
        if self.commands is not None:
            self.commands.vehicle_disconnected(vid)
        if self.metrics:
            self.metrics.connected_vehicles.set(len(self._online))
        reason = item.extra.get("reason", DisconnectReason.CONNECTION_LOST.value)
        state = await self._twin(vid)
        if state is not None:
            # The document tells the truth at once; only the event and observers wait out a flap.
            state.connection = Connection(
                connected=False,
                since=item.received_at,
                last_seen=state.connection.last_seen,
                disconnect_reason=reason,
            )
            batch.dirty[vid] = state
        debounce = self.settings.presence_debounce_s
        if since is None and vid in self._offline:
            return  # a second drop without a connect in between says nothing new
        self._offline[vid] = _Offline(item.received_at, reason, since, asyncio.get_running_loop().time() + debounce)
        if debounce <= 0:
            await self._report_offline(batch)

    async def _report_offline(self, batch: _Batch, *, everything: bool = False) -> None:
        """Turn drops whose debounce ran out into events; arm the timer for the next one."""
        if not self._offline:
            return
        now = asyncio.get_running_loop().time()
        for vid, drop in list(self._offline.items()):
            if drop.due > now and not everything:
                break
            del self._offline[vid]
            batch.presence.append(PresenceEvent(vid, drop.at, False, drop.reason))
            state = await self._twin(vid)
            if state is not None:
                batch.updates.append(TwinUpdate(UpdateKind.DISCONNECTED, vid, state, drop.at))
        if self._offline and self._presence_timer is None:
            due = next(iter(self._offline.values())).due
            self._presence_timer = asyncio.get_running_loop().call_at(due, self._presence_due)

    def _presence_due(self) -> None:
        self._presence_timer = None
        # A full queue means the consumer is busy: it reports due drops with its next batch anyway.
        self.try_submit(_TICK)  # type: ignore[arg-type]

    async def _subscribed(self, item: Inbound, batch: _Batch) -> None:
        if self.commands is not None and item.extra.get("commands"):
            self.commands.vehicle_subscribed(item.vehicle_id)
        if item.subtopic != Channel.DELTA.value:
            return
        state = await self._twin(item.vehicle_id)
        if state is not None:
            self._queue_delta(state, batch)

    def _queue_delta(self, state: TwinState, batch: _Batch, *, even_if_empty: bool = False) -> None:
        delta = compute_delta(state, self.clock())
        if delta or even_if_empty:
            payload = _encode(DeltaMessage(version=state.version, delta=delta))
            batch.outbox.append((state.vehicle_id, Channel.DELTA, payload))

    async def _twin(self, vehicle_id: str, *, create: bool = False) -> TwinState | None:
        state = self._twins.get(vehicle_id)
        if state is not None:
            return state
        if vehicle_id in self._fetched:
            state = self._fetched[vehicle_id]
        else:
            state = await self.store.load_twin(vehicle_id)
        if state is None:
            if not create:
                return None
            now = self.clock()
            state = TwinState(vehicle_id=vehicle_id, created_at=now, updated_at=now)
        online_since = self._online.get(vehicle_id)
        if online_since is not None and not state.connection.connected:
            state.connection = Connection(connected=True, since=online_since, last_seen=state.connection.last_seen)
        elif online_since is None and state.connection.connected:
            # The hub restarted or the vehicle left while it was down: the stored flag is stale.
            state.connection = Connection(
                connected=False,
                since=self.clock(),
                last_seen=state.connection.last_seen,
                disconnect_reason=DisconnectReason.CONNECTION_LOST.value,
            )
        self._twins[vehicle_id] = state
        return state

    # -- operator writes -------------------------------------------------------------

    async def _apply_op(self, op: _Op, batch: _Batch) -> None:
        try:
            state = await self._twin(op.vehicle_id, create=op.create)
            if state is None:
                raise NotFound(f"vehicle '{op.vehicle_id}' not found")
            snapshot = copy.deepcopy(state)
            try:
                result = op.fn(state)
                _check_document_size(state, self.limits)
            except BaseException:
                # An operator write is all or nothing: restore the twin as it was.
                self._twins[op.vehicle_id] = snapshot
                raise
        # The caller gets the exception; the consumer carries on with the rest of the batch.
        except Exception as exc:
            if not op.done.done():
                op.done.set_exception(exc)
            return
        batch.dirty[state.vehicle_id] = state
        kind = UpdateKind.DESIRED if isinstance(result, _DeltaChanged) else UpdateKind.TAGS
        batch.updates.append(TwinUpdate(kind, state.vehicle_id, state, self.clock(), op.changed))
        if isinstance(result, _DeltaChanged):
            self._queue_delta(state, batch, even_if_empty=True)
        batch.results.append((op.done, self._document(state)))

    async def _run_op(
        self,
        vehicle_id: str,
        fn: Callable[[TwinState], Any],
        *,
        create: bool = False,
        changed: tuple[tuple[str, ...], ...] = (),
    ) -> TwinDocument:
        if not self._running:
            raise StoreError("the twin service is not running")
        done: asyncio.Future[TwinDocument] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Op(vehicle_id, fn, done, create, changed))
        return await done

    async def patch_desired(
        self,
        vehicle_id: str,
        patch: Mapping[str, Json],
        *,
        if_match: int | None = None,
        ttl_s: float | None = None,
        clear_applied: bool = False,
    ) -> TwinDocument:
        """Merge `patch` into desired; the new delta goes to the vehicle once committed.

        With `clear_applied`, the patched keys leave desired once the vehicle applies them.
        """
        check_patch(patch, self.limits)

        def apply(state: TwinState) -> _DeltaChanged:
            _check_version(state, if_match)
            now = self.clock()
            apply_desired(state, patch, now, ttl_s, clear_applied=clear_applied)
            state.version += 1
            state.updated_at = now
            return _DeltaChanged()

        return await self._run_op(vehicle_id, apply, changed=_paths(patch))

    async def patch_tags(
        self, vehicle_id: str, patch: Mapping[str, Json], *, if_match: int | None = None
    ) -> TwinDocument:
        check_patch(patch, self.limits)

        def apply(state: TwinState) -> None:
            _check_version(state, if_match)
            state.tags = prune_empty(merge_patch(state.tags, patch))
            state.version += 1
            state.updated_at = self.clock()

        return await self._run_op(vehicle_id, apply, changed=_paths(patch))

    async def provision(self, vehicle_id: str, fleet: str, tags: Mapping[str, Json] | None = None) -> TwinDocument:
        """Create the vehicle's twin in `fleet` (or move an existing twin there), merging `tags`."""
        if tags:
            check_patch(tags, self.limits)

        def apply(state: TwinState) -> None:
            state.fleet = fleet
            if tags:
                state.tags = prune_empty(merge_patch(state.tags, tags))
            state.version += 1
            state.updated_at = self.clock()

        return await self._run_op(vehicle_id, apply, create=True)

    # -- reads -----------------------------------------------------------------------

    async def state(self, vehicle_id: str) -> TwinState | None:
        """The live twin (read-only for the caller), or None when the vehicle has none."""
        return self._twins.get(vehicle_id) or await self.store.load_twin(vehicle_id)

    async def states(self, query: TwinFilter) -> list[TwinState]:
        """Stored twins matching `query`, each replaced by its live version when one is held."""
        return [self._twins.get(s.vehicle_id, s) for s in await self.store.list_twins(query)]

    async def get_twin(self, vehicle_id: str) -> TwinDocument:
        state = self._twins.get(vehicle_id) or await self.store.load_twin(vehicle_id)
        if state is None:
            raise NotFound(f"vehicle '{vehicle_id}' not found")
        return self._document(state)

    async def twin_at(self, vehicle_id: str, at: float) -> TwinAsOf:
        """Reported state as of `at`, replayed from history through the same merge as ingest."""
        current = self._twins.get(vehicle_id) or await self.store.load_twin(vehicle_id)
        if current is None:
            raise NotFound(f"vehicle '{vehicle_id}' not found")
        rebuilt = TwinState(vehicle_id=vehicle_id, created_at=current.created_at, updated_at=at)
        rows = 0
        cursor: str | None = None
        while True:
            page = await self.store.history_until(vehicle_id, at, cursor=cursor, limit=1000)
            for row in page.rows:
                apply_reported(rebuilt, flatten(row.data), row.ts)
            rows += len(page.rows)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return to_as_of(vehicle_id, current.fleet, at, rebuilt, rows)

    async def list_twins(self, query: TwinFilter) -> list[TwinDocument]:
        states = await self.store.list_twins(query)
        docs = []
        for stored in states:
            # The in-memory twin may hold a change whose commit is still in flight.
            docs.append(self._document(self._twins.get(stored.vehicle_id, stored)))
        return docs

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        if vehicle_id_unknown := (
            query.vehicle_id not in self._twins and await self.store.load_twin(query.vehicle_id) is None
        ):
            del vehicle_id_unknown
            raise NotFound(f"vehicle '{query.vehicle_id}' not found")
        return await self.store.history(query)

    def _document(self, state: TwinState) -> TwinDocument:
        return to_document(state, now=self.clock(), reporting_window_s=self.settings.reporting_window_s)

    def health(self) -> HealthReport:
        return HealthReport(
            running=self._running,
            queue_depth=self._queue.qsize(),
            queue_max=self.settings.queue_max,
            last_commit_at=isoformat(self._last_commit_at),
            last_commit_error=self._last_commit_error,
            twins_cached=len(self._twins),
        )

    @property
    def online_vehicles(self) -> int:
        return len(self._online)


def _document_bytes(state: TwinState) -> int:
    return len(_encode(state.reported)) + len(_encode(state.desired)) + len(_encode(state.tags))


def _check_document_size(state: TwinState, limits: Limits) -> None:
    size = _document_bytes(state)
    if size > limits.max_document_bytes:
        raise LimitExceeded(
            "document_too_large",
            f"the twin would grow to {size} bytes, the limit is {limits.max_document_bytes}",
        )


class _DeltaChanged:
    """Marks an operator write after which the vehicle must get its new delta."""


def _paths(patch: Mapping[str, Json]) -> tuple[tuple[str, ...], ...]:
    """The paths a patch writes or deletes (an empty object is a leaf, see `flatten`)."""
    return tuple(path for path, _ in flatten(patch))


def _check_version(state: TwinState, if_match: int | None) -> None:
    if if_match is not None and state.version != if_match:
        raise VersionConflict(expected=if_match, current=state.version)


@contextlib.asynccontextmanager
async def running(service: TwinService) -> Any:
    """Run the consumer for the duration of a block; drains and commits on exit."""
    task = asyncio.get_running_loop().create_task(service.run())
    try:
        yield service
    finally:
        service.stop()
        await task

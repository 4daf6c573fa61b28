"""Stage 2, apply: one handler per message kind, and operator writes, changing the live twins.

A handler gets a message stage 1 decoded and validated, changes the twin it concerns
and records in the batch what must be written and what must be sent once written.
Nothing here writes to the store or sends anything: that waits for the commit.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
import structlog

from kernel import InvalidPayload, LimitExceeded, NotFound, StoreError, isoformat
from twin.batch import Batch, DeltaChanged, Op, topic_of
from twin.decode import Decoded, Rejections, TwinRequest
from twin.document import DeltaMessage, TwinDocument
from twin.inbound import Channel, DisconnectReason, Inbound, MessageKind, Verdict
from twin.limits import Limits
from twin.live import LiveTwins
from twin.merge import apply_reported, compute_delta, refresh_desired_status, reject_desired
from twin.metrics import IngestMetrics
from twin.model import Connection, HistoryRow, Json, PresenceEvent, TwinState
from twin.observe import TelemetryEnricher, TwinUpdate, UpdateKind
from twin.paths import flatten
from twin.telemetry import Envelope

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode


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


@dataclass(slots=True)
class _Offline:
    """A dropped link not yet reported: it becomes an event at `due` unless the vehicle returns."""

    at: float
    reason: str
    # When the vehicle had come online; restored if it returns in time.
    since: float | None
    due: float


class Handlers:
    def __init__(
        self,
        live: LiveTwins,
        *,
        limits: Limits,
        presence_debounce_s: float,
        document: Callable[[TwinState], TwinDocument],
        clock: Callable[[], float],
        metrics: IngestMetrics | None,
        wake: Callable[[], None],
    ) -> None:
        self.live = live
        self.limits = limits
        self.presence_debounce_s = presence_debounce_s
        self.document = document
        self.clock = clock
        self.metrics = metrics
        # Asks the consumer for a pass when debounced presence events fall due.
        self.wake = wake
        self.commands: CommandHooks | None = None
        # Set by a hub worker (cluster/): presence comes from the vehicles' own status messages, and
        # one published before any worker subscribed is never seen; a message received after the
        # twin's last drop then says the vehicle is connected.
        self.implied_presence = False
        # Derived values added to each telemetry message (odometer, engine hours), in order.
        self.enrichers: list[TelemetryEnricher] = []
        # Insertion order is due order: every entry waits the same debounce.
        self._offline: dict[str, _Offline] = {}
        self._presence_timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None

    # -- vehicle messages -------------------------------------------------------------

    def forget_pending(self, vehicle: Callable[[str], bool]) -> None:
        """Drop debounced drops not yet reported for the vehicles `vehicle` selects (their partition moved)."""
        for vid in [v for v in self._offline if vehicle(v)]:
            del self._offline[vid]

    async def apply(self, item: Inbound, decoded: Decoded, batch: Batch) -> None:
        """Apply one decoded message; raises `InvalidPayload` to refuse it."""
        match item.kind, decoded:
            case MessageKind.TELEMETRY, Envelope() as envelope:
                await self._telemetry(item, envelope, batch)
            case MessageKind.TWIN_GET, TwinRequest() as request:
                await self._twin_get(item, request, batch)
            case MessageKind.TWIN_REJECTED, Rejections() as rejections:
                await self._twin_rejected(item, rejections, batch)
            case MessageKind.CONNECTED, _:
                await self._connected(item, batch)
            case MessageKind.DISCONNECTED, _:
                await self._disconnected(item, batch)
            case MessageKind.SUBSCRIBED, _:
                await self._subscribed(item, batch)
            case MessageKind.COMMAND_RESULT, _:
                # Commands arrive with the command queue; until then a result has no command.
                raise InvalidPayload("unknown_command", f"no command '{item.subtopic}' is waiting for a result")

    def refuse(self, item: Inbound, exc: InvalidPayload, batch: Batch) -> None:
        log.warning(
            "message refused",
            vehicle_id=item.vehicle_id,
            kind=item.kind.value,
            reason=exc.reason,
            detail=exc.detail,
        )
        if self.metrics:
            self.metrics.refused.labels(exc.reason).inc()
        if item.ack is not None and not item.ack.done():
            # Refused is final: acknowledged (there is nothing to commit) and not routed on.
            item.ack.set_result(Verdict.refused(exc.reason, exc.detail))
        payload = _encode(ErrorMessage(exc.reason, exc.detail, topic_of(item), isoformat(self.clock())))
        batch.outbox.append((item.vehicle_id, Channel.ERRORS, payload))

    async def _telemetry(self, item: Inbound, env: Envelope, batch: Batch) -> None:
        state = await self.live.get(item.vehicle_id, create=True)
        if state is None:  # pragma: no cover - create=True always yields a twin
            raise StoreError("twin could not be created")
        if self.implied_presence and not state.connection.connected:
            await self._implied_connect(item, state, batch)
        before = dict(state.reported)
        data = self._enrich(state, env.ts, env.data)
        change = apply_reported(state, flatten(data), env.ts)
        if change.applied:
            try:
                check_document_size(state, self.limits)
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

    async def _twin_get(self, item: Inbound, request: TwinRequest, batch: Batch) -> None:
        state = await self.live.get(item.vehicle_id)
        if state is None:
            raise InvalidPayload("unknown_vehicle", "no twin exists yet; publish telemetry first")
        doc = msgspec.to_builtins(self.document(state))
        if request.request_id is not None:
            doc["request_id"] = request.request_id
        batch.outbox.append((item.vehicle_id, Channel.DOCUMENT, _encode(doc)))

    async def _twin_rejected(self, item: Inbound, rejections: Rejections, batch: Batch) -> None:
        reasons = rejections.reasons
        state = await self.live.get(item.vehicle_id)
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

    # -- presence ---------------------------------------------------------------------

    async def _connected(self, item: Inbound, batch: Batch) -> None:
        vid = item.vehicle_id
        online = self.live.online
        flap = self._offline.pop(vid, None)
        since = flap.since if flap is not None and flap.since is not None else item.received_at
        online[vid] = since
        if self.commands is not None:
            self.commands.vehicle_connected(vid)
        if self.metrics:
            self.metrics.connected_vehicles.set(len(online))
            if flap is not None:
                self.metrics.presence_flaps.inc()
        if flap is None:
            batch.presence.append(PresenceEvent(vid, item.received_at, True))
        state = await self.live.get(vid)
        if state is None:
            return
        state.connection = Connection(connected=True, since=since, last_seen=item.received_at)
        batch.dirty[vid] = state
        if flap is None:
            batch.updates.append(TwinUpdate(UpdateKind.CONNECTED, vid, state, item.received_at))
        self.queue_delta(state, batch)

    async def _implied_connect(self, item: Inbound, state: TwinState, batch: Batch) -> None:
        # Received before the drop the twin records: a late message (through another worker) says nothing.
        if state.connection.since is not None and item.received_at <= state.connection.since:
            return
        await self._connected(Inbound(item.vehicle_id, MessageKind.CONNECTED, b"", item.received_at), batch)

    async def _disconnected(self, item: Inbound, batch: Batch) -> None:
        vid = item.vehicle_id
        online = self.live.online
        since = online.pop(vid, None)
        if self.commands is not None:
            self.commands.vehicle_disconnected(vid)
        if self.metrics:
            self.metrics.connected_vehicles.set(len(online))
        reason = item.extra.get("reason", DisconnectReason.CONNECTION_LOST.value)
        state = await self.live.get(vid)
        if state is not None:
            # The document tells the truth at once; only the event and observers wait out a flap.
            state.connection = Connection(
                connected=False,
                since=item.received_at,
                last_seen=state.connection.last_seen,
                disconnect_reason=reason,
            )
            batch.dirty[vid] = state
        debounce = self.presence_debounce_s
        if since is None and vid in self._offline:
            return  # a second drop without a connect in between says nothing new
        self._offline[vid] = _Offline(item.received_at, reason, since, asyncio.get_running_loop().time() + debounce)
        if debounce <= 0:
            await self.report_offline(batch)

    async def report_offline(self, batch: Batch, *, everything: bool = False) -> None:
        """Turn drops whose debounce ran out into events; arm the timer for the next one."""
        if not self._offline:
            return
        now = asyncio.get_running_loop().time()
        for vid, drop in list(self._offline.items()):
            if drop.due > now and not everything:
                break
            del self._offline[vid]
            batch.presence.append(PresenceEvent(vid, drop.at, False, drop.reason))
            state = await self.live.get(vid)
            if state is not None:
                batch.updates.append(TwinUpdate(UpdateKind.DISCONNECTED, vid, state, drop.at))
        if self._offline and self._presence_timer is None:
            due = next(iter(self._offline.values())).due
            self._presence_timer = asyncio.get_running_loop().call_at(due, self._presence_due)

    def _presence_due(self) -> None:
        self._presence_timer = None
        self.wake()

    async def _subscribed(self, item: Inbound, batch: Batch) -> None:
        if self.commands is not None and item.extra.get("commands"):
            self.commands.vehicle_subscribed(item.vehicle_id)
        if item.subtopic != Channel.DELTA.value:
            return
        state = await self.live.get(item.vehicle_id)
        if state is not None:
            self.queue_delta(state, batch)

    def queue_delta(self, state: TwinState, batch: Batch, *, even_if_empty: bool = False) -> None:
        delta = compute_delta(state, self.clock())
        if delta or even_if_empty:
            payload = _encode(DeltaMessage(version=state.version, delta=delta))
            batch.outbox.append((state.vehicle_id, Channel.DELTA, payload))

    # -- operator writes ---------------------------------------------------------------

    async def apply_op(self, op: Op, batch: Batch) -> None:
        try:
            state = await self.live.get(op.vehicle_id, create=op.create)
            if state is None:
                raise NotFound(f"vehicle '{op.vehicle_id}' not found")
            # An operator write is all or nothing: it is applied to a copy, which replaces the
            # live twin's contents only when it succeeds. The live twin may already be in this
            # batch (telemetry of the same vehicle), so a refused write must never touch it.
            draft = copy.deepcopy(state)
            result = op.fn(draft)
            check_document_size(draft, self.limits)
            _adopt(state, draft)
        # The caller gets the exception; the consumer carries on with the rest of the batch.
        except Exception as exc:
            if not op.done.done():
                op.done.set_exception(exc)
            return
        batch.dirty[state.vehicle_id] = state
        batch.statements.extend(record(state) for record in op.records)
        kind = UpdateKind.DESIRED if isinstance(result, DeltaChanged) else UpdateKind.TAGS
        batch.updates.append(TwinUpdate(kind, state.vehicle_id, state, self.clock(), op.changed))
        if isinstance(result, DeltaChanged):
            self.queue_delta(state, batch, even_if_empty=True)
        batch.results.append((op.done, self.document(state)))


def _adopt(state: TwinState, draft: TwinState) -> None:
    """Give the live twin the contents of a successfully changed copy (observers hold the live object)."""
    for name in state.__struct_fields__:
        setattr(state, name, getattr(draft, name))


def _document_bytes(state: TwinState) -> int:
    return len(_encode(state.reported)) + len(_encode(state.desired)) + len(_encode(state.tags))


def check_document_size(state: TwinState, limits: Limits) -> None:
    size = _document_bytes(state)
    if size > limits.max_document_bytes:
        raise LimitExceeded(
            "document_too_large",
            f"the twin would grow to {size} bytes, the limit is {limits.max_document_bytes}",
        )

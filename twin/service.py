"""The twin service: one ordered consumer that owns every twin write.

Vehicle messages, presence changes and operator writes all pass through one queue and
one consumer, so there is a single writer and no lock. Each batch the consumer takes
goes through four stages:

1. decode and validate (`twin.decode`): payloads to checked values, or a refusal;
2. apply (`twin.handlers`): one handler per message kind changes the live twins
   (`twin.live`) and records what to write and what to send;
3. commit (`twin.commit`): one transaction; transient store failures retried, a value
   the database refuses isolated and quarantined;
4. acknowledge and publish: QoS 1 futures resolved (the broker sends PUBACK and routes
   the message on), API callers answered, deltas sent, observers told.

While a commit is in flight new items pile up and form the next batch, so batches grow
with load and latency stays low when idle. Reads go through the read model
(`twin.reads`). The failure model is docs/failure-model.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import structlog
from msgspec import Meta

from kernel import Fenced, InvalidPayload, StoreError, StoreRejected, StoreUnavailable, is_fenced, isoformat
from twin.batch import AuditRecord, Batch, DeltaChanged, Item, Op, topic_of
from twin.commit import Abandoned, Committer, Rejected
from twin.decode import Decoded, decode
from twin.document import TwinAsOf, TwinDocument, to_document
from twin.errors import VersionConflict
from twin.handlers import CommandHooks, ErrorMessage, Handlers
from twin.inbound import ACCEPTED, Channel, Inbound, MessageKind, VehicleChannel, Verdict
from twin.limits import Limits, check_patch, check_ttl
from twin.live import LiveTwins
from twin.merge import apply_desired, merge_patch
from twin.metrics import IngestMetrics
from twin.model import HistoryRow, Json, PendingDrop, PresenceEvent, TwinState
from twin.observe import TelemetryEnricher, TwinObserver
from twin.paths import flatten, prune_empty
from twin.reads import TwinReads
from twin.stores.dead_letters import DeadLetter, DeadLetterStore, MemoryDeadLetters
from twin.stores.protocol import HistoryQuery, Store, TwinFilter
from twin.writes import DesiredWrite, OperatorWrite, TagsWrite, TwinCreate, WriteRoute

__all__ = ["CommandHooks", "ErrorMessage", "HealthReport", "IngestSettings", "TwinService", "running"]

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
    shutdown_timeout_s: Annotated[
        float,
        Meta(
            gt=0,
            description="After SIGTERM, how long the consumer may go on committing what is queued; what is not "
            "committed by then is left unacknowledged (its senders send it again).",
        ),
    ] = 10.0
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


class HealthReport(msgspec.Struct):
    running: bool
    queue_depth: int
    queue_max: int
    # Items taken from the queue whose batch is not committed yet.
    in_flight: int
    last_commit_at: str | None
    last_commit_error: str | None
    twins_cached: int
    # Messages quarantined since the hub started (the dead-letter table holds every one).
    dead_letters: int = 0
    last_dead_letter_at: str | None = None
    last_dead_letter_reason: str | None = None


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
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.settings = settings or IngestSettings()
        self.metrics = metrics
        self.clock = clock
        self.channel: VehicleChannel | None = None
        self.observers: list[TwinObserver] = []
        # Hub workers (cluster/): where writes of vehicles this node does not own go. None: all here.
        self.route: WriteRoute | None = None
        self.dead_letters: DeadLetterStore = dead_letters or MemoryDeadLetters()
        self._queue: asyncio.Queue[Item | object] = asyncio.Queue(self.settings.queue_max)
        self.live = LiveTwins(store, clock)
        self.reads = TwinReads(store, self.live, self._document)
        self.handlers = Handlers(
            self.live,
            limits=self.limits,
            presence_debounce_s=self.settings.presence_debounce_s,
            document=self._document,
            clock=clock,
            metrics=metrics,
            wake=self._tick,
        )
        self.committer = Committer(
            store,
            retry_max_s=self.settings.commit_retry_max_s,
            shutdown_timeout_s=self.settings.shutdown_timeout_s,
            metrics=metrics,
            clock=clock,
        )
        self._running = False
        self._dead_letters_total = 0
        self._last_dead_letter: DeadLetter | None = None
        # Items taken from the queue whose batch is not finished yet: being applied, or committing.
        self._applying = 0
        self._committing: _Committing | None = None
        if metrics is not None:
            # Read when scraped, so they tell the truth while the consumer is stuck on a commit.
            metrics.queue_depth.set_function(self._queue.qsize)
            metrics.in_flight.set_function(lambda: self._in_flight)

    @property
    def _in_flight(self) -> int:
        committing = self._committing
        return self._applying + (len(committing.items) if committing and not committing.task.done() else 0)

    @property
    def enrichers(self) -> list[TelemetryEnricher]:
        """Derived values added to each telemetry message (odometer, engine hours), in order."""
        return self.handlers.enrichers

    @property
    def commands(self) -> CommandHooks | None:
        """The command service, once the hub wires one: it takes command results and presence changes."""
        return self.handlers.commands

    @commands.setter
    def commands(self, hooks: CommandHooks | None) -> None:
        self.handlers.commands = hooks

    # -- the inbound side ------------------------------------------------------------

    async def submit(self, item: Inbound) -> None:
        await self._queue.put(item)

    def try_submit(self, item: Inbound) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def _tick(self) -> None:
        # A full queue means the consumer is busy: it reports due drops with its next batch anyway.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_TICK)

    def stop(self) -> None:
        """Ask `run` to commit what is queued and return, within `shutdown_timeout_s`.

        What is not committed by then is left unacknowledged: the senders send it again.
        """
        self.committer.stop()
        # The stop marker may wait behind a full queue; a task keeps the caller non-blocking.
        try:
            self._queue.put_nowait(_STOP)
        except asyncio.QueueFull:
            self._stopper = asyncio.get_running_loop().create_task(self._queue.put(_STOP))

    # -- the consumer ----------------------------------------------------------------

    async def run(self) -> None:
        """The consumer; returns after `stop()` once everything before it is committed (or abandoned).

        Pipelined: while one batch commits, the next is decoded and applied. The twins the
        committing batch holds are frozen (`LiveTwins.freeze`): the next batch changes copies
        of them, so what is written is exactly what was applied. One commit is in flight at a
        time and batches are acknowledged in order.
        """
        self._running = True
        committing: _Committing | None = None
        try:
            stopping = False
            while not stopping:
                items = await self._take()
                stopping = any(i is _STOP for i in items)
                work = [i for i in items if isinstance(i, Inbound | Op)]
                if self.committer.past_deadline():
                    await self._settled(committing)
                    committing = None
                    self._abandon(work)
                    continue
                # On stop, links that dropped are reported now: the hub will not be here to see them return.
                committing = await self._next(committing, work, flush_presence=stopping)
            await self._settled(committing)
        finally:
            self._running = False
            current = self._committing
            if current is not None and not current.task.done():
                # Cancelled while a commit is in flight (the hub's stop bound): none of it is acknowledged.
                current.task.cancel()
                self._abandon(current.items)
            self._abandon_queued()
            self.handlers.close()

    async def _take(self) -> list[Item | object]:
        items = [await self._queue.get()]
        while len(items) < self.settings.batch_max:
            try:
                items.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return items

    async def _next(
        self, committing: _Committing | None, work: list[Item], *, flush_presence: bool
    ) -> _Committing | None:
        """Apply `work` while `committing` commits; then start its own commit. Returns what commits now."""
        self._applying = len(work)
        try:
            batch = await self._prepare(work, flush_presence)
        except Exception:
            # Whatever went wrong stays with these items; the commit in flight is not affected.
            log.exception("ingest batch failed; its items are left unacknowledged", items=len(work))
            self._applying = 0
            await self._settled(committing)
            self.live.forget(item.vehicle_id for item in work)
            self._abandon(work)
            return None
        if committing is not None and await self._failed(committing):
            # This batch was applied on top of twins that did not commit: apply it again.
            self.live.forget([*(item.vehicle_id for item in work), *batch.dirty])
            await self._supervised(_without_results(work), flush_presence=flush_presence)
            return None
        self._applying = 0
        if not batch.writes:
            self._acknowledge(batch)
            return None
        self.live.freeze(batch.dirty)
        task = asyncio.get_running_loop().create_task(self._commit_then_acknowledge(batch))
        self._committing = _Committing(task, batch, work)
        return self._committing

    async def _commit_then_acknowledge(self, batch: Batch) -> StoreError | None:
        """Commit; on success acknowledge at once (an idle consumer must not hold acks back).
        A refused value is returned for the consumer to isolate, waking it if it waits."""
        try:
            await self.committer.commit(batch)
        except Rejected as rejected:
            self._tick()
            return rejected.error
        except Abandoned:
            # Fenced off (a hub worker lost the lease): an idle consumer must still settle it now.
            self._tick()
            raise
        finally:
            self.live.thaw()
        self._acknowledge(batch)
        return None

    async def _failed(self, committing: _Committing) -> bool:
        """Wait for the commit in flight; True when its batch did not commit as a whole
        (its items are then isolated, quarantined or left unacknowledged)."""
        try:
            error = await committing.task
        except Abandoned as abandoned:
            self.live.forget([*(i.vehicle_id for i in committing.items), *committing.batch.dirty])
            self._abandon(committing.items, fenced=is_fenced(abandoned))
            return True
        except Exception:
            log.exception("ingest commit failed; its items are left unacknowledged", items=len(committing.items))
            self.live.forget([*(i.vehicle_id for i in committing.items), *committing.batch.dirty])
            self._abandon(committing.items)
            return True
        if error is None:
            return False
        self.live.forget([*(i.vehicle_id for i in committing.items), *committing.batch.dirty])
        try:
            await self._isolate(committing.items, committing.batch.presence, error)
        except Abandoned as abandoned:
            self._abandon(committing.items, fenced=is_fenced(abandoned))
        return True

    async def _settled(self, committing: _Committing | None) -> None:
        if committing is not None:
            await self._failed(committing)

    async def _prepare(self, items: list[Item], flush_presence: bool) -> Batch:
        """Stages 1 and 2: the batch to commit."""
        await self._prefetch(items)
        try:
            batch = Batch()
            await self._apply(self._decode(items, batch), batch, flush_presence)
        finally:
            self.live.end_batch()
        return batch

    async def _supervised(self, items: list[Item], *, flush_presence: bool) -> None:
        """Process one batch start to end; whatever goes wrong stays with its items."""
        try:
            await self._process(items, flush_presence=flush_presence)
        except Abandoned as abandoned:
            self._abandon(items, fenced=is_fenced(abandoned))
        # A bug in a stage must not end the consumer: the batch's items are not acknowledged
        # (their senders resend them) and the next batch starts from what is committed.
        except Exception:
            log.exception("ingest batch failed; its items are left unacknowledged", items=len(items))
            self.live.forget(item.vehicle_id for item in items)
            self._abandon(items)
        finally:
            self._applying = 0

    async def _process(self, items: list[Item], *, flush_presence: bool = False) -> None:
        """The four stages over one batch, without overlap (isolating a refused value, redoing)."""
        batch = await self._prepare(items, flush_presence)
        if await self._commit(batch, items):
            self._acknowledge(batch)

    async def _prefetch(self, items: list[Item]) -> None:
        """Load the twins this batch needs that are not in memory, in one query.

        One store round trip per missing twin made a reconnecting fleet stall ingest:
        each is a hop to the store's thread and back through a busy event loop. A store
        that cannot answer now is asked again with backoff while the batch's acks wait.
        """
        wanted = self.live.missing(item.vehicle_id for item in items)
        if not wanted:
            return
        found = await self.committer.retrying("twin read", lambda: self.store.load_twins(sorted(wanted)))
        self.live.prefetched({vid: found.get(vid) for vid in wanted})

    # Stage 1 ----------------------------------------------------------------------------

    def _decode(self, items: list[Item], batch: Batch) -> list[tuple[Item, Decoded]]:
        """Decode and validate every vehicle message; refused ones leave the batch here."""
        out: list[tuple[Item, Decoded]] = []
        for item in items:
            if isinstance(item, Op) or item.kind is MessageKind.COMMAND_RESULT:
                out.append((item, None))
                continue
            try:
                out.append((item, decode(item, self.limits, self.settings.max_clock_ahead_s)))
            except InvalidPayload as exc:
                self.handlers.refuse(item, exc, batch)
        return out

    # Stage 2 ----------------------------------------------------------------------------

    async def _apply(self, decoded: list[tuple[Item, Decoded]], batch: Batch, flush_presence: bool) -> None:
        for item, value in decoded:
            if isinstance(item, Op):
                await self.handlers.apply_op(item, batch)
            elif item.kind is MessageKind.COMMAND_RESULT and self.commands is not None:
                await self._command_result(self.commands, item)
            else:
                await self._apply_message(item, value, batch)
        await self.handlers.report_offline(batch, everything=flush_presence)

    async def _command_result(self, commands: CommandHooks, item: Inbound) -> None:
        # The command service stores the result and then resolves the ack itself.
        try:
            await commands.result_received(item)
        except Exception:
            log.exception("command result failed", vehicle_id=item.vehicle_id, command_id=item.subtopic)
            self._abandon([item])

    async def _apply_message(self, item: Inbound, value: Decoded, batch: Batch) -> None:
        if item.ack is not None:
            batch.acks.append(item.ack)
        try:
            await self.handlers.apply(item, value, batch)
        except InvalidPayload as exc:
            self.handlers.refuse(item, exc, batch)
        except StoreError as exc:
            # Its twin could not be read: nothing of it is applied, and it is not acknowledged.
            log.error("store error while applying message", vehicle_id=item.vehicle_id, error=str(exc))
            self._withhold(item, batch)
        # One message's bug stays with that message: it is not acknowledged (its sender resends
        # it, and merging is idempotent), and the consumer goes on.
        except Exception:
            log.exception("message failed", vehicle_id=item.vehicle_id, kind=item.kind.value)
            self._withhold(item, batch)

    def _withhold(self, item: Inbound, batch: Batch) -> None:
        if item.ack is None:
            return
        with contextlib.suppress(ValueError):
            batch.acks.remove(item.ack)
        self._abandon([item])

    # Stage 3 ----------------------------------------------------------------------------

    async def _commit(self, batch: Batch, items: list[Item]) -> bool:
        """True when `batch` committed. When the database refused a value in it, the batch is
        split until the offending item is found and quarantined; the rest commits (and is
        acknowledged) on the way, and False is returned."""
        if not batch.writes:
            return True
        try:
            await self.committer.commit(batch)
        except Rejected as rejected:
            self.live.forget([*(item.vehicle_id for item in items), *batch.dirty])
            await self._isolate(items, batch.presence, rejected.error)
            return False
        return True

    async def _isolate(self, items: list[Item], presence: list[PresenceEvent], error: StoreError) -> None:
        redo = _without_results(items)
        if not redo:
            if presence:
                log.error("presence events refused by the store, dropped", events=len(presence), error=str(error))
            return
        if len(redo) == 1:
            await self._quarantine(redo[0], error)
            if presence:
                await self._commit(Batch(presence=list(presence)), [])
            return
        mid = len(redo) // 2
        for part, carried in ((redo[:mid], presence), (redo[mid:], [])):
            batch = await self._prepare(part, False)
            batch.presence[:0] = carried
            if await self._commit(batch, part):
                self._acknowledge(batch)

    async def _quarantine(self, item: Item, error: StoreError) -> None:
        """Set aside the one item the database refuses: kept, counted, told to its sender."""
        reason, detail = "store_rejected", f"the database refused this message: {error}"
        if isinstance(item, Op):
            if not item.done.done():
                item.done.set_exception(StoreRejected(str(error)))
            return
        known = self.live.peek(item.vehicle_id)
        letter = DeadLetter(
            id=DeadLetter.new_id(),
            vehicle_id=item.vehicle_id,
            fleet=known.fleet if known is not None else None,
            kind=item.kind.value,
            topic=topic_of(item),
            payload=item.payload,
            reason=reason,
            detail=str(error),
            received_at=item.received_at,
            quarantined_at=self.clock(),
        )
        letters = self.dead_letters
        await self.committer.retrying("dead letter", lambda: letters.add(letter))
        self._dead_letters_total += 1
        self._last_dead_letter = letter
        log.error("message quarantined", vehicle_id=item.vehicle_id, kind=item.kind.value, error=str(error))
        if self.metrics:
            self.metrics.dead_letters.labels(item.kind.value).inc()
            self.metrics.refused.labels(reason).inc()
        if item.ack is not None and not item.ack.done():
            item.ack.set_result(Verdict.refused(reason, detail))
        if self.channel is not None:
            notice = ErrorMessage(reason, detail, topic_of(item), isoformat(self.clock()))
            self.channel.send(item.vehicle_id, Channel.ERRORS, _encode(notice))

    # Stage 4 ----------------------------------------------------------------------------

    def _acknowledge(self, batch: Batch) -> None:
        """After the commit: acknowledge, answer, send what waited for it, tell observers."""
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

    # Ownership (hub workers, cluster/) ---------------------------------------------------

    def forget(self, vehicle: Callable[[str], bool]) -> None:
        """Drop what memory holds about the vehicles `vehicle` selects: live twins, sessions, pending drops.

        A hub worker calls it when partitions move: the next owner's view comes from the
        database, not from a cache that another worker's writes have made stale.
        """
        self.live.forget([vid for vid in self.live.vehicles() if vehicle(vid)])
        for vid in [v for v in self.live.online if vehicle(v)]:
            del self.live.online[vid]
        self.handlers.forget_pending(vehicle)

    def adopt_online(self, online: Mapping[str, float]) -> None:
        """Vehicles another worker saw connect (vehicle -> since): their twins stay connected here."""
        self.live.online.update(online)

    def adopt_pending(self, drops: Mapping[str, PendingDrop]) -> None:
        """Drops another worker was debouncing (vehicle -> the twin's pending drop): finished here."""
        self.handlers.adopt_pending(drops)

    # Leaving items unacknowledged -------------------------------------------------------

    def _abandon(self, items: list[Item], *, fenced: bool = False) -> None:
        """Leave items unacknowledged: their senders send them again (MQTT resends on reconnect).

        `fenced`: the database refused the batch because this worker lost the partition's lease;
        nothing of it was written, so an operator write may go to the new owner (`_routed`).
        """
        for item in items:
            future = item.ack if isinstance(item, Inbound) else item.done
            if future is not None and not future.done():
                # Only an operator write's caller acts on the fence; messages stay unacknowledged as ever.
                error = (
                    Fenced("not committed: this worker no longer owns the vehicle's partition")
                    if fenced and isinstance(item, Op)
                    else StoreUnavailable("not committed: the hub is stopping or the batch failed")
                )
                future.set_exception(error)
                # Retrieved here: an unacknowledged message is expected, not an unhandled error.
                future.exception()
        if items:
            log.warning("items left unacknowledged", items=len(items))

    def _abandon_queued(self) -> None:
        left: list[Item] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if isinstance(item, Inbound | Op):
                left.append(item)
        self._abandon(left)

    # -- operator writes -------------------------------------------------------------

    async def _run_op(
        self,
        vehicle_id: str,
        fn: Callable[[TwinState], Any],
        *,
        create: bool = False,
        changed: tuple[tuple[str, ...], ...] = (),
        records: tuple[AuditRecord, ...] = (),
    ) -> TwinDocument:
        if not self._running:
            raise StoreError("the twin service is not running")
        done: asyncio.Future[TwinDocument] = asyncio.get_running_loop().create_future()
        await self._queue.put(Op(vehicle_id, fn, done, create, changed, records))
        return await done

    async def patch_desired(
        self,
        vehicle_id: str,
        patch: Mapping[str, Json],
        *,
        if_match: int | None = None,
        ttl_s: float | None = None,
        clear_applied: bool = False,
        audit: AuditRecord | None = None,
    ) -> TwinDocument:
        """Merge `patch` into desired; the new delta goes to the vehicle once committed.

        With `clear_applied`, the patched keys leave desired once the vehicle applies them.
        With `audit`, its entry commits in the same transaction as the change.
        """
        write = DesiredWrite(vehicle_id, dict(patch), if_match, ttl_s, clear_applied)
        return await self._routed(write, audit)

    async def patch_tags(
        self,
        vehicle_id: str,
        patch: Mapping[str, Json],
        *,
        if_match: int | None = None,
        audit: AuditRecord | None = None,
    ) -> TwinDocument:
        return await self._routed(TagsWrite(vehicle_id, dict(patch), if_match), audit)

    async def provision(self, vehicle_id: str, fleet: str, tags: Mapping[str, Json] | None = None) -> TwinDocument:
        """Create the vehicle's twin in `fleet` (or move an existing twin there), merging `tags`."""
        return await self._routed(TwinCreate(vehicle_id, fleet, dict(tags or {})), None)

    async def _routed(self, write: OperatorWrite, audit: AuditRecord | None) -> TwinDocument:
        """Apply here, or (a hub worker that does not own the vehicle) have its owner apply it."""
        asked = time.monotonic()
        if self.route is not None and not self.route.here(write.vehicle_id):
            # Refused here as it would be at the owner, without a round trip.
            self._check(write)
            return await self.route.forward(write, audit, since=asked)
        try:
            return await self.apply(write, audit=audit)
        except Fenced:
            if self.route is None:
                raise
            # The partition moved between `here` and the commit. The fence refused the whole
            # transaction, so nothing of this write was stored: the new owner applies it, once.
            log.info("operator write fenced off here; forwarding it to the new owner", vehicle=write.vehicle_id)
            return await self.route.forward(write, audit, since=asked)

    def _check(self, write: OperatorWrite) -> None:
        match write:
            case DesiredWrite():
                check_patch(write.patch, self.limits)
                check_ttl(write.ttl_s, self.limits)
            case TagsWrite():
                check_patch(write.patch, self.limits)
            case TwinCreate() if write.tags:
                check_patch(write.tags, self.limits)

    async def apply(
        self, write: OperatorWrite, *, audit: AuditRecord | None = None, outcome: AuditRecord | None = None
    ) -> TwinDocument:
        """Apply an operator write here, whoever owns the vehicle (the owner's side of a forwarded write).

        `audit` and `outcome` (the forwarded request's answer, cluster/requests.py) are rows
        made from the changed twin that commit in the same transaction as the change.
        """
        self._check(write)
        records = tuple(r for r in (audit, outcome) if r is not None)
        match write:
            case DesiredWrite():
                return await self._run_op(
                    write.vehicle_id, self._desired(write), changed=_paths(write.patch), records=records
                )
            case TagsWrite():
                return await self._run_op(
                    write.vehicle_id, self._tags(write), changed=_paths(write.patch), records=records
                )
            case TwinCreate():
                return await self._run_op(write.vehicle_id, self._create(write), create=True, records=records)

    def _desired(self, write: DesiredWrite) -> Callable[[TwinState], DeltaChanged]:
        def apply(state: TwinState) -> DeltaChanged:
            _check_version(state, write.if_match)
            now = self.clock()
            apply_desired(state, write.patch, now, write.ttl_s, clear_applied=write.clear_applied)
            state.version += 1
            state.updated_at = now
            return DeltaChanged()

        return apply

    def _tags(self, write: TagsWrite) -> Callable[[TwinState], None]:
        def apply(state: TwinState) -> None:
            _check_version(state, write.if_match)
            state.tags = prune_empty(merge_patch(state.tags, write.patch))
            state.version += 1
            state.updated_at = self.clock()

        return apply

    def _create(self, write: TwinCreate) -> Callable[[TwinState], None]:
        def apply(state: TwinState) -> None:
            state.fleet = write.fleet
            if write.tags:
                state.tags = prune_empty(merge_patch(state.tags, write.tags))
            state.version += 1
            state.updated_at = self.clock()

        return apply

    # -- reads (the read model) ---------------------------------------------------------

    async def state(self, vehicle_id: str) -> TwinState | None:
        """The live twin (read-only for the caller), or None when the vehicle has none."""
        return await self.reads.state(vehicle_id)

    async def states(self, query: TwinFilter) -> list[TwinState]:
        """Stored twins matching `query`, each replaced by its live version when one is held."""
        return await self.reads.states(query)

    async def get_twin(self, vehicle_id: str) -> TwinDocument:
        return await self.reads.get_twin(vehicle_id)

    async def twin_at(self, vehicle_id: str, at: float) -> TwinAsOf:
        """Reported state as of `at`, replayed from history through the same merge as ingest."""
        return await self.reads.twin_at(vehicle_id, at)

    async def list_twins(self, query: TwinFilter) -> list[TwinDocument]:
        return await self.reads.list_twins(query)

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        return await self.reads.history(query)

    def _document(self, state: TwinState) -> TwinDocument:
        return to_document(state, now=self.clock(), reporting_window_s=self.settings.reporting_window_s)

    def health(self) -> HealthReport:
        last = self._last_dead_letter
        return HealthReport(
            running=self._running,
            queue_depth=self._queue.qsize(),
            in_flight=self._in_flight,
            queue_max=self.settings.queue_max,
            last_commit_at=isoformat(self.committer.last_commit_at),
            last_commit_error=self.committer.last_error,
            twins_cached=len(self.live),
            dead_letters=self._dead_letters_total,
            last_dead_letter_at=isoformat(last.quarantined_at) if last else None,
            last_dead_letter_reason=last.detail if last else None,
        )

    @property
    def online_vehicles(self) -> int:
        return len(self.live.online)


@dataclass(slots=True)
class _Committing:
    """A batch whose commit is in flight while the consumer applies the next one."""

    task: asyncio.Task[StoreError | None]
    batch: Batch
    items: list[Item]


def _without_results(items: list[Item]) -> list[Item]:
    """Items to apply again; command results went to the command service with the first pass, never twice."""
    return [i for i in items if not (isinstance(i, Inbound) and i.kind is MessageKind.COMMAND_RESULT)]


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

"""The command service's engine: its state, the pass its task runs, and commit-then-act.

`CommandService` (commands.service) adds the operations the API calls on top; the
split follows the broker's layering: this part moves commands along (expiry, delivery
in order, resends, results, job sends at their rate), that part creates and changes them.

Every change is committed to the `CommandStore` before it has effects: a command is
stored as `sent` before it goes out, a result is stored before its PUBACK, and a job's
progress is stored with the commands it created. One lock orders every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import msgspec
import structlog

from commands.index import OpenCommands
from commands.jobs import Preconditions, RateLimit, TwinReader
from commands.metrics import CommandMetrics
from commands.model import (
    OPEN_STATES,
    RESULT_STATES,
    Command,
    CommandResult,
    CommandsSettings,
    CommandState,
    DeviceCommand,
    Job,
    JobState,
    Transition,
    command_view,
    new_id,
)
from commands.stores.protocol import CommandStore
from kernel import Fenced, InvalidPayload, VehicleIds, VehiclePartitions, deeper_than, is_fenced, isoformat
from security import AuditEntry
from twin import ACCEPTED, Channel, ErrorMessage, Inbound, Limits, VehicleChannel, Verdict, check_patch

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode
_decode_result = msgspec.json.Decoder(CommandResult).decode

# How often the service looks for expired commands, due resends and job sends.
TICK_S = 0.2
EVENT_PREFIX = "events/commands"


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


class Work:
    """Changes made under the lock, to commit together and then act on."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.jobs: dict[str, Job] = {}
        # Commands whose state changed: an event each, and waiters to wake.
        self.events: list[Command] = []
        self.sends: list[Command] = []
        self.acks: list[asyncio.Future[Verdict]] = []
        self.errors: list[tuple[str, str, bytes]] = []
        # Entries recording the operator actions among these changes, committed with them.
        self.audit: list[AuditEntry] = []

    def changed(self, command: Command, *, event: bool = True) -> None:
        self.commands[command.id] = command
        if event:
            self.events.append(msgspec.structs.replace(command, history=list(command.history)))

    def __bool__(self) -> bool:
        return bool(self.commands or self.jobs or self.audit)


class CommandEngine:
    def __init__(
        self,
        store: CommandStore,
        twins: TwinReader,
        *,
        settings: CommandsSettings | None = None,
        limits: Limits | None = None,
        preconditions: Preconditions | None = None,
        clock: Callable[[], float] = time.time,
        metrics: CommandMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.twins = twins
        self.settings = settings or CommandsSettings()
        self.limits = limits or Limits()
        self.preconditions = preconditions
        self.clock = clock
        # Set once the broker runs.
        self.channel: VehicleChannel | None = None
        self.publisher: Publisher | None = None
        self._lock = asyncio.Lock()
        self._open = OpenCommands()
        self._results: asyncio.Queue[Inbound] = asyncio.Queue(self.settings.queue_max)
        self._jobs: dict[str, Job] = {}
        self._buckets: dict[str, RateLimit] = {}
        # When each fully dispatched job may next be asked of the store (see `_finished_in_store`).
        self._job_checked: dict[str, float] = {}
        self._waiters: dict[str, list[asyncio.Future[Command]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.events_published = 0
        # Set by a hub worker (cluster/): it holds and sends the commands of the vehicles it owns.
        self.owns: Callable[[str], bool] | None = None
        # In a cluster one worker turns fleet jobs into commands; their owners send them.
        self.dispatches_jobs = True

    # -- hooks the twin service calls from its consumer (never blocking it for long) --

    def vehicle_connected(self, vehicle_id: str) -> None:
        # Queued commands go out now; what was sent before waits for the subscription (or its resend time).
        self._open.online.add(vehicle_id)
        self._open.due.setdefault(vehicle_id, False)
        self._wake.set()

    def vehicle_disconnected(self, vehicle_id: str) -> None:
        self._open.online.discard(vehicle_id)
        self._open.due.pop(vehicle_id, None)

    def vehicle_subscribed(self, vehicle_id: str) -> None:
        """The vehicle subscribed to its commands topic: what was sent before may have been lost."""
        self._open.due[vehicle_id] = True
        self._wake.set()

    async def result_received(self, item: Inbound) -> None:
        """Take a `commands/{id}/result` message; its `ack` is resolved once the result is stored."""
        if not self._running:
            # Not acknowledged: the vehicle sends it again to the next hub.
            return
        await self._results.put(item)
        self._wake.set()

    # -- the service's task ------------------------------------------------------------

    async def run_once(self) -> None:
        """One pass of the service's task now: results, expiry, delivery, job sends (tests drive it so)."""
        async with self._lock:
            await self._pass()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.run_once()
            # One bad pass must not stop delivery for every vehicle; the next tick tries again.
            except Exception:
                log.exception("command service pass failed")

    async def _pass(self) -> None:
        now = self.clock()
        work = Work()
        while not self._results.empty():
            await self._result(self._results.get_nowait(), now, work)
        # Expiry from a heap of deadlines, so queued commands of offline vehicles cost nothing per pass.
        for command in list(self._open.expired(now)):
            if command.id not in work.commands:
                self._expire(command, now, work)
        due, self._open.due = self._open.due, {}
        # Online vehicles with something waiting: send what is queued, resend what is due.
        for vehicle_id in self._open.online_with_commands():
            await self._deliver(vehicle_id, resend=due.get(vehicle_id, False), now=now, work=work)
        if self.dispatches_jobs:
            finished = await self._finished_in_store(now) if self.owns is not None else None
            self._dispatch_jobs(now, work, finished)
        await self._finish(work)

    async def _deliver(self, vehicle_id: str, *, resend: bool, now: float, work: Work) -> None:
        """Expire what is over; when online, send what is queued (in order) and resend what is due."""
        online = vehicle_id in self._open.online and self.channel is not None
        for command in self._open.of_vehicle(vehicle_id):
            if command.id in work.commands and not command.open:
                continue
            if now >= command.expires_at:
                self._expire(command, now, work)
                continue
            if not online:
                continue
            if command.state is CommandState.QUEUED:
                if command.precondition is not None and not await self._precondition_holds(command, now):
                    command.move(
                        CommandState.PRECONDITION_FAILED, now, f"precondition did not hold: {command.precondition}"
                    )
                    work.changed(command)
                    continue
                command.attempts += 1
                command.sent_at = now
                command.move(CommandState.SENT, now)
                work.changed(command)
                work.sends.append(command)
            elif resend or now - (command.sent_at or 0.0) >= self.settings.resend_interval_s:
                command.attempts += 1
                command.sent_at = now
                work.changed(command, event=False)
                work.sends.append(command)

    def _expire(self, command: Command, now: float, work: Work) -> None:
        detail = "ttl ended before the vehicle answered" if command.attempts else "ttl ended while queued"
        command.move(CommandState.EXPIRED, now, detail)
        work.changed(command)

    async def _precondition_holds(self, command: Command, now: float) -> bool:
        state = await self.twins.state(command.vehicle_id)
        if state is None or self.preconditions is None or command.precondition is None:
            return False
        return self.preconditions.holds(command.precondition, state, now)

    async def _result(self, item: Inbound, now: float, work: Work) -> None:
        command_id = item.subtopic
        if deeper_than(item.payload, self.limits.max_depth + 1):
            # Measured first: the decoder recurses once per level of nesting.
            self._refuse(item, "too_deep", f"a result nests deeper than {self.limits.max_depth} levels", work)
            return
        try:
            answer = _decode_result(item.payload)
        except msgspec.DecodeError as exc:
            self._refuse(
                item, "bad_result", f"a result is {{'status': ..., 'detail': ..., 'result': {{...}}}}: {exc}", work
            )
            return
        try:
            state = CommandState(answer.status)
        except ValueError:
            state = None
        if state is None or state not in RESULT_STATES:
            self._refuse(
                item, "bad_result", f"status must be succeeded, failed or rejected, got {answer.status!r}", work
            )
            return
        if answer.result is not None:
            try:
                check_patch(answer.result, self.limits)
            except InvalidPayload as exc:
                self._refuse(item, exc.reason, f"result: {exc.detail}", work)
                return
        command = self._open.get(item.vehicle_id, command_id)
        if command is None or not command.open:
            # Finished already, maybe earlier in this very pass (a resent result arriving right behind the first).
            stored = command or work.commands.get(command_id) or await self.store.get(command_id)
            if stored is None or stored.vehicle_id != item.vehicle_id:
                self._refuse(item, "unknown_command", f"no command '{command_id}' was sent to this vehicle", work)
            elif stored.state not in RESULT_STATES:
                self._refuse(
                    item, "command_closed", f"command '{command_id}' is {stored.state.value}; result not recorded", work
                )
            elif item.ack is not None:
                # A resend of a result already stored (QoS 1 is at least once).
                work.acks.append(item.ack)
            return
        command.result = answer.result
        command.move(state, now, answer.detail)
        work.changed(command)
        if item.ack is not None:
            work.acks.append(item.ack)

    def _refuse(self, item: Inbound, reason: str, detail: str, work: Work) -> None:
        log.warning("command result refused", vehicle_id=item.vehicle_id, command_id=item.subtopic, reason=reason)
        topic = f"commands/{item.subtopic}/result"
        work.errors.append(
            (item.vehicle_id, reason, _encode(ErrorMessage(reason, detail, topic, isoformat(self.clock()))))
        )
        if item.ack is not None:
            # MQTT 3.1.1 has no negative PUBACK: a refused message is acknowledged and dropped.
            work.acks.append(item.ack)

    async def _finished_in_store(self, now: float) -> set[str]:
        """The fully dispatched jobs none of whose commands is open, as the store says.

        In a cluster each command is held by its vehicle's owner, so the worker that
        dispatches jobs cannot tell from its own memory whether every target answered.
        Each job is asked at most every `commands.job_check_s`.
        """
        finished: set[str] = set()
        for job in list(self._jobs.values()):
            if job.dispatched < len(job.targets) or self._job_checked.get(job.id, 0.0) > now:
                continue
            self._job_checked[job.id] = now + self.settings.job_check_s
            try:
                stored = await self.store.get_job(job.id)
                counts = await self.store.count_states(job.id)
            # The pass has taken results off their queue already: a failed read must not end it before
            # they are stored. The job is asked again after job_check_s.
            except Exception:
                log.exception("reading a job's progress failed", job=job.id)
                continue
            if stored is None or stored.state not in (JobState.RUNNING, JobState.PAUSED):
                # Cancelled on another node: NOTIFY reloads the jobs, but this pass may come first.
                del self._jobs[job.id]
                self._buckets.pop(job.id, None)
                continue
            if not any(counts.get(state, 0) for state in OPEN_STATES):
                finished.add(job.id)
        return finished

    def _dispatch_jobs(self, now: float, work: Work, finished: set[str] | None = None) -> None:
        """Send what each running job's rate allows; complete the jobs whose commands all finished.

        `finished` names those jobs when the store decides it (a cluster); otherwise memory does.
        """
        for job in list(self._jobs.values()):
            if job.state is JobState.RUNNING and job.dispatched < len(job.targets):
                limit = self._buckets[job.id]
                count = min(limit.take(now), len(job.targets) - job.dispatched)
                limit.sent(now, count)
                for vehicle_id in job.targets[job.dispatched : job.dispatched + count]:
                    command = new_command(vehicle_id, job.name, job.args, now, job.ttl_s, job.precondition)
                    command.job_id = job.id
                    command.requested_by = job.requested_by
                    command.source = job.source
                    work.changed(command)
                    self._remember(command)
                if count:
                    job.dispatched += count
                    job.updated_at = now
                    work.jobs[job.id] = job
                    self._wake.set()
            done = self._open.waiting_for_job(job.id) == 0 if finished is None else job.id in finished
            if job.dispatched >= len(job.targets) and done:
                job.move(JobState.COMPLETED, now)
                work.jobs[job.id] = job
                del self._jobs[job.id]
                self._buckets.pop(job.id, None)
                self._job_checked.pop(job.id, None)

    # -- commit, then act ----------------------------------------------------------------

    async def _finish(self, work: Work) -> None:
        if work:
            try:
                await self._commit(work.commands.values(), work.jobs.values(), work.audit)
            except Fenced:
                await self._resync({c.vehicle_id for c in work.commands.values()})
                return
        for command in work.commands.values():
            if not command.open:
                self._forget(command)
        for ack in work.acks:
            if not ack.done():
                ack.set_result(ACCEPTED)
        if self.channel is not None:
            for vehicle_id, _, payload in work.errors:
                self.channel.send(vehicle_id, Channel.ERRORS, payload)
            for command in work.sends:
                payload = _encode(
                    DeviceCommand(
                        command.id, command.name, command.args, isoformat(command.expires_at), command.attempts
                    )
                )
                self.channel.send(command.vehicle_id, Channel.COMMAND, payload, qos=1, subtopic=command.id)
        if self.metrics is not None:
            self._count(work)
        for command in work.events:
            if not command.open:
                for waiter in self._waiters.pop(command.id, []):
                    if not waiter.done():
                        waiter.set_result(command)
            await self._publish(command)

    def _count(self, work: Work) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        for command in work.events:
            if command.state is CommandState.QUEUED:
                metrics.created.inc()
            elif not command.open:
                metrics.finished.labels(command.state.value).inc()
        if work.sends:
            metrics.sends.inc(len(work.sends))
        for _, reason, _ in work.errors:
            metrics.refused.labels(reason).inc()
        metrics.waiting.set(len(self._open))

    async def _commit(
        self, commands: Iterable[Command] = (), jobs: Iterable[Job] = (), audit: Iterable[AuditEntry] = ()
    ) -> None:
        commands, jobs, entries = list(commands), list(jobs), list(audit)
        delay = 0.05
        while True:
            try:
                await self.store.write(commands, jobs, entries)
                return
            # A failed write is retried, never dropped: nothing takes effect before it lands.
            # Except a fenced one: this worker lost the partition, so nothing of it may land.
            except Exception as exc:
                if is_fenced(exc):
                    raise Fenced(str(exc)) from exc
                log.error("commands store write failed, retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish(self, command: Command) -> None:
        if self.publisher is None:
            return
        payload = msgspec.to_builtins(command_view(command))
        payload["event"] = command.state.value
        try:
            await self.publisher.publish(f"{EVENT_PREFIX}/{command.vehicle_id}/{command.id}", _encode(payload), qos=1)
        # Events are for integrations; a failed publish must not undo a stored change.
        except Exception as exc:
            log.warning("command event not published", command_id=command.id, error=str(exc))
            return
        self.events_published += 1

    async def _resync(self, vehicles: set[str]) -> None:
        """A fenced write: nothing of it was stored or sent; memory takes the store's view back."""
        log.warning("commands write fenced off: partitions moved", vehicles=len(vehicles))
        await self.adopt(VehicleIds(frozenset(vehicles)))

    async def adopt(self, vehicle: Callable[[str], bool]) -> None:
        """Rebuild the open commands of the vehicles `vehicle` selects from the store.

        A hub worker calls it when it gains their partition, and when another node queued
        a command for one of its vehicles: sends then go out from here, the owner only.
        """
        self._drop(vehicle)
        # A worker's partitions, or the vehicles another node changed, are chosen by the store
        # (in SQL), not by reading every open command.
        chosen = vehicle if isinstance(vehicle, VehiclePartitions | VehicleIds) else None
        for command in await self.store.open_commands(chosen):
            if vehicle(command.vehicle_id) and self._mine(command.vehicle_id):
                self._open.add(command)
        self._wake.set()

    def release(self, vehicle: Callable[[str], bool]) -> None:
        """Forget the open commands and presence of the vehicles `vehicle` selects (another worker owns them)."""
        self._drop(vehicle)
        for vid in [v for v in self._open.online if vehicle(v)]:
            self.vehicle_disconnected(vid)

    def _drop(self, vehicle: Callable[[str], bool]) -> None:
        for vid in [v for v in self._open.vehicles() if vehicle(v)]:
            for command in self._open.of_vehicle(vid):
                self._open.remove(command)

    async def reload_jobs(self) -> None:
        """Take the open fleet jobs from the store again (a worker became the one that dispatches them)."""
        self._jobs = {job.id: job for job in await self.store.open_jobs()}
        self._buckets = {job.id: self._buckets.get(job.id) or RateLimit(job.rate) for job in self._jobs.values()}
        self._wake.set()

    def _mine(self, vehicle_id: str) -> bool:
        return self.owns is None or self.owns(vehicle_id)

    def _remember(self, command: Command) -> None:
        # In a cluster only the vehicle's owner holds (and sends) its commands; the store has them.
        if self._mine(command.vehicle_id):
            self._open.add(command)

    def _forget(self, command: Command) -> None:
        if self._open.remove(command) and command.job_id is not None and not self._open.waiting_for_job(command.job_id):
            # The job may be complete now.
            self._wake.set()

    def _current(self, command: Command) -> Command:
        live = self._open.get(command.vehicle_id, command.id)
        return copy_of(live) if live is not None else command

    @property
    def online_vehicles(self) -> set[str]:
        return set(self._open.online)


def new_command(
    vehicle_id: str, name: str, args: dict[str, Any], now: float, ttl_s: float, precondition: str | None
) -> Command:
    return Command(
        id=new_id(now),
        vehicle_id=vehicle_id,
        name=name,
        state=CommandState.QUEUED,
        created_at=now,
        expires_at=now + ttl_s,
        updated_at=now,
        args=dict(args),
        precondition=precondition,
        history=[Transition(CommandState.QUEUED, now)],
    )


_T = TypeVar("_T", Command, Job)


def copy_of(item: _T) -> _T:
    return msgspec.json.decode(_encode(item), type=type(item))

"""The command service: a durable per-vehicle queue, delivery, results and fleet jobs.

Every change is committed to the `CommandStore` before it has effects: a command is
stored as `sent` before it goes out, a result is stored before its PUBACK, and a
job's progress is stored with the commands it created. So a hub killed at any point
resumes where it was: queued commands are delivered when their vehicle comes back,
sent ones are sent again until their TTL ends, and jobs continue from `dispatched`.

One lock orders every change (API calls and the service's own task alike); the task
takes results and presence changes from the twin service's consumer, expires and
resends on a short tick, and feeds running jobs at their rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import msgspec
import structlog

from twin.commands import (
    IDEMPOTENCY_KEY_PATTERN,
    NAME_PATTERN,
    RESULT_STATES,
    Command,
    CommandResult,
    CommandsSettings,
    CommandState,
    DeviceCommand,
    Job,
    JobState,
    Selector,
    Transition,
    new_id,
    view,
)
from twin.commands_index import OpenCommands
from twin.commands_jobs import JobReport, Preconditions, RateLimit, TwinReader, report, resolve_targets
from twin.commands_metrics import CommandMetrics
from twin.commands_store import CommandQuery, CommandStore
from twin.errors import InvalidPayload, LimitExceeded, NotFound, TwinError
from twin.inbound import Channel, Inbound, VehicleChannel
from twin.limits import Limits, check_patch
from twin.service import ErrorMessage
from twin.telemetry import isoformat

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode
_decode_result = msgspec.json.Decoder(CommandResult).decode

# How often the service looks for expired commands, due resends and job sends.
TICK_S = 0.2
EVENT_PREFIX = "events/commands"


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


class CommandClosed(TwinError):
    """The command (or job) is no longer in a state that allows this."""


class _Work:
    """Changes made under the lock, to commit together and then act on."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.jobs: dict[str, Job] = {}
        # Commands whose state changed: an event each, and waiters to wake.
        self.events: list[Command] = []
        self.sends: list[Command] = []
        self.acks: list[asyncio.Future[None]] = []
        self.errors: list[tuple[str, str, bytes]] = []

    def changed(self, command: Command, *, event: bool = True) -> None:
        self.commands[command.id] = command
        if event:
            self.events.append(msgspec.structs.replace(command, history=list(command.history)))

    def __bool__(self) -> bool:
        return bool(self.commands or self.jobs)


class CommandService:
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
        self._waiters: dict[str, list[asyncio.Future[Command]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.events_published = 0

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.load()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="commands")
        log.info(
            "command service started",
            open_commands=len(self._open),
            open_jobs=len(self._jobs),
        )
        return self

    async def load(self) -> None:
        """Take up the stored open commands and jobs; `__aenter__` does this, then starts the task."""
        for command in await self.store.open_commands():
            self._remember(command)
        for job in await self.store.open_jobs():
            self._jobs[job.id] = job
            self._buckets[job.id] = RateLimit(job.rate)
        self._running = True

    async def run_once(self) -> None:
        """One pass of the service's task now: results, expiry, delivery, job sends (tests drive it so)."""
        async with self._lock:
            await self._pass()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._running = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        self._waiters.clear()

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

    # -- single commands ---------------------------------------------------------------

    async def create(
        self,
        vehicle_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        ttl_s: float | None = None,
        precondition: str | None = None,
        idempotency_key: str | None = None,
        requested_by: str = "anonymous",
        source: str | None = None,
    ) -> tuple[Command, bool]:
        """Queue a command; returns it and whether it is new (False: an idempotent repeat)."""
        args = args or {}
        ttl = self._check_request(name, args, ttl_s, precondition)
        if idempotency_key is not None and IDEMPOTENCY_KEY_PATTERN.fullmatch(idempotency_key) is None:
            raise InvalidPayload("bad_idempotency_key", "idempotency_key must be 1-128 printable ASCII characters")
        async with self._lock:
            if idempotency_key is not None:
                existing = await self.store.by_key(vehicle_id, idempotency_key)
                if existing is not None:
                    if existing.name != name or existing.args != args:
                        raise InvalidPayload(
                            "idempotency_key_reused",
                            f"idempotency_key {idempotency_key!r} was used for a different command ({existing.id})",
                        )
                    return self._current(existing), False
            if await self.twins.state(vehicle_id) is None:
                raise NotFound(f"vehicle '{vehicle_id}' not found")
            if len(self._open.of_vehicle(vehicle_id)) >= self.settings.max_open_per_vehicle:
                raise LimitExceeded(
                    "too_many_commands",
                    f"vehicle '{vehicle_id}' already has {self.settings.max_open_per_vehicle} commands waiting "
                    "(commands.max_open_per_vehicle); cancel some or wait",
                )
            now = self.clock()
            command = _new_command(vehicle_id, name, args, now, ttl, precondition)
            command.idempotency_key = idempotency_key
            command.requested_by = requested_by
            command.source = source
            work = _Work()
            work.changed(command)
            self._remember(command)
            if vehicle_id in self._open.online:
                await self._deliver(vehicle_id, resend=False, now=now, work=work)
            await self._finish(work)
        return self._current(command), True

    def _check_request(self, name: str, args: dict[str, Any], ttl_s: float | None, precondition: str | None) -> float:
        if NAME_PATTERN.fullmatch(name) is None:
            raise InvalidPayload("bad_name", f"name must be 1-64 of A-Z a-z 0-9 _ . -, got {name!r}")
        size = len(_encode(args))
        if size > self.settings.max_args_bytes:
            raise LimitExceeded(
                "args_too_large", f"args encode to {size} bytes, the limit is {self.settings.max_args_bytes}"
            )
        check_patch(args, self.limits)
        ttl = self.settings.default_ttl_s if ttl_s is None else ttl_s
        if not 0 < ttl <= self.settings.max_ttl_s:
            raise InvalidPayload("bad_ttl", f"ttl_s must be above 0 and at most {self.settings.max_ttl_s:g}, got {ttl}")
        if precondition is not None:
            if self.preconditions is None:
                raise InvalidPayload("precondition_unavailable", "preconditions need the rules language")
            self.preconditions.check(precondition)
        return ttl

    async def get(self, command_id: str) -> Command:
        live = self._open.find(command_id)
        if live is not None:
            return _copy(live)
        found = await self.store.get(command_id)
        if found is None:
            raise NotFound(f"command '{command_id}' not found")
        return found

    async def query(self, query: CommandQuery) -> list[Command]:
        return await self.store.query(query)

    async def wait(self, command_id: str, timeout_s: float) -> Command:
        """The command once it reaches a terminal state, or as it is when `timeout_s` ends."""
        command = await self.get(command_id)
        if not command.open or timeout_s <= 0:
            return command
        waiter: asyncio.Future[Command] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(command_id, []).append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            return await self.get(command_id)
        finally:
            waiters = self._waiters.get(command_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[command_id]

    async def cancel(self, vehicle_id: str, command_id: str, *, by: str = "anonymous") -> Command:
        async with self._lock:
            command = self._open.get(vehicle_id, command_id)
            if command is None:
                stored = await self.store.get(command_id)
                if stored is None or stored.vehicle_id != vehicle_id:
                    raise NotFound(f"command '{command_id}' of vehicle '{vehicle_id}' not found")
                raise CommandClosed(
                    f"command '{command_id}' is {stored.state.value}; only a waiting one can be cancelled"
                )
            work = _Work()
            command.move(CommandState.CANCELLED, self.clock(), f"cancelled by {by}")
            work.changed(command)
            await self._finish(work)
            return _copy(command)

    # -- fleet jobs --------------------------------------------------------------------

    async def create_job(
        self,
        selector: Selector,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        rate: float,
        ttl_s: float | None = None,
        precondition: str | None = None,
        requested_by: str = "anonymous",
        source: str | None = None,
    ) -> Job:
        args = args or {}
        ttl = self._check_request(name, args, ttl_s, precondition)
        if not 0 < rate <= self.settings.max_job_rate:
            raise InvalidPayload(
                "bad_rate", f"rate must be above 0 and at most {self.settings.max_job_rate:g} vehicles/s, got {rate}"
            )
        now = self.clock()
        targets = await resolve_targets(selector, self.twins, self.preconditions, now, self.settings.max_job_vehicles)
        job = Job(
            id=new_id(now),
            name=name,
            selector=selector,
            rate=rate,
            ttl_s=ttl,
            state=JobState.RUNNING,
            created_at=now,
            updated_at=now,
            targets=targets,
            args=args,
            precondition=precondition,
            requested_by=requested_by,
            source=source,
        )
        job.move(JobState.RUNNING, now)
        async with self._lock:
            await self._commit(jobs=[job])
            self._jobs[job.id] = job
            self._buckets[job.id] = RateLimit(rate)
        self._wake.set()
        return _copy(job)

    async def job(self, job_id: str, *, outcomes: bool = True) -> JobReport:
        live = self._jobs.get(job_id)
        # A copy, read before the commands: a job seen completed has all its commands stored finished,
        # whereas the live job may complete while the commands are being read.
        job = _copy(live) if live is not None else await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"job '{job_id}' not found")
        if not outcomes:
            return report(job, await self.store.count_states(job_id))
        commands = await self.store.query(CommandQuery(job_id=job_id, limit=max(1, len(job.targets))))
        return report(job, Counter(c.state for c in commands), commands)

    async def jobs(self, *, limit: int = 100, before: str | None = None) -> list[JobReport]:
        return [await self.job(j.id, outcomes=False) for j in await self.store.jobs(limit=limit, before=before)]

    async def pause_job(self, job_id: str, *, by: str = "anonymous") -> JobReport:
        await self._job_change(job_id, JobState.PAUSED, from_states=(JobState.RUNNING,), by=by)
        return await self.job(job_id, outcomes=False)

    async def resume_job(self, job_id: str, *, by: str = "anonymous") -> JobReport:
        await self._job_change(job_id, JobState.RUNNING, from_states=(JobState.PAUSED,), by=by)
        self._wake.set()
        return await self.job(job_id, outcomes=False)

    async def cancel_job(self, job_id: str, *, by: str = "anonymous") -> JobReport:
        await self._job_change(job_id, JobState.CANCELLED, from_states=(JobState.RUNNING, JobState.PAUSED), by=by)
        return await self.job(job_id, outcomes=False)

    async def _job_change(
        self, job_id: str, state: JobState, *, from_states: tuple[JobState, ...], by: str = "anonymous"
    ) -> None:
        async with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                stored = await self.store.get_job(job_id)
                if stored is None:
                    raise NotFound(f"job '{job_id}' not found")
                raise CommandClosed(f"job '{job_id}' is {stored.state.value}")
            if job.state not in from_states:
                raise CommandClosed(
                    f"job '{job_id}' is {job.state.value}, not {' or '.join(s.value for s in from_states)}"
                )
            now = self.clock()
            work = _Work()
            verb = "resumed" if state is JobState.RUNNING else state.value
            job.move(state, now, f"{verb} by {by}")
            work.jobs[job.id] = job
            if state is JobState.RUNNING:
                self._buckets.setdefault(job_id, RateLimit(job.rate))
            if state is JobState.CANCELLED:
                for command in self._open.of_job(job_id):
                    command.move(CommandState.CANCELLED, now, "job cancelled")
                    work.changed(command)
                del self._jobs[job_id]
            await self._finish(work)

    # -- the service's task ------------------------------------------------------------

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
        work = _Work()
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
        self._dispatch_jobs(now, work)
        await self._finish(work)

    async def _deliver(self, vehicle_id: str, *, resend: bool, now: float, work: _Work) -> None:
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

    def _expire(self, command: Command, now: float, work: _Work) -> None:
        detail = "ttl ended before the vehicle answered" if command.attempts else "ttl ended while queued"
        command.move(CommandState.EXPIRED, now, detail)
        work.changed(command)

    async def _precondition_holds(self, command: Command, now: float) -> bool:
        state = await self.twins.state(command.vehicle_id)
        if state is None or self.preconditions is None or command.precondition is None:
            return False
        return self.preconditions.holds(command.precondition, state, now)

    async def _result(self, item: Inbound, now: float, work: _Work) -> None:
        command_id = item.subtopic
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

    def _refuse(self, item: Inbound, reason: str, detail: str, work: _Work) -> None:
        log.warning("command result refused", vehicle_id=item.vehicle_id, command_id=item.subtopic, reason=reason)
        topic = f"commands/{item.subtopic}/result"
        work.errors.append(
            (item.vehicle_id, reason, _encode(ErrorMessage(reason, detail, topic, isoformat(self.clock()))))
        )
        if item.ack is not None:
            # MQTT 3.1.1 has no negative PUBACK: a refused message is acknowledged and dropped.
            work.acks.append(item.ack)

    def _dispatch_jobs(self, now: float, work: _Work) -> None:
        for job in list(self._jobs.values()):
            if job.state is JobState.RUNNING and job.dispatched < len(job.targets):
                limit = self._buckets[job.id]
                count = min(limit.take(now), len(job.targets) - job.dispatched)
                limit.sent(now, count)
                for vehicle_id in job.targets[job.dispatched : job.dispatched + count]:
                    command = _new_command(vehicle_id, job.name, job.args, now, job.ttl_s, job.precondition)
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
            if job.dispatched >= len(job.targets) and self._open.waiting_for_job(job.id) == 0:
                job.move(JobState.COMPLETED, now)
                work.jobs[job.id] = job
                del self._jobs[job.id]
                self._buckets.pop(job.id, None)

    # -- commit, then act ----------------------------------------------------------------

    async def _finish(self, work: _Work) -> None:
        if work:
            await self._commit(work.commands.values(), work.jobs.values())
        for command in work.commands.values():
            if not command.open:
                self._forget(command)
        for ack in work.acks:
            if not ack.done():
                ack.set_result(None)
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

    def _count(self, work: _Work) -> None:
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

    async def _commit(self, commands: Iterable[Command] = (), jobs: Iterable[Job] = ()) -> None:
        commands, jobs = list(commands), list(jobs)
        delay = 0.05
        while True:
            try:
                await self.store.write(commands, jobs)
                return
            # A failed write is retried, never dropped: nothing takes effect before it lands.
            except Exception as exc:
                log.error("commands store write failed, retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish(self, command: Command) -> None:
        if self.publisher is None:
            return
        payload = msgspec.to_builtins(view(command))
        payload["event"] = command.state.value
        try:
            await self.publisher.publish(f"{EVENT_PREFIX}/{command.vehicle_id}/{command.id}", _encode(payload), qos=1)
        # Events are for integrations; a failed publish must not undo a stored change.
        except Exception as exc:
            log.warning("command event not published", command_id=command.id, error=str(exc))
            return
        self.events_published += 1

    def _remember(self, command: Command) -> None:
        self._open.add(command)

    def _forget(self, command: Command) -> None:
        if self._open.remove(command) and command.job_id is not None and not self._open.waiting_for_job(command.job_id):
            # The job may be complete now.
            self._wake.set()

    def _current(self, command: Command) -> Command:
        live = self._open.get(command.vehicle_id, command.id)
        return _copy(live) if live is not None else command

    @property
    def online_vehicles(self) -> set[str]:
        return set(self._open.online)


def _new_command(
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


def _copy(item: _T) -> _T:
    return msgspec.json.decode(_encode(item), type=type(item))

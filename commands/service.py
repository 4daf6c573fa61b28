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
from collections import Counter
from types import TracebackType
from typing import Any, Self

import msgspec
import structlog

from commands.engine import CommandEngine, Work, copy_of, new_command
from commands.jobs import JobReport, RateLimit, report, resolve_targets
from commands.model import (
    IDEMPOTENCY_KEY_PATTERN,
    NAME_PATTERN,
    Command,
    CommandState,
    Job,
    JobSelector,
    JobState,
    new_id,
)
from commands.stores.protocol import CommandQuery
from kernel import FleethubError, InvalidPayload, LimitExceeded, NotFound
from security import Actor, audit_entry
from twin import check_patch

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode


class CommandClosed(FleethubError):
    """The command (or job) is no longer in a state that allows this."""


class CommandService(CommandEngine):
    """Commands and fleet jobs: what the API and the hub call."""

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
        actor: Actor | None = None,
    ) -> tuple[Command, bool]:
        """Queue a command; returns it and whether it is new (False: an idempotent repeat).

        With an `actor`, a new command is audited (`command.send`) in the transaction that stores it.
        """
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
            twin = await self.twins.state(vehicle_id)
            if twin is None:
                raise NotFound(f"vehicle '{vehicle_id}' not found")
            if len(self._open.of_vehicle(vehicle_id)) >= self.settings.max_open_per_vehicle:
                raise LimitExceeded(
                    "too_many_commands",
                    f"vehicle '{vehicle_id}' already has {self.settings.max_open_per_vehicle} commands waiting "
                    "(commands.max_open_per_vehicle); cancel some or wait",
                )
            now = self.clock()
            command = new_command(vehicle_id, name, args, now, ttl, precondition)
            command.idempotency_key = idempotency_key
            command.requested_by = requested_by
            command.source = source
            work = Work()
            work.changed(command)
            if actor is not None:
                detail = {"name": name, "args": args, "precondition": precondition}
                work.audit.append(
                    audit_entry(
                        actor,
                        "command.send",
                        now,
                        vehicle_id=vehicle_id,
                        fleet=twin.fleet,
                        target=command.id,
                        detail=detail,
                    )
                )
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
            return copy_of(live)
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
        if not self._mine(command.vehicle_id):
            return await self._poll(command_id, timeout_s)
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

    async def _poll(self, command_id: str, timeout_s: float) -> Command:
        """Wait for a command another hub worker holds (cluster/): its answer lands in the database there."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            await asyncio.sleep(max(0.0, min(self.settings.wait_poll_s, left)))
            command = await self.get(command_id)
            if not command.open or left <= self.settings.wait_poll_s:
                return command

    async def cancel(
        self, vehicle_id: str, command_id: str, *, by: str = "anonymous", actor: Actor | None = None
    ) -> Command:
        async with self._lock:
            command = self._open.get(vehicle_id, command_id)
            if command is None:
                stored = await self.store.get(command_id)
                if stored is None or stored.vehicle_id != vehicle_id:
                    raise NotFound(f"command '{command_id}' of vehicle '{vehicle_id}' not found")
                if stored.open and not self._mine(vehicle_id):
                    return await self._cancel_elsewhere(stored, by, actor)
                raise CommandClosed(
                    f"command '{command_id}' is {stored.state.value}; only a waiting one can be cancelled"
                )
            work = Work()
            now = self.clock()
            command.move(CommandState.CANCELLED, now, f"cancelled by {by}")
            work.changed(command)
            if actor is not None:
                twin = await self.twins.state(vehicle_id)
                fleet = twin.fleet if twin is not None else None
                entry = audit_entry(actor, "command.cancel", now, vehicle_id=vehicle_id, fleet=fleet, target=command_id)
                work.audit.append(entry)
            await self._finish(work)
            return copy_of(command)

    async def _cancel_elsewhere(self, command: Command, by: str, actor: Actor | None) -> Command:
        """Cancel a command another hub worker holds (it owns the vehicle; cluster/).

        Written over the row only while it is still in the state read, and a closed command
        is never written over (commands/stores/sql.py); the owner hears of the change and
        drops it. A queued command its owner sends at that moment reaches the vehicle and is
        recorded cancelled, as when a sent command is cancelled in one hub.
        """
        entry = None
        if actor is not None:
            twin = await self.twins.state(command.vehicle_id)
            fleet = twin.fleet if twin is not None else None
            entry = audit_entry(
                actor, "command.cancel", self.clock(), vehicle_id=command.vehicle_id, fleet=fleet, target=command.id
            )
        current: Command | None = command
        # A few tries: the owner may send it (queued -> sent) between our read and our write.
        for _ in range(3):
            if current is None or not current.open:
                break
            was = current.state
            current.move(CommandState.CANCELLED, self.clock(), f"cancelled by {by}")
            if await self.store.change(current, was, audit=entry):
                await self._publish(current)
                return copy_of(current)
            current = await self.store.get(command.id)
        state = current.state.value if current is not None else "gone"
        raise CommandClosed(f"command '{command.id}' is {state}; only a waiting one can be cancelled")

    # -- fleet jobs --------------------------------------------------------------------

    async def create_job(
        self,
        selector: JobSelector,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        rate: float,
        ttl_s: float | None = None,
        precondition: str | None = None,
        requested_by: str = "anonymous",
        source: str | None = None,
        actor: Actor | None = None,
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
        entries = []
        if actor is not None:
            detail = {"name": name, "args": args, "selector": msgspec.to_builtins(selector), "rate": rate}
            entries.append(audit_entry(actor, "job.create", now, fleet=selector.fleet, target=job.id, detail=detail))
        async with self._lock:
            await self._commit(jobs=[job], audit=entries)
            if self.dispatches_jobs:
                # Elsewhere in a cluster the dispatching worker takes it up from the store.
                self._jobs[job.id] = job
                self._buckets[job.id] = RateLimit(rate)
        self._wake.set()
        return copy_of(job)

    async def job(self, job_id: str, *, outcomes: bool = True) -> JobReport:
        # A worker that does not dispatch jobs (a cluster) may hold a stale copy: the store has the truth.
        live = self._jobs.get(job_id) if self.dispatches_jobs else None
        # A copy, read before the commands: a job seen completed has all its commands stored finished,
        # whereas the live job may complete while the commands are being read.
        job = copy_of(live) if live is not None else await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"job '{job_id}' not found")
        if not outcomes:
            return report(job, await self.store.count_states(job_id))
        commands = await self.store.query(CommandQuery(job_id=job_id, limit=max(1, len(job.targets))))
        return report(job, Counter(c.state for c in commands), commands)

    async def jobs(self, *, limit: int = 100, before: str | None = None) -> list[JobReport]:
        return [await self.job(j.id, outcomes=False) for j in await self.store.jobs(limit=limit, before=before)]

    async def pause_job(self, job_id: str, *, by: str = "anonymous", actor: Actor | None = None) -> JobReport:
        await self._job_change(job_id, JobState.PAUSED, from_states=(JobState.RUNNING,), by=by, actor=actor)
        return await self.job(job_id, outcomes=False)

    async def resume_job(self, job_id: str, *, by: str = "anonymous", actor: Actor | None = None) -> JobReport:
        await self._job_change(job_id, JobState.RUNNING, from_states=(JobState.PAUSED,), by=by, actor=actor)
        self._wake.set()
        return await self.job(job_id, outcomes=False)

    async def cancel_job(self, job_id: str, *, by: str = "anonymous", actor: Actor | None = None) -> JobReport:
        from_states = (JobState.RUNNING, JobState.PAUSED)
        await self._job_change(job_id, JobState.CANCELLED, from_states=from_states, by=by, actor=actor)
        return await self.job(job_id, outcomes=False)

    async def _job_change(
        self,
        job_id: str,
        state: JobState,
        *,
        from_states: tuple[JobState, ...],
        by: str = "anonymous",
        actor: Actor | None = None,
    ) -> None:
        async with self._lock:
            # In a cluster only the dispatching worker's copy is live; elsewhere the store has the job.
            job = self._jobs.get(job_id) if self.dispatches_jobs else await self.store.get_job(job_id)
            if job is None or job.state not in (JobState.RUNNING, JobState.PAUSED):
                stored = job or await self.store.get_job(job_id)
                if stored is None:
                    raise NotFound(f"job '{job_id}' not found")
                raise CommandClosed(f"job '{job_id}' is {stored.state.value}")
            if job.state not in from_states:
                raise CommandClosed(
                    f"job '{job_id}' is {job.state.value}, not {' or '.join(s.value for s in from_states)}"
                )
            now = self.clock()
            work = Work()
            verb = "resumed" if state is JobState.RUNNING else state.value
            job.move(state, now, f"{verb} by {by}")
            work.jobs[job.id] = job
            if actor is not None:
                action = {JobState.PAUSED: "job.pause", JobState.RUNNING: "job.resume"}.get(state, "job.cancel")
                work.audit.append(audit_entry(actor, action, now, fleet=job.selector.fleet, target=job_id))
            if state is JobState.RUNNING:
                self._buckets.setdefault(job_id, RateLimit(job.rate))
            if state is JobState.CANCELLED:
                for command in self._open.of_job(job_id):
                    command.move(CommandState.CANCELLED, now, "job cancelled")
                    work.changed(command)
                if self.owns is not None:
                    # Other workers hold the rest; they drop them when NOTIFY tells them of the change.
                    for command in await self.store.query(CommandQuery(job_id=job_id, limit=max(1, len(job.targets)))):
                        if command.open and command.id not in work.commands and not self._mine(command.vehicle_id):
                            command.move(CommandState.CANCELLED, now, "job cancelled")
                            work.changed(command)
                self._jobs.pop(job_id, None)
            await self._finish(work)

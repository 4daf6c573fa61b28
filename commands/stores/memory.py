"""The commands store in memory: for unit tests and hubs that keep nothing."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from commands.model import Command, CommandState, Job, JobState
from commands.stores.protocol import CommandQuery
from kernel import StoreError, VehicleSet
from security import AuditEntry


class MemoryCommandStore:
    """Keeps copies, so callers cannot change what is 'stored' by mutating their objects."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._jobs: dict[str, Job] = {}
        self.audit: list[AuditEntry] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def write(
        self, commands: Sequence[Command] = (), jobs: Sequence[Job] = (), audit: Sequence[AuditEntry] = ()
    ) -> None:
        # Checked before anything changes, so a refused entry leaves the write unmade, as in a transaction.
        if any(a.id == e.id for a in audit for e in self.audit):
            raise StoreError("audit entry already exists")
        self.audit.extend(audit)
        for command in commands:
            self._commands[command.id] = copy.deepcopy(command)
        for job in jobs:
            self._jobs[job.id] = copy.deepcopy(job)

    async def change(self, command: Command, expected: CommandState, *, audit: AuditEntry | None = None) -> bool:
        stored = self._commands.get(command.id)
        if stored is None or stored.state is not expected:
            return False
        if audit is not None:
            self.audit.append(audit)
        self._commands[command.id] = copy.deepcopy(command)
        return True

    async def get(self, command_id: str) -> Command | None:
        found = self._commands.get(command_id)
        return copy.deepcopy(found) if found is not None else None

    async def by_key(self, vehicle_id: str, idempotency_key: str) -> Command | None:
        for command in self._commands.values():
            if command.vehicle_id == vehicle_id and command.idempotency_key == idempotency_key:
                return copy.deepcopy(command)
        return None

    async def query(self, query: CommandQuery) -> list[Command]:
        ordered = sorted(self._commands.values(), key=lambda c: (c.created_at, c.id), reverse=True)
        out: list[Command] = []
        anchor = self._commands.get(query.before) if query.before is not None else None
        for command in ordered:
            if anchor is not None and (command.created_at, command.id) >= (anchor.created_at, anchor.id):
                continue
            if query.vehicle_id is not None and command.vehicle_id != query.vehicle_id:
                continue
            if query.job_id is not None and command.job_id != query.job_id:
                continue
            if query.states and command.state not in query.states:
                continue
            if query.name is not None and command.name != query.name:
                continue
            if query.since is not None and command.created_at < query.since:
                continue
            if query.until is not None and command.created_at >= query.until:
                continue
            out.append(copy.deepcopy(command))
            if len(out) >= query.limit:
                break
        return out

    async def open_commands(self, vehicles: VehicleSet | None = None) -> list[Command]:
        found = [c for c in self._commands.values() if c.open and (vehicles is None or vehicles(c.vehicle_id))]
        return [copy.deepcopy(c) for c in sorted(found, key=lambda c: (c.created_at, c.id))]

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        return dict(Counter(c.state for c in self._commands.values() if c.job_id == job_id))

    async def get_job(self, job_id: str) -> Job | None:
        found = self._jobs.get(job_id)
        return copy.deepcopy(found) if found is not None else None

    async def jobs(self, *, limit: int = 100, before: str | None = None) -> list[Job]:
        ordered = sorted(self._jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)
        anchor = self._jobs.get(before) if before is not None else None
        if anchor is not None:
            ordered = [j for j in ordered if (j.created_at, j.id) < (anchor.created_at, anchor.id)]
        return [copy.deepcopy(j) for j in ordered[:limit]]

    async def open_jobs(self) -> list[Job]:
        found = [j for j in self._jobs.values() if j.state in (JobState.RUNNING, JobState.PAUSED)]
        return [copy.deepcopy(j) for j in sorted(found, key=lambda j: (j.created_at, j.id))]

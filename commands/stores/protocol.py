"""The commands store seam: what the command service needs from a database.

Commands and jobs are stored whole (one document each) beside the few columns queries
filter on; `write` upserts both kinds in one transaction, so a job's progress and the
commands it created land together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

import msgspec

from commands.model import Command, CommandState, Job
from kernel import VehicleSet
from security import AuditEntry


class CommandQuery(msgspec.Struct, frozen=True):
    """Commands newest first; `before` is the id of the last command of the previous page."""

    vehicle_id: str | None = None
    job_id: str | None = None
    states: tuple[CommandState, ...] = ()
    name: str | None = None
    since: float | None = None
    until: float | None = None
    before: str | None = None
    limit: int = 100


class CommandStore(Protocol):
    """A durable home for commands and jobs; every implementation passes the contract suite."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def write(
        self, commands: Sequence[Command] = (), jobs: Sequence[Job] = (), audit: Sequence[AuditEntry] = ()
    ) -> None:
        """Insert or replace commands and jobs, and insert the audit entries recording them, in one transaction."""
        ...

    async def change(self, command: Command, expected: CommandState, *, audit: AuditEntry | None = None) -> bool:
        """Store `command` over its row only while that row is in state `expected` (with `audit`, atomically).

        False when the row moved on: someone changed it first, nothing was written. How a
        node that does not hold the vehicle's commands (another worker owns it) cancels one.
        """
        ...

    async def get(self, command_id: str) -> Command | None: ...

    async def by_key(self, vehicle_id: str, idempotency_key: str) -> Command | None:
        """The command created with this idempotency key for this vehicle, if any."""
        ...

    async def query(self, query: CommandQuery) -> list[Command]: ...

    async def open_commands(self, vehicles: VehicleSet | None = None) -> list[Command]:
        """Every queued or sent command, oldest first: what a starting hub must deliver.

        `vehicles`: only those of these partitions (a hub worker taking them over).
        """
        ...

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        """How many of a job's commands are in each state (states with none are left out)."""
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def jobs(self, *, limit: int = 100, before: str | None = None) -> list[Job]:
        """Jobs newest first."""
        ...

    async def open_jobs(self) -> list[Job]:
        """Running and paused jobs, oldest first."""
        ...

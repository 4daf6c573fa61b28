"""The commands store on SQLite: the hub's database file, through its one writer and its readers."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from commands.model import Command, CommandState, Job
from commands.stores.sql import COUNT_STATES, UPSERT_COMMAND, UPSERT_JOB, CommandReads, command_row, job_row
from kernel import SqliteDatabase, rollback
from security import AuditEntry, audit_insert


class SqliteCommandStore(CommandReads):
    """Commands and jobs in the hub's SQLite database (see `kernel.SqliteDatabase`)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _docs(self, sql: str, args: Sequence[Any] = ()) -> list[str]:
        return [row[0] for row in await self.db.fetch(sql, tuple(args))]

    async def write(
        self, commands: Sequence[Command] = (), jobs: Sequence[Job] = (), audit: Sequence[AuditEntry] = ()
    ) -> None:
        entries = [audit_insert(entry, "?") for entry in audit]
        await self.db.write(_write, [command_row(c) for c in commands], [job_row(j) for j in jobs], entries)

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        rows = await self.db.fetch(COUNT_STATES, (job_id,))
        return {CommandState(state): int(n) for state, n in rows}


def _write(
    conn: sqlite3.Connection,
    commands: list[tuple[Any, ...]],
    jobs: list[tuple[Any, ...]],
    audit: list[tuple[str, tuple[Any, ...]]],
) -> None:
    # The whole transaction is one call on the writer's thread, between other stores' calls.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if commands:
            conn.executemany(UPSERT_COMMAND, commands)
        if jobs:
            conn.executemany(UPSERT_JOB, jobs)
        for sql, args in audit:
            conn.execute(sql, args)
    except BaseException:
        rollback(conn)
        raise
    conn.execute("COMMIT")

"""The commands store on PostgreSQL: the hub's database, through its one connection pool."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import psycopg

from commands.model import Command, CommandState, Job
from commands.stores.sql import COUNT_STATES, UPSERT_COMMAND, UPSERT_JOB, CommandReads, command_row, job_row
from kernel import PostgresDatabase


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresCommandStore(CommandReads):
    """Commands and jobs in the hub's PostgreSQL database (see `kernel.PostgresDatabase`)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return self.db.connection()

    async def _docs(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        async with self._conn() as conn:
            cur = await conn.execute(_pg(sql), tuple(args))
            return [row[0] for row in await cur.fetchall()]

    async def write(self, commands: Sequence[Command] = (), jobs: Sequence[Job] = ()) -> None:
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            if commands:
                await cur.executemany(_pg(UPSERT_COMMAND), [command_row(c) for c in commands])
            if jobs:
                await cur.executemany(_pg(UPSERT_JOB), [job_row(j) for j in jobs])

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        async with self._conn() as conn:
            cur = await conn.execute(_pg(COUNT_STATES), (job_id,))
            return {CommandState(state): int(n) for state, n in await cur.fetchall()}

"""The commands store on SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import aiosqlite

from commands.model import Command, CommandState, Job
from commands.stores.sql import COUNT_STATES, UPSERT_COMMAND, UPSERT_JOB, CommandReads, command_row, job_row
from kernel import StoreError
from twin.stores.sqlite import open_beside, sqlite_path


class SqliteCommandStore(CommandReads):
    def __init__(self, url: str, *, synchronous: str = "NORMAL") -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._synchronous = synchronous
        self._conn: aiosqlite.Connection | None = None

    async def __aenter__(self) -> Self:
        self._conn = await open_beside(self.path, synchronous=self._synchronous, store="commands", table="commands")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def _c(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("the SQLite commands store is not open")
        return self._conn

    async def _docs(self, sql: str, args: Sequence[Any] = ()) -> list[str]:
        async with self._c.execute(sql, tuple(args)) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def write(self, commands: Sequence[Command] = (), jobs: Sequence[Job] = ()) -> None:
        conn = self._c
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if commands:
                await conn.executemany(UPSERT_COMMAND, [command_row(c) for c in commands])
            if jobs:
                await conn.executemany(UPSERT_JOB, [job_row(j) for j in jobs])
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        async with self._c.execute(COUNT_STATES, (job_id,)) as cur:
            return {CommandState(state): int(n) for state, n in await cur.fetchall()}

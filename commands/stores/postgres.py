"""The commands store on PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commands.model import Command, CommandState, Job
from commands.stores.sql import COUNT_STATES, UPSERT_COMMAND, UPSERT_JOB, CommandReads, command_row, job_row
from kernel import StoreError
from twin.stores.postgres import pool_connection


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresCommandStore(CommandReads):
    def __init__(self, url: str, *, pool_max_size: int = 4) -> None:
        self.url = url
        self._pool_max_size = pool_max_size
        self._pool: AsyncConnectionPool | None = None

    async def __aenter__(self) -> Self:
        pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_max_size,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="fleethub-commands",
        )
        try:
            await pool.open(wait=True, timeout=30)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(f"cannot open PostgreSQL for the commands store: {exc}") from None
        self._pool = pool
        try:
            found = await self._docs("SELECT to_regclass('commands')::text")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        if not found or found[0] is None:
            await self.__aexit__(None, None, None)
            raise StoreError("the database has no commands table; run `fleethub migrate`")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return pool_connection(self._pool, "the PostgreSQL commands store")

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

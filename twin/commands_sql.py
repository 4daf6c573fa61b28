"""The commands store on SQLite and on PostgreSQL: the same tables, the same queries.

Each store has its own connection(s) to the hub's database; the tables come from
migration 0020, which the twin store applies when it opens the database. The two
differ only in placeholders and in how a transaction is opened.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import aiosqlite
import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from kernel import StoreError
from twin.commands import Command, CommandState, Job, JobState
from twin.commands_store import CommandQuery
from twin.postgres_store import pool_connection
from twin.sqlite_store import open_beside, sqlite_path

_encode = msgspec.json.Encoder().encode
_decode_command = msgspec.json.Decoder(Command).decode
_decode_job = msgspec.json.Decoder(Job).decode

_UPSERT_COMMAND = """
INSERT INTO commands (id, vehicle_id, name, state, job_id, idempotency_key, created_at, doc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc
"""
_UPSERT_JOB = """
INSERT INTO command_jobs (id, state, created_at, doc) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc
"""
_OPEN_COMMANDS = "SELECT doc FROM commands WHERE state IN ('queued', 'sent') ORDER BY created_at, id"
_COUNT_STATES = "SELECT state, count(*) FROM commands WHERE job_id = ? GROUP BY state"
_OPEN_JOBS = "SELECT doc FROM command_jobs WHERE state IN (?, ?) ORDER BY created_at, id"


def _command_row(c: Command) -> tuple[Any, ...]:
    return (c.id, c.vehicle_id, c.name, c.state.value, c.job_id, c.idempotency_key, c.created_at, _encode(c).decode())


def _job_row(j: Job) -> tuple[Any, ...]:
    return (j.id, j.state.value, j.created_at, _encode(j).decode())


def _where(query: CommandQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if query.vehicle_id is not None:
        clauses.append("vehicle_id = ?")
        args.append(query.vehicle_id)
    if query.job_id is not None:
        clauses.append("job_id = ?")
        args.append(query.job_id)
    if query.states:
        clauses.append(f"state IN ({', '.join('?' for _ in query.states)})")
        args.extend(s.value for s in query.states)
    if query.name is not None:
        clauses.append("name = ?")
        args.append(query.name)
    if query.since is not None:
        clauses.append("created_at >= ?")
        args.append(query.since)
    if query.until is not None:
        clauses.append("created_at < ?")
        args.append(query.until)
    if query.before is not None:
        # Keyset paging: strictly older than the anchor command, ties broken by id.
        clauses.append(
            "(created_at < (SELECT created_at FROM commands WHERE id = ?) OR "
            "(created_at = (SELECT created_at FROM commands WHERE id = ?) AND id < ?))"
        )
        args.extend([query.before, query.before, query.before])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _query_sql(query: CommandQuery) -> tuple[str, list[Any]]:
    where, args = _where(query)
    return f"SELECT doc FROM commands{where} ORDER BY created_at DESC, id DESC LIMIT ?", [*args, query.limit]


def _jobs_sql(limit: int, before: str | None) -> tuple[str, list[Any]]:
    if before is None:
        return "SELECT doc FROM command_jobs ORDER BY created_at DESC, id DESC LIMIT ?", [limit]
    sql = (
        "SELECT doc FROM command_jobs WHERE created_at < (SELECT created_at FROM command_jobs WHERE id = ?) OR "
        "(created_at = (SELECT created_at FROM command_jobs WHERE id = ?) AND id < ?) "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    return sql, [before, before, before, limit]


class _CommandReads(abc.ABC):
    """The reads both stores share: the SQL is the same, only `_docs` (rows of `doc`) differs."""

    @abc.abstractmethod
    async def _docs(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    async def get(self, command_id: str) -> Command | None:
        docs = await self._docs("SELECT doc FROM commands WHERE id = ?", (command_id,))
        return _decode_command(docs[0]) if docs else None

    async def by_key(self, vehicle_id: str, idempotency_key: str) -> Command | None:
        docs = await self._docs(
            "SELECT doc FROM commands WHERE vehicle_id = ? AND idempotency_key = ?", (vehicle_id, idempotency_key)
        )
        return _decode_command(docs[0]) if docs else None

    async def query(self, query: CommandQuery) -> list[Command]:
        sql, args = _query_sql(query)
        return [_decode_command(d) for d in await self._docs(sql, args)]

    async def open_commands(self) -> list[Command]:
        return [_decode_command(d) for d in await self._docs(_OPEN_COMMANDS)]

    async def get_job(self, job_id: str) -> Job | None:
        docs = await self._docs("SELECT doc FROM command_jobs WHERE id = ?", (job_id,))
        return _decode_job(docs[0]) if docs else None

    async def jobs(self, *, limit: int = 100, before: str | None = None) -> list[Job]:
        sql, args = _jobs_sql(limit, before)
        return [_decode_job(d) for d in await self._docs(sql, args)]

    async def open_jobs(self) -> list[Job]:
        docs = await self._docs(_OPEN_JOBS, (JobState.RUNNING.value, JobState.PAUSED.value))
        return [_decode_job(d) for d in docs]


class SqliteCommandStore(_CommandReads):
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
                await conn.executemany(_UPSERT_COMMAND, [_command_row(c) for c in commands])
            if jobs:
                await conn.executemany(_UPSERT_JOB, [_job_row(j) for j in jobs])
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        async with self._c.execute(_COUNT_STATES, (job_id,)) as cur:
            return {CommandState(state): int(n) for state, n in await cur.fetchall()}


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresCommandStore(_CommandReads):
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
                await cur.executemany(_pg(_UPSERT_COMMAND), [_command_row(c) for c in commands])
            if jobs:
                await cur.executemany(_pg(_UPSERT_JOB), [_job_row(j) for j in jobs])

    async def count_states(self, job_id: str) -> dict[CommandState, int]:
        async with self._conn() as conn:
            cur = await conn.execute(_pg(_COUNT_STATES), (job_id,))
            return {CommandState(state): int(n) for state, n in await cur.fetchall()}

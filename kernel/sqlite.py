"""SQLite for the whole process: one file in WAL mode, one writer connection, a few readers.

Every store (twins, rules, commands, security) writes through `write`: calls run one
after another on the writer connection's thread, so their transactions never wait for
each other in SQLite's busy handler, which sleeps in steps of up to 100 ms (an alert
write behind an ingest commit took 143 ms at p99 when each store had its own writer).

Every sqlite3 error raised through `write`, `read` and `reading` leaves as one of
kernel's store errors (`kernel.sqlite_errors`): the one place SQLite's errors are mapped.

Reads go to a few read connections, so they never queue behind a write batch. A read
done in one call (`read`, `fetch`) goes to the least busy of them. A query read in
steps (`reading`) has a connection to itself until it ends: while its statement is
open, that connection sees the database as it was when the statement began, and a
read of another caller there would miss writes already committed. Such queries get
all read connections but one, so one-call reads (the ingest consumer's twin loads,
token checks) never wait for them. An in-memory database is private to its
connection: there, one connection does everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite

from kernel.errors import StoreError
from kernel.info import DatabaseInfo
from kernel.migrate import load_migrations, split_statements
from kernel.sqlite_errors import MAPPED, store_error

T = TypeVar("T")

MEMORY = ":memory:"


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/or/absolute.db` (or `sqlite://:memory:`) to a filesystem path."""
    if not url.startswith("sqlite://"):
        raise StoreError(f"not a SQLite URL: {url!r}; expected sqlite:///path/to.db")
    path = url.removeprefix("sqlite://")
    if path in {MEMORY, "/:memory:"}:
        return MEMORY
    # As in SQLAlchemy: three slashes start a relative path, four an absolute one.
    return path[1:] if path.startswith("/") else path


async def in_connection_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(sqlite3_connection, *args)` on the aiosqlite connection's own thread.

    aiosqlite has no public way to run several statements in one hop; `_execute` is the
    method all of its public calls go through (aiosqlite 0.20-0.22).
    """

    def call() -> T:
        return fn(conn._conn, *args)

    result: T = await conn._execute(call)  # type: ignore[no-untyped-call]  # aiosqlite leaves it unannotated
    return result


def rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction, if SQLite has not already: on SQLITE_FULL (and some I/O
    errors) it rolls back by itself, and a second ROLLBACK would hide the real error."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def fetch_all(conn: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> list[Any]:
    """Every row of a query, on a plain sqlite3 connection (run it in the connection's thread)."""
    return conn.execute(sql, args).fetchall()


class SqliteDatabase:
    """The process's SQLite database; an async context manager that migrates it on entry."""

    backend = "sqlite"

    def __init__(self, url: str, *, synchronous: str = "NORMAL", readers: int = 3) -> None:
        if readers < 1:
            raise ValueError("a SQLite database needs at least one read connection")
        self.url = url
        self.path = sqlite_path(url)
        self.synchronous = synchronous
        self.schema_version = 0
        self.read_connections = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        # One-call reads queued on each read connection, and the connections lent to one caller.
        self._queued: dict[aiosqlite.Connection, int] = {}
        self._lent: set[aiosqlite.Connection] = set()
        self._returned = asyncio.Condition()
        self._lendable = asyncio.Semaphore(max(1, readers - 1))

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY

    async def __aenter__(self) -> Self:
        # Made here, not in __init__: asyncio primitives belong to the loop that uses them.
        self._returned = asyncio.Condition()
        self._lendable = asyncio.Semaphore(max(1, self.read_connections - 1))
        if not self.in_memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect()
            await self._migrate(self._writer)
            if not self.in_memory:
                for _ in range(self.read_connections):
                    reader = await self._connect()
                    self._readers.append(reader)
                    self._queued[reader] = 0
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        readers, self._readers = self._readers, []
        self._queued.clear()
        self._lent.clear()
        async with self._returned:
            # Readers waiting for a connection find the database closed.
            self._returned.notify_all()
        writer, self._writer = self._writer, None
        for conn in readers:
            await conn.close()
        if writer is not None:
            await writer.close()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(f"PRAGMA synchronous={self.synchronous}")
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        async with conn.execute("SELECT version FROM schema_version") as cur:
            applied = {int(r[0]) for r in await cur.fetchall()}
        current = max(applied, default=0)
        for migration in load_migrations("sqlite"):
            # Every missing number runs, not only those above the highest: parts of the hub
            # own number ranges, so a lower number can land after a higher one.
            if migration.version in applied:
                continue
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in split_statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            current = max(current, migration.version)
        self.schema_version = current

    @property
    def _w(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StoreError("the SQLite database is not open")
        return self._writer

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(sqlite3_connection, *args)` as one call on the writer connection's thread.

        `fn` must finish any transaction it opens: the next call may be another store's.
        """
        try:
            return await in_connection_thread(self._w, fn, *args)
        except MAPPED as exc:
            raise store_error(exc) from exc

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(sqlite3_connection, *args)` as one call on the least busy read connection's thread."""
        if self.in_memory:
            return await self.write(fn, *args)
        conn = await self._least_busy()
        self._queued[conn] += 1
        try:
            return await in_connection_thread(conn, fn, *args)
        except MAPPED as exc:
            raise store_error(exc) from exc
        finally:
            if conn in self._queued:
                self._queued[conn] -= 1

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row of a read query."""
        return await self.read(fetch_all, sql, args)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read connection for this caller alone until the block ends, for a query read in steps."""
        if self.in_memory:
            try:
                yield self._w
            except MAPPED as exc:
                raise store_error(exc) from exc
            return
        async with self._lendable:
            conn = await self._least_busy()
            # One-call reads queued on it before now run first (a connection's calls run in
            # order); none are queued on it after, until it is returned.
            self._lent.add(conn)
            try:
                yield conn
            except MAPPED as exc:
                raise store_error(exc) from exc
            finally:
                self._lent.discard(conn)
                async with self._returned:
                    self._returned.notify_all()

    async def _least_busy(self) -> aiosqlite.Connection:
        async with self._returned:
            while True:
                if not self._readers:
                    raise StoreError("the SQLite database is not open")
                free = [c for c in self._readers if c not in self._lent]
                if free:
                    return min(free, key=self._queued.__getitem__)
                # Only with one read connection, lent out: wait for it.
                await self._returned.wait()

    async def info(self) -> DatabaseInfo:
        return DatabaseInfo(backend=self.backend, url=self.url, schema_version=self.schema_version, detail="WAL")

    def stopping(self) -> None:
        """The process is stopping (nothing to do: SQLite calls never wait for a server)."""

    async def ping(self) -> None:
        """Raise if the database cannot be read."""
        await self.fetch("SELECT 1")

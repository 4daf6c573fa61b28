"""PostgreSQL for the whole process: one migrated database, one connection pool.

Every store (twins, rules, commands, security) takes its connections from the one
pool through `connection`, which turns every psycopg error (a pool that is exhausted,
a server that is gone, a value refused) into one of kernel's store errors
(`kernel.postgres_errors`: the one place PostgreSQL's errors are mapped).
Migrations run once, before the pool opens, under an advisory
lock, so hub workers starting together take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from kernel.errors import StoreError, StoreUnavailable
from kernel.info import DatabaseInfo
from kernel.migrate import TimeseriesMode, load_pg_migrations
from kernel.postgres_errors import MAPPED, store_error
from kernel.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

Timeseries = Literal["auto", "timescaledb", "native"]

# Set on every pooled connection.
_SESSION = "SET TIME ZONE 'UTC'; SET jit = off"
# One lock per schema: two hub workers starting together take turns migrating.
_SCHEMA_LOCK = "SELECT pg_advisory_lock(hashtext(current_schema() || ':fleethub:migrate'))"
_SCHEMA_UNLOCK = "SELECT pg_advisory_unlock(hashtext(current_schema() || ':fleethub:migrate'))"


def redact(url: str) -> str:
    """The URL without its password, for logs and the health endpoint."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.asynccontextmanager
async def schema_lock(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """Hold the lock migrations take, for other schema work every worker repeats at start-up."""
    await conn.execute(_SCHEMA_LOCK)
    try:
        yield
    finally:
        await conn.execute(_SCHEMA_UNLOCK)


class PostgresDatabase:
    """The process's PostgreSQL database; an async context manager that migrates it and opens the pool."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool_min_size: int = 2,
        pool_max_size: int = 10,
        timeseries: Timeseries = "auto",
        pool_timeout_s: float = 10.0,
        reconnect_max_s: float = 2.0,
    ) -> None:
        self.url = url
        self.pool_min_size = pool_min_size
        self.pool_max_size = pool_max_size
        self.timeseries = timeseries
        self.pool_timeout_s = pool_timeout_s
        self.reconnect_max_s = reconnect_max_s
        # How long a caller waits for a connection: the pool timeout, or a second once the process stops.
        self._wait_s = pool_timeout_s
        # Probes the server while it is gone and replaces the pool once it answers (see `_recover`).
        self._recovery: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self.mode = TimeseriesMode.NATIVE
        self.schema_version = 0
        self._detail = ""
        self._pool: AsyncConnectionPool | None = None
        # Per-connection set-up that stores ask for (temporary tables), done once per connection.
        self._prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[str]] = weakref.WeakKeyDictionary()
        # The session's fence (`fleethub.fence`): what a hub worker believes it owns, checked by
        # triggers on owner-only tables in the same transaction as the write (see `set_fence`).
        self._fence = ""
        self._fenced: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], str] = weakref.WeakKeyDictionary()

    async def __aenter__(self) -> Self:
        try:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                await self._migrate(conn)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot open PostgreSQL at {redact(self.url)}: {exc}") from None
        pool = self._new_pool()
        try:
            await pool.open(wait=True, timeout=30)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(f"cannot open a PostgreSQL connection pool at {redact(self.url)}: {exc}") from None
        self._pool = pool
        return self

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.url,
            min_size=self.pool_min_size,
            max_size=self.pool_max_size,
            kwargs={"autocommit": True},
            configure=_configure,
            check=AsyncConnectionPool.check_connection,
            timeout=self.pool_timeout_s,
            open=False,
            name="fleethub",
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        await cancel_and_wait([self._recovery, *self._retired])
        if pool is not None:
            await pool.close(timeout=2)

    def _server_lost(self) -> None:
        """Start probing the server, unless already: psycopg_pool's own reconnect backoff
        doubles without a cap (1, 2, 4 ... 64 s, up to its 300 s timeout), so after a long
        outage the first connection came a minute after the server was back."""
        if self._pool is None or (self._recovery is not None and not self._recovery.done()):
            return
        self._recovery = asyncio.get_running_loop().create_task(self._recover(), name="pg-recover")

    async def _recover(self) -> None:
        """Probe every `reconnect_max_s` at most; once the server answers, swap in a fresh pool."""
        delay = 0.1
        while self._pool is not None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)
            try:
                probe = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=2)
            except (psycopg.Error, OSError):
                continue
            await probe.close()
            old, fresh = self._pool, self._new_pool()
            try:
                await fresh.open(wait=True, timeout=self.pool_timeout_s)
            except PoolTimeout:
                await fresh.close()
                continue
            self._pool = fresh
            log.info("postgres connection pool replaced after the server came back")
            if old is not None:
                # Callers holding its connections finish with them; it closes in the background.
                retiring = asyncio.get_running_loop().create_task(old.close(timeout=5))
                self._retired.add(retiring)
                retiring.add_done_callback(self._retired.discard)
            return

    @contextlib.asynccontextmanager
    async def connection(self, *, prepare: str | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (autocommit, UTC); pool exhaustion and lost servers become `StoreError`.

        `prepare` is SQL the caller needs run once on each connection it gets (temporary
        tables of its own); it runs the first time this connection is lent with it.
        """
        pool = self._pool
        if pool is None:
            raise StoreError("the PostgreSQL database is not open")
        try:
            async with pool.connection(timeout=self._wait_s) as conn:
                if prepare is not None:
                    done = self._prepared.setdefault(conn, set())
                    if prepare not in done:
                        await conn.execute(prepare.encode())
                        done.add(prepare)
                if self._fenced.get(conn, "") != self._fence:
                    await conn.execute("SELECT set_config('fleethub.fence', %s, false)", (self._fence,))
                    self._fenced[conn] = self._fence
                yield conn
        except MAPPED as exc:
            error = store_error(exc)
            if isinstance(error, StoreUnavailable):
                self._server_lost()
            raise error from exc

    def set_fence(self, fence: str) -> None:
        """Set what every connection lent from now on carries as `fleethub.fence` ("" for none).

        A connection takes the new value the next time it is lent, before its caller runs
        anything, so a write begun after this call is checked against it.
        """
        self._fence = fence

    # -- migrations ----------------------------------------------------------------------

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with schema_lock(conn):
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute("CREATE TABLE IF NOT EXISTS store_meta (key text PRIMARY KEY, value text NOT NULL)")
            mode = await self._mode(conn)
            cur = await conn.execute("SELECT version FROM schema_version")
            applied = {int(r[0]) for r in await cur.fetchall()}
            current = max(applied, default=0)
            for migration in load_pg_migrations(mode):
                # Every missing number runs: parts of the hub own number ranges (see kernel.migrate).
                if migration.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                current = max(current, migration.version)
                log.info("postgres migration applied", version=migration.version, name=migration.name)
            if mode is TimeseriesMode.TIMESCALEDB:
                version = await _scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
                self._detail = f"timescaledb {version}"
            else:
                self._detail = "native partitioning"
            self.mode = mode
            self.schema_version = int(current or 0)

    async def _mode(self, conn: psycopg.AsyncConnection[Any]) -> TimeseriesMode:
        """The time-series mode, chosen once when the schema is created and recorded in `store_meta`:
        switching a live database between hypertables and native partitions is a data migration,
        not a restart."""
        recorded = await _scalar(conn, "SELECT value FROM store_meta WHERE key = 'timeseries'")
        if recorded is not None:
            mode = TimeseriesMode(str(recorded))
            if self.timeseries not in {"auto", mode.value}:
                raise StoreError(
                    f"setting 'store.pg_timeseries' is {self.timeseries!r} but this database was set up for "
                    f"{mode.value!r}; use 'auto' or {mode.value!r}, or a new database"
                )
            if mode is TimeseriesMode.TIMESCALEDB:
                await _create_extension(conn)
            return mode
        mode = await self._choose(conn)
        async with conn.transaction():
            await conn.execute("INSERT INTO store_meta (key, value) VALUES ('timeseries', %s)", (mode.value,))
        return mode

    async def _choose(self, conn: psycopg.AsyncConnection[Any]) -> TimeseriesMode:
        if self.timeseries == "native":
            return TimeseriesMode.NATIVE
        installed = await _scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        if installed is not None:
            return TimeseriesMode.TIMESCALEDB
        available = await _scalar(
            conn, "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
        if available is None:
            if self.timeseries == "timescaledb":
                raise StoreError(
                    "setting 'store.pg_timeseries' asks for TimescaleDB but the extension is not installed on this "
                    "server; install it, or use 'native'"
                )
            return TimeseriesMode.NATIVE
        # Reading shared_preload_libraries is refused to roles that are neither superusers nor in
        # pg_read_all_settings (a database owner, typically), but the settings TimescaleDB's loader
        # registers when it is preloaded are visible to every role. Creating the extension on a server
        # that does not preload it would end the session, so it is never tried blind.
        loader = await _scalar(conn, "SELECT count(*) FROM pg_settings WHERE name = 'timescaledb.disable_load'")
        if not loader:
            return self._not_preloaded()
        await _create_extension(conn)
        return TimeseriesMode.TIMESCALEDB

    def _not_preloaded(self) -> TimeseriesMode:
        if self.timeseries == "timescaledb":
            raise StoreError(
                "setting 'store.pg_timeseries' asks for TimescaleDB but the extension is not in "
                "shared_preload_libraries on this server; add it and restart PostgreSQL, or use 'native'"
            )
        log.warning("timescaledb is installed but not preloaded; using native partitioning")
        return TimeseriesMode.NATIVE

    # -- health --------------------------------------------------------------------------

    async def info(self) -> DatabaseInfo:
        return DatabaseInfo(
            backend=self.backend, url=redact(self.url), schema_version=self.schema_version, detail=self._detail
        )

    def stopping(self) -> None:
        """The process is stopping: a caller waiting for a connection gives up after a second, so no
        part's shutdown waits out the pool timeout while the server is gone."""
        self._wait_s = min(self._wait_s, 1.0)

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.connection() as conn:
            await conn.execute("SELECT 1")


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(_SESSION)


async def _scalar(conn: psycopg.AsyncConnection[Any], sql: str) -> Any:
    cur = await conn.execute(sql.encode())
    row = await cur.fetchone()
    return row[0] if row else None


async def _create_extension(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create TimescaleDB once per database (a no-op when it exists, wherever it lives).

    TimescaleDB is a trusted extension: the database's owner may create it, no superuser needed.
    """
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.errors.InsufficientPrivilege:
        raise StoreError(
            "the timescaledb extension needs creating by the database's owner or a superuser: run "
            "'CREATE EXTENSION timescaledb;' in this database, or set store.pg_timeseries = 'native'"
        ) from None

"""PostgreSQL schema: migrations, the time-series mode, and TimescaleDB policies.

`migrations/postgres/NNNN_name.sql` applies in both modes; `NNNN_name.<mode>.sql` only
in its mode ("native" or "timescaledb"). The mode is chosen once, when the schema is
created, and recorded in `store_meta`: switching a live database between hypertables
and native partitions is a data migration, not a restart.
"""

from __future__ import annotations

import enum
import re
from importlib import resources
from typing import Any, Literal

import msgspec
import psycopg
import structlog

from kernel import StoreError

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(native|timescaledb))?\.sql$")


class Mode(enum.Enum):
    NATIVE = "native"
    TIMESCALEDB = "timescaledb"


class PostgresOptions(msgspec.Struct, frozen=True):
    pool_min_size: int = 2
    pool_max_size: int = 10
    # "auto": TimescaleDB when the extension can be used, else native partitioning.
    timeseries: Literal["auto", "timescaledb", "native"] = "auto"
    # Hypertable chunk / native partition width; divides a day or is whole days.
    chunk_interval_hours: int = 24
    # 0 keeps history forever.
    retention_days: int = 730
    # TimescaleDB only; 0 leaves chunks uncompressed.
    compress_after_days: int = 7
    # Native partitioning only: partitions kept ready ahead of the current one.
    premake_partitions: int = 3


class PgMigration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str


def load_pg_migrations(mode: Mode) -> list[PgMigration]:
    folder = resources.files("migrations").joinpath("postgres")
    found: dict[int, PgMigration] = {}
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if not match or match.group(3) not in {None, mode.value}:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"postgres migration {version:04d} exists both for all modes and for {mode.value}")
        name = match.group(2) + (f".{match.group(3)}" if match.group(3) else "")
        found[version] = PgMigration(version, name, entry.read_text(encoding="utf-8"))
    # Numbers order the migrations; gaps are allowed so parts of the hub own ranges (0010: rules).
    return [found[v] for v in sorted(found)]


# One lock per schema: two hub workers starting together take turns migrating.
_MIGRATE_LOCK = "SELECT pg_advisory_lock(hashtext(current_schema() || ':fleethub:migrate'))"
_MIGRATE_UNLOCK = "SELECT pg_advisory_unlock(hashtext(current_schema() || ':fleethub:migrate'))"


async def prepare(conn: psycopg.AsyncConnection[Any], options: PostgresOptions) -> tuple[Mode, int, str]:
    """Migrate the schema under an advisory lock; returns (mode, schema version, detail)."""
    await conn.execute(_MIGRATE_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute("CREATE TABLE IF NOT EXISTS store_meta (key text PRIMARY KEY, value text NOT NULL)")
        mode = await _mode(conn, options)
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
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (migration.version, migration.name)
                )
            current = max(current, migration.version)
            log.info("postgres migration applied", version=migration.version, name=migration.name)
        if mode is Mode.TIMESCALEDB:
            await _apply_policies(conn, options)
            version = await _scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            detail = f"timescaledb {version}"
        else:
            detail = "native partitioning"
        return mode, int(current or 0), detail
    finally:
        await conn.execute(_MIGRATE_UNLOCK)


async def _scalar(conn: psycopg.AsyncConnection[Any], sql: str) -> Any:
    cur = await conn.execute(sql.encode())
    row = await cur.fetchone()
    return row[0] if row else None


async def _mode(conn: psycopg.AsyncConnection[Any], options: PostgresOptions) -> Mode:
    recorded = await _scalar(conn, "SELECT value FROM store_meta WHERE key = 'timeseries'")
    if recorded is not None:
        mode = Mode(str(recorded))
        if options.timeseries not in {"auto", mode.value}:
            raise StoreError(
                f"setting 'store.pg_timeseries' is {options.timeseries!r} but this database was set up for "
                f"{mode.value!r}; use 'auto' or {mode.value!r}, or a new database"
            )
        if mode is Mode.TIMESCALEDB:
            await _create_extension(conn)
        return mode
    mode = await _choose(conn, options)
    async with conn.transaction():
        await conn.execute("INSERT INTO store_meta (key, value) VALUES ('timeseries', %s)", (mode.value,))
    return mode


async def _choose(conn: psycopg.AsyncConnection[Any], options: PostgresOptions) -> Mode:
    if options.timeseries == "native":
        return Mode.NATIVE
    installed = await _scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    available = await _scalar(conn, "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
    preload = str(await _scalar(conn, "SELECT current_setting('shared_preload_libraries')") or "")
    usable = installed is not None or (available is not None and "timescaledb" in preload)
    if options.timeseries == "timescaledb" and not usable:
        reason = "is not installed" if available is None else "is not in shared_preload_libraries"
        raise StoreError(
            f"setting 'store.pg_timeseries' asks for TimescaleDB but the extension {reason} on this server; "
            "install it, or use 'native'"
        )
    if not usable:
        if available is not None:
            log.warning("timescaledb is installed but not preloaded; using native partitioning")
        return Mode.NATIVE
    await _create_extension(conn)
    return Mode.TIMESCALEDB


async def _create_extension(conn: psycopg.AsyncConnection[Any]) -> None:
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.errors.InsufficientPrivilege:
        raise StoreError(
            "the timescaledb extension needs creating by a superuser: run "
            "'CREATE EXTENSION timescaledb;' in this database, or set store.pg_timeseries = 'native'"
        ) from None


def _days(n: int) -> str:
    return f"{n} days"


async def _apply_policies(conn: psycopg.AsyncConnection[Any], options: PostgresOptions) -> None:
    """Make TimescaleDB's background jobs match the settings; idempotent, run at every start."""
    async with conn.transaction():
        await conn.execute(
            "SELECT set_chunk_time_interval('history', make_interval(hours => %s))", (options.chunk_interval_hours,)
        )
        for table in ("history", "history_1m", "history_activity_1m"):
            await conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            if options.retention_days > 0:
                await conn.execute(
                    "SELECT add_retention_policy(%s, drop_after => %s::interval)",
                    (table, _days(options.retention_days)),
                )
        await conn.execute("SELECT remove_compression_policy('history', if_exists => true)")
        if options.compress_after_days > 0:
            await conn.execute(
                "SELECT add_compression_policy('history', compress_after => %s::interval)",
                (_days(options.compress_after_days),),
            )
        # Re-materialise the last two days every minute: late and backfilled rows within
        # that window reach the aggregate; older backfill waits for a manual refresh.
        await conn.execute(
            "SELECT add_continuous_aggregate_policy('history_activity_1m', "
            "start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute', "
            "schedule_interval => INTERVAL '1 minute', if_not_exists => true)"
        )

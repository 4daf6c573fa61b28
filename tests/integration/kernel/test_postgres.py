"""The PostgreSQL database: migrations once across workers, the time-series mode, one pool."""

import asyncio
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from kernel import PostgresDatabase, StoreError, TimeseriesMode, load_pg_migrations
from twin import HistoryOptions, HistoryQuery, HistoryRow, PostgresStore

pytestmark = pytest.mark.postgres


def _database(url: str, **kw) -> PostgresDatabase:
    return PostgresDatabase(url, pool_min_size=1, pool_max_size=2, **kw)


def _expected_mode(url: str) -> TimeseriesMode:
    """What `auto` picks here: TimescaleDB where the database has the extension (tests/postgres.py)."""
    with psycopg.connect(url) as conn:
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return TimeseriesMode.TIMESCALEDB if installed else TimeseriesMode.NATIVE


async def test_migrations_recorded_once_even_when_workers_start_together(pg_url: str) -> None:
    """Two databases opening at once on a new schema migrate it once; reopening applies nothing."""
    expected = _expected_mode(pg_url)
    first, second = _database(pg_url), _database(pg_url)
    async with asyncio.TaskGroup() as tg:
        a = tg.create_task(first.__aenter__())
        b = tg.create_task(second.__aenter__())
    try:
        assert a.result().mode is b.result().mode is expected
        info = await first.info()
        assert info.backend == "postgresql"
        assert (
            info.detail == "native partitioning" if expected is TimeseriesMode.NATIVE else "timescaledb" in info.detail
        )
    finally:
        await first.__aexit__(None, None, None)
        await second.__aexit__(None, None, None)
    async with _database(pg_url) as again:
        assert (await again.info()).schema_version == info.schema_version
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        mode = conn.execute("SELECT value FROM store_meta WHERE key = 'timeseries'").fetchone()[0]
    assert versions == [m.version for m in load_pg_migrations(expected)]
    assert info.schema_version == versions[-1]
    assert mode == expected.value


async def test_asking_for_timescaledb_where_it_is_missing_says_how_to_fix(pg_url: str) -> None:
    """Forcing TimescaleDB on a server without it (or against a native schema) is a clear StoreError."""
    with psycopg.connect(pg_url) as conn:
        preloaded = conn.execute("SELECT 1 FROM pg_settings WHERE name = 'timescaledb.disable_load'").fetchone()
    if preloaded:
        pytest.skip("this server has TimescaleDB (installed but not preloaded is missing too, and tested here)")
    with pytest.raises(StoreError, match="pg_timeseries"):
        async with _database(pg_url, timeseries="timescaledb"):
            pass
    async with _database(pg_url, timeseries="native"):
        pass
    with pytest.raises(StoreError, match="set up for 'native'"):
        async with _database(pg_url, timeseries="timescaledb"):
            pass


async def test_a_native_schema_refuses_timescaledb_later(pg_url: str) -> None:
    """The mode is fixed when the schema is created: asking for the other one later is refused."""
    async with _database(pg_url, timeseries="native") as db:
        assert db.mode is TimeseriesMode.NATIVE
    with pytest.raises(StoreError, match="set up for 'native'"):
        async with _database(pg_url, timeseries="timescaledb"):
            pass


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    """A server that does not answer is a StoreError naming it, password redacted."""
    with pytest.raises(StoreError, match=r"cannot open PostgreSQL at postgresql://u:\*\*\*@127.0.0.1:1/"):
        async with PostgresDatabase("postgresql://u:secret@127.0.0.1:1/x?connect_timeout=2"):
            pass


async def test_prepare_runs_once_per_pooled_connection(pg_url: str) -> None:
    """Set-up a store asks for runs on each new connection once, and again on the connection that replaces it."""
    app = f"fleethub-prepare-{uuid.uuid4().hex[:8]}"
    # Fails if run twice on one connection: the table would already exist.
    prepare = "CREATE TEMPORARY TABLE fh_test_once (x integer)"
    async with PostgresDatabase(f"{pg_url}&application_name={app}", pool_min_size=1, pool_max_size=1) as db:
        for _ in range(3):
            async with db.connection(prepare=prepare) as conn:
                await conn.execute("INSERT INTO fh_test_once VALUES (1)")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchall()
        assert len(killed) == 1
        async with db.connection(prepare=prepare) as conn:
            cur = await conn.execute("SELECT count(*) FROM fh_test_once")
            assert await cur.fetchone() == (0,)


async def test_a_closed_database_refuses_connections(pg_url: str) -> None:
    """Using the database outside `async with` is a StoreError."""
    db = _database(pg_url)
    with pytest.raises(StoreError, match="not open"):
        async with db.connection():
            pass
    async with db:
        await db.ping()
    with pytest.raises(StoreError, match="not open"):
        await db.ping()


async def test_a_database_owner_who_is_not_a_superuser_starts_the_hub(pg_server) -> None:
    """First start as the owner of a new database, no superuser: migrations, the mode, the store all work.

    Reading shared_preload_libraries is refused to such a role; with TimescaleDB preloaded the owner
    creates the (trusted) extension itself, and without it the hub picks native partitioning.
    """
    role, name = f"fh_owner_{uuid.uuid4().hex[:8]}", f"fleethub_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
        preloaded = "timescaledb" in str(admin.execute("SHOW shared_preload_libraries").fetchone()[0])
        available = admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    parts = urlsplit(pg_server.url)
    url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}", path=f"/{name}"))
    expected = TimeseriesMode.TIMESCALEDB if preloaded and available else TimeseriesMode.NATIVE
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        for _ in range(2):  # the first start and a restart
            async with _database(url) as db, PostgresStore(db, options=HistoryOptions()) as store:
                assert db.mode is expected
                await store.write_batch([], [HistoryRow("car-1", time.time(), time.time(), 1, {"soc": 5})])
                rows = await store.history(HistoryQuery(vehicle_id="car-1", limit=10))
                assert [row.data for row in rows][-1:] == [{"soc": 5}]
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

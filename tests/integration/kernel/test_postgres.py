"""The PostgreSQL database: migrations once across workers, the time-series mode, one pool."""

import asyncio
import uuid

import psycopg
import pytest

from kernel import PostgresDatabase, StoreError, TimeseriesMode, load_pg_migrations

pytestmark = pytest.mark.postgres


def _database(url: str, **kw) -> PostgresDatabase:
    return PostgresDatabase(url, pool_min_size=1, pool_max_size=2, **kw)


async def test_migrations_recorded_once_even_when_workers_start_together(pg_url: str) -> None:
    """Two databases opening at once on a new schema migrate it once; reopening applies nothing."""
    first, second = _database(pg_url), _database(pg_url)
    async with asyncio.TaskGroup() as tg:
        a = tg.create_task(first.__aenter__())
        b = tg.create_task(second.__aenter__())
    try:
        assert a.result().mode is b.result().mode is TimeseriesMode.NATIVE
        info = await first.info()
        assert (info.backend, info.detail) == ("postgresql", "native partitioning")
    finally:
        await first.__aexit__(None, None, None)
        await second.__aexit__(None, None, None)
    async with _database(pg_url) as again:
        assert (await again.info()).schema_version == info.schema_version
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        mode = conn.execute("SELECT value FROM store_meta WHERE key = 'timeseries'").fetchone()[0]
    assert versions == [m.version for m in load_pg_migrations(TimeseriesMode.NATIVE)]
    assert info.schema_version == versions[-1]
    assert mode == "native"


async def test_asking_for_timescaledb_where_it_is_missing_says_how_to_fix(pg_url: str) -> None:
    """Forcing TimescaleDB on a server without it (or against a native schema) is a clear StoreError."""
    with psycopg.connect(pg_url) as conn:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if available:
        pytest.skip("this server has TimescaleDB")
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

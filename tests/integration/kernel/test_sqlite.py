"""The SQLite database: migrations, WAL, one writer for every store, readers that never read stale."""

import asyncio
import sqlite3

import pytest

from commands import Command, CommandState, command_store
from kernel import Migration, SqliteDatabase, StoreError, load_migrations
from kernel import sqlite as kernel_sqlite
from rules import RuleDefinition, rules_store
from security import VehicleCredential, security_store
from twin import HistoryRow, TwinState, twin_store


async def test_migrations_recorded_and_idempotent(tmp_path) -> None:
    """Opening applies migrations once and records them; reopening applies nothing new."""
    url = f"sqlite:///{tmp_path}/m.db"
    async with SqliteDatabase(url) as db:
        first = (await db.info()).schema_version
    async with SqliteDatabase(url) as db:
        info = await db.info()
    assert (info.backend, info.schema_version, info.detail) == ("sqlite", first, "WAL")
    with sqlite3.connect(tmp_path / "m.db") as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert versions == [m.version for m in load_migrations("sqlite")]
    assert versions[-1] == first
    assert mode == "wal"


async def test_a_lower_numbered_migration_landing_later_still_runs(tmp_path, monkeypatch) -> None:
    """Migrations are applied by missing number, not only above the highest applied one."""
    url = f"sqlite:///{tmp_path}/late.db"
    real = load_migrations("sqlite")
    monkeypatch.setattr(kernel_sqlite, "load_migrations", lambda _backend: real)
    async with SqliteDatabase(url):
        pass
    late = Migration(version=8, name="late", sql="CREATE TABLE late_arrival (x INTEGER);")
    monkeypatch.setattr(
        kernel_sqlite, "load_migrations", lambda _backend: sorted([*real, late], key=lambda m: m.version)
    )
    async with SqliteDatabase(url):
        pass
    with sqlite3.connect(tmp_path / "late.db") as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'late_arrival'").fetchone()[0] == 1
        assert 8 in {r[0] for r in conn.execute("SELECT version FROM schema_version")}


async def test_every_store_works_on_one_in_memory_database() -> None:
    """`sqlite://:memory:` is private to its connection; the one Database lends it to every store."""
    async with (
        SqliteDatabase("sqlite://:memory:") as db,
        twin_store(db) as twins,
        rules_store(db) as rules,
        command_store(db) as commands,
        security_store(db) as security,
    ):
        await twins.write_batch([TwinState("v1", 1.0, 1.0, version=2)], [HistoryRow("v1", 1.0, 1.0, 1, {"a": 1})])
        await rules.put_rule(RuleDefinition(name="hot", when="temp > 90"))
        command = Command("c1", "v1", "unlock", CommandState.QUEUED, created_at=1.0, expires_at=100.0, updated_at=1.0)
        await commands.write([command])
        await security.add_credential(VehicleCredential("v1", "default", "$argon2id$x", 1.0))
        loaded = await twins.load_twin("v1")
        assert loaded is not None
        assert loaded.version == 2
        assert [r.name for r in await rules.list_rules()] == ["hot"]
        assert await commands.get("c1") == command
        assert await security.get_credential("v1") is not None
        tables = {r[0] for r in await db.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"twins", "history", "rules", "commands", "vehicle_credentials"} <= tables


async def test_a_read_open_on_one_connection_does_not_make_other_reads_stale(tmp_path) -> None:
    """A query read in steps keeps its connection's snapshot; other callers read on another connection."""
    async with SqliteDatabase(f"sqlite:///{tmp_path}/r.db", readers=2) as db:
        await db.write(_execute, "CREATE TABLE t (x INTEGER)")
        await db.write(_execute, "INSERT INTO t VALUES (1), (2)")
        async with db.reading() as held, held.execute("SELECT x FROM t") as cursor:
            assert await cursor.fetchone() == (1,)
            await db.write(_execute, "INSERT INTO t VALUES (3)")
            # On the held connection, the open statement pins the old snapshot ...
            async with held.execute("SELECT count(*) FROM t") as same:
                assert await same.fetchone() == (2,)
            # ... while every other read sees the committed write.
            assert await db.fetch("SELECT count(*) FROM t") == [(3,)]


async def test_one_call_reads_never_wait_for_queries_read_in_steps(tmp_path) -> None:
    """Queries read in steps get all read connections but one; one-call reads keep the last."""
    async with SqliteDatabase(f"sqlite:///{tmp_path}/s.db", readers=2) as db:
        release = asyncio.Event()

        async def hold() -> None:
            async with db.reading():
                await release.wait()

        first = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        second = asyncio.create_task(hold())
        # Each one-call read answers at once while a connection is lent out ...
        for _ in range(3):
            assert await asyncio.wait_for(db.fetch("SELECT 1"), timeout=5) == [(1,)]
        # ... while a second query read in steps waits for the first to end.
        await asyncio.sleep(0.2)
        assert not second.done()
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), timeout=5)


async def test_with_one_read_connection_reads_wait_for_it_to_come_back(tmp_path) -> None:
    """With its only read connection lent out, the next read waits for it to come back."""
    async with SqliteDatabase(f"sqlite:///{tmp_path}/b.db", readers=1) as db:
        release = asyncio.Event()

        async def hold() -> None:
            async with db.reading():
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(db.fetch("SELECT 1"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        release.set()
        assert await asyncio.wait_for(waiting, timeout=5) == [(1,)]
        await holder


async def test_a_closed_database_refuses_reads_and_writes(tmp_path) -> None:
    """Using the database outside `async with` is a StoreError, not a hang."""
    db = SqliteDatabase(f"sqlite:///{tmp_path}/c.db")
    with pytest.raises(StoreError, match="not open"):
        await db.fetch("SELECT 1")
    async with db:
        assert await db.fetch("SELECT 1") == [(1,)]
    with pytest.raises(StoreError, match="not open"):
        await db.write(_execute, "SELECT 1")
    with pytest.raises(StoreError, match="not open"):
        await db.fetch("SELECT 1")


def _execute(conn: sqlite3.Connection, sql: str) -> None:
    conn.execute(sql)

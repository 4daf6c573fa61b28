"""SQLite specifics: migrations, WAL, durability across reopen."""

import sqlite3

from kernel import load_migrations
from twin import HistoryRow, SqliteStore, TwinState
from twin.stores.sqlite import sqlite_path


def test_url_forms() -> None:
    """Three slashes start a relative path, four an absolute one."""
    assert sqlite_path("sqlite:///var/fleethub.db") == "var/fleethub.db"
    assert sqlite_path("sqlite:////tmp/x.db") == "/tmp/x.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"


async def test_migrations_recorded_and_idempotent(tmp_path) -> None:
    """Opening applies migrations once and records them; reopening applies nothing new."""
    url = f"sqlite:///{tmp_path}/m.db"
    async with SqliteStore(url) as store:
        first = (await store.info()).schema_version
    async with SqliteStore(url) as store:
        assert (await store.info()).schema_version == first
    with sqlite3.connect(tmp_path / "m.db") as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert versions == [m.version for m in load_migrations("sqlite")]
    assert versions[-1] == first
    assert mode == "wal"


async def test_data_survives_reopen(tmp_path) -> None:
    """What a committed batch wrote is there after the store is closed and reopened."""
    url = f"sqlite:///{tmp_path}/d.db"
    async with SqliteStore(url) as store:
        await store.write_batch(
            [TwinState(vehicle_id="v1", created_at=1.0, updated_at=1.0, version=3)],
            [HistoryRow("v1", 1.0, 1.0, 1, {"soc": 9})],
        )
    async with SqliteStore(url) as store:
        twin = await store.load_twin("v1")
        assert twin is not None
        assert twin.version == 3
        assert await store.count_twins() == 1


async def test_a_lower_numbered_migration_landing_later_still_runs(tmp_path, monkeypatch) -> None:
    """Migrations are applied by missing number, not only above the highest applied one."""
    from kernel import Migration, load_migrations
    from twin.stores import sqlite as sqlite_store

    url = f"sqlite:///{tmp_path}/late.db"
    real = load_migrations("sqlite")
    monkeypatch.setattr(sqlite_store, "load_migrations", lambda _backend: real)
    async with SqliteStore(url):
        pass
    late = Migration(version=5, name="late", sql="CREATE TABLE late_arrival (x INTEGER);")
    monkeypatch.setattr(
        sqlite_store, "load_migrations", lambda _backend: sorted([*real, late], key=lambda m: m.version)
    )
    async with SqliteStore(url):
        pass
    with sqlite3.connect(tmp_path / "late.db") as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'late_arrival'").fetchone()[0] == 1
        assert 5 in {r[0] for r in conn.execute("SELECT version FROM schema_version")}

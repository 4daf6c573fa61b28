"""The twin store on SQLite: what a committed batch wrote is on disk."""

from kernel import SqliteDatabase
from twin import HistoryRow, SqliteStore, TwinState


async def test_data_survives_reopen(tmp_path) -> None:
    """What a committed batch wrote is there after the database is closed and reopened."""
    url = f"sqlite:///{tmp_path}/d.db"
    async with SqliteDatabase(url) as db, SqliteStore(db) as store:
        await store.write_batch(
            [TwinState(vehicle_id="v1", created_at=1.0, updated_at=1.0, version=3)],
            [HistoryRow("v1", 1.0, 1.0, 1, {"soc": 9})],
        )
    async with SqliteDatabase(url) as db, SqliteStore(db) as store:
        twin = await store.load_twin("v1")
        assert twin is not None
        assert twin.version == 3
        assert await store.count_twins() == 1

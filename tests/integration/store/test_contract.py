"""One contract, every store backend: the same calls give the same answers."""

import pytest

from twin import HistoryQuery, HistoryRow, MemoryStore, Order, SqliteStore, TwinFilter, TwinState
from twin.model import Connection, ReportedEntry


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    backend = MemoryStore() if request.param == "memory" else SqliteStore(f"sqlite:///{tmp_path}/t.db")
    async with backend as opened:
        yield opened


def _twin(vid: str, *, fleet: str = "default", connected: bool = False, version: int = 1) -> TwinState:
    return TwinState(
        vehicle_id=vid,
        created_at=1.0,
        updated_at=2.0,
        fleet=fleet,
        version=version,
        reported={"soc": ReportedEntry(50, 1.5)},
        connection=Connection(connected=connected),
    )


async def test_twin_round_trip(store) -> None:
    """A written twin reads back equal; an unknown id reads as None."""
    await store.write_batch([_twin("v1")], [])
    assert await store.load_twin("v1") == _twin("v1")
    assert await store.load_twin("nope") is None


async def test_upsert_replaces(store) -> None:
    """Writing a twin again replaces the stored one."""
    await store.write_batch([_twin("v1", version=1)], [])
    await store.write_batch([_twin("v1", version=7)], [])
    loaded = await store.load_twin("v1")
    assert loaded is not None
    assert loaded.version == 7
    assert await store.count_twins() == 1


async def test_list_filters_and_pages(store) -> None:
    """Listing filters by fleet and connection and pages by vehicle id."""
    await store.write_batch(
        [_twin(f"v{i}", fleet="a" if i % 2 else "b", connected=i < 3) for i in range(6)],
        [],
    )
    ids = [t.vehicle_id for t in await store.list_twins(TwinFilter(limit=3))]
    assert ids == ["v0", "v1", "v2"]
    ids = [t.vehicle_id for t in await store.list_twins(TwinFilter(after="v2", limit=10))]
    assert ids == ["v3", "v4", "v5"]
    assert [t.vehicle_id for t in await store.list_twins(TwinFilter(fleet="a"))] == ["v1", "v3", "v5"]
    assert [t.vehicle_id for t in await store.list_twins(TwinFilter(connected=True))] == ["v0", "v1", "v2"]
    assert await store.count_twins("b") == 3


async def test_history_range_order_limit_fields(store) -> None:
    """History is time-ordered, bounded by [from, to), limited, and projects fields."""
    rows = [HistoryRow("v1", float(t), 100.0 + t, t, {"soc": t, "gps": {"lat": t / 10}}) for t in range(10)]
    await store.write_batch([], rows[5:] + rows[:5])
    got = await store.history(HistoryQuery("v1", start=2, end=6))
    assert [r.ts for r in got] == [2, 3, 4, 5]
    got = await store.history(HistoryQuery("v1", order=Order.DESC, limit=3))
    assert [r.ts for r in got] == [9, 8, 7]
    got = await store.history(HistoryQuery("v1", start=1, end=2, fields=("gps.lat", "missing")))
    assert got[0].data == {"gps.lat": 0.1}
    assert await store.history(HistoryQuery("other")) == []


async def test_history_duplicates_with_seq_are_stored_once(store) -> None:
    """A resent message (same vehicle, device time and seq) is kept once; rows without seq are all kept."""
    row = HistoryRow("v1", 10.0, 11.0, 5, {"soc": 1})
    await store.write_batch([], [row])
    await store.write_batch([], [row, HistoryRow("v1", 10.0, 12.0, None, {"soc": 2})])
    await store.write_batch([], [HistoryRow("v1", 10.0, 13.0, None, {"soc": 2})])
    got = await store.history(HistoryQuery("v1"))
    assert sorted((r.seq is None, r.received_at) for r in got) == [(False, 11.0), (True, 12.0), (True, 13.0)]


async def test_ping_and_info(store) -> None:
    """A healthy store answers ping and names its backend."""
    await store.ping()
    info = await store.info()
    assert info.backend in {"memory", "sqlite"}

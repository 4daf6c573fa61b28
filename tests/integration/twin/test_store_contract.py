"""One contract, every store backend: the same calls give the same answers."""

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest

from kernel import InvalidPayload, PostgresDatabase, SqliteDatabase, VehicleIds, VehiclePartitions, partition_of
from twin import (
    AggregateQuery,
    Bucket,
    HistoryOptions,
    HistoryQuery,
    HistoryRow,
    MemoryStore,
    Order,
    PointQuery,
    PostgresStore,
    PresenceEvent,
    PresenceQuery,
    ReportedEntry,
    SqliteStore,
    Store,
    TwinFilter,
    TwinState,
    VehicleSelector,
    parse_aggs,
)
from twin.model import Connection

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
DAY = 86_400.0
# 2023-11-14T22:13:20Z; the tests' history lives around it.
T0 = 1_700_000_000.0


@pytest.fixture(params=BACKENDS)
def make_store(request, tmp_path):
    """Open a store of the parametrised backend, on a database of its own (SQLite: a new file)."""
    made = []

    @contextlib.asynccontextmanager
    async def make(*, retention_days: int = 730) -> AsyncIterator[Store]:
        made.append(request.param)
        if request.param == "memory":
            async with MemoryStore(retention_days=retention_days) as memory:
                yield memory
        elif request.param == "sqlite":
            async with (
                SqliteDatabase(f"sqlite:///{tmp_path}/t{len(made)}.db") as db,
                SqliteStore(db, retention_days=retention_days) as sqlite,
            ):
                yield sqlite
        else:
            options = HistoryOptions(retention_days=retention_days)
            async with (
                PostgresDatabase(request.getfixturevalue("pg_url"), pool_min_size=1, pool_max_size=4) as db,
                PostgresStore(db, options=options) as postgres,
            ):
                yield postgres

    return make


@pytest.fixture
async def store(make_store):
    async with make_store() as opened:
        yield opened


def _twin(vid: str, *, fleet: str = "default", connected: bool = False, version: int = 1, tags=None) -> TwinState:
    return TwinState(
        vehicle_id=vid,
        created_at=1.0,
        updated_at=2.0,
        fleet=fleet,
        version=version,
        tags=tags or {},
        reported={"soc": ReportedEntry(50, 1.5)},
        connection=Connection(connected=connected),
    )


async def _write(stores, twins, rows) -> None:
    for s in stores:
        await s.write_batch(twins, rows)


# -- twins -----------------------------------------------------------------------------


async def test_twin_round_trip(store) -> None:
    """A written twin reads back equal; an unknown id reads as None."""
    await store.write_batch([_twin("v1", tags={"depot": "north", "n": 3})], [])
    assert await store.load_twin("v1") == _twin("v1", tags={"depot": "north", "n": 3})
    assert await store.load_twin("nope") is None


async def test_load_twins_returns_the_stored_ones(store) -> None:
    """Loading several ids at once gives the stored twins and leaves out unknown ids."""
    await store.write_batch([_twin("v1"), _twin("v2", version=4)], [])
    found = await store.load_twins(["v2", "nope", "v1"])
    assert found == {"v1": _twin("v1"), "v2": _twin("v2", version=4)}
    assert await store.load_twins([]) == {}


async def test_large_batches_keep_every_row_once(store) -> None:
    """A batch of any size lands whole: every twin upserted, every new history row once."""
    for size in (1, 127, 128, 129, 1000):
        twins = [_twin(f"v{i}", version=size) for i in range(size)]
        rows = [HistoryRow(f"v{i}", T0 + size, T0 + size, 1, {"soc": i}) for i in range(size)]
        # Resent rows (same vehicle, device time and seq) in the same batch are kept once.
        await store.write_batch(twins, rows + rows[: size // 2])
    found = await store.load_twins([f"v{i}" for i in range(1000)])
    assert len(found) == 1000
    assert found["v0"].version == 1000
    assert found["v999"].version == 1000
    for i in (0, 128, 999):
        stored = await store.history(HistoryQuery(f"v{i}", limit=10))
        expected_sizes = [s for s in (1, 127, 128, 129, 1000) if i < s]
        assert [r.ts for r in stored] == [T0 + s for s in expected_sizes]
        assert all(r.data == {"soc": i} for r in stored)


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


# -- raw history -----------------------------------------------------------------------


async def test_list_chooses_partitions_and_pages(store) -> None:
    """Listing the vehicles of some partitions (a worker's takeover) pages through exactly those."""
    vids = [f"veh-{n:02d}" for n in range(30)]
    await store.write_batch([_twin(v, connected=n % 3 > 0) for n, v in enumerate(vids)], [])
    chosen = VehiclePartitions(frozenset({1, 2}), 4)
    expected = [v for n, v in enumerate(vids) if n % 3 > 0 and partition_of(v, 4) in {1, 2}]
    assert len(expected) > 4
    found: list[str] = []
    after = None
    while True:
        page = await store.list_twins(TwinFilter(connected=True, after=after, limit=4, vehicles=chosen))
        found += [t.vehicle_id for t in page]
        if len(page) < 4:
            break
        after = page[-1].vehicle_id
    assert found == expected


async def test_list_chooses_vehicles_by_id(store) -> None:
    """Listing some vehicles by id (an owner rebuilding what another node changed) reads exactly those."""
    vids = [f"veh-{n:02d}" for n in range(12)]
    await store.write_batch([_twin(v, connected=n % 2 == 0) for n, v in enumerate(vids)], [])
    chosen = VehicleIds(frozenset({"veh-02", "veh-03", "veh-08", "absent"}))
    assert [t.vehicle_id for t in await store.list_twins(TwinFilter(limit=10, vehicles=chosen))] == [
        "veh-02",
        "veh-03",
        "veh-08",
    ]
    connected = TwinFilter(connected=True, after="veh-02", limit=10, vehicles=chosen)
    assert [t.vehicle_id for t in await store.list_twins(connected)] == ["veh-08"]


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


def _tied_rows() -> list[HistoryRow]:
    """Rows with many equal device times (no seq), written over two batches, plus fractions of a second."""
    rows = []
    for k in range(23):
        ts = T0 + (k // 4) + (0.25 if k % 5 == 0 else 0.0)
        rows.append(HistoryRow("v1", ts, T0 + k, None, {"k": k, "soc": 90 - k}))
    return rows


@pytest.mark.parametrize("order", [Order.ASC, Order.DESC])
async def test_cursor_pages_walk_every_row_once_in_order(store, order: Order) -> None:
    """Keyset pages cover every row exactly once, ties in write order, whatever the page size."""
    rows = _tied_rows()
    await store.write_batch([], rows[:11])
    await store.write_batch([], rows[11:])
    expected = [r.data["k"] for r in sorted(rows, key=lambda r: (r.ts, r.data["k"]))]
    if order is Order.DESC:
        expected.reverse()
    for size in (1, 4, 23, 50):
        seen, cursor = [], None
        while True:
            page = await store.history_page(
                PointQuery(VehicleSelector.one("v1"), limit=size, order=order, cursor=cursor)
            )
            seen.extend(r.data["k"] for r in page.rows)
            if page.next_cursor is None:
                break
            assert len(page.rows) == size
            cursor = page.next_cursor
        assert seen == expected, size


async def test_point_query_range_fields_and_vehicle_sets(store) -> None:
    """Fleet and tag selections page vehicle by vehicle, within [from, to), projecting fields."""
    twins = [
        _twin("a1", fleet="acme", tags={"depot": "north"}),
        _twin("a2", fleet="acme", tags={"depot": "south"}),
        _twin("a3", fleet="acme", tags={"depot": "north", "model": "e"}),
        _twin("b1", fleet="bolt", tags={"depot": "north"}),
    ]
    rows = [HistoryRow(t.vehicle_id, T0 + s, T0 + s, s, {"soc": s, "x": 1}) for t in twins for s in range(5)]
    await store.write_batch(twins, rows)

    async def walk(vehicles: VehicleSelector, **kw) -> list[tuple[str, float]]:
        out, cursor = [], None
        while True:
            page = await store.history_page(PointQuery(vehicles, limit=3, cursor=cursor, **kw))
            out.extend((r.vehicle_id, r.ts - T0) for r in page.rows)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    acme = await walk(VehicleSelector(fleet="acme"), start=T0 + 1, end=T0 + 3)
    assert acme == [("a1", 1), ("a1", 2), ("a2", 1), ("a2", 2), ("a3", 1), ("a3", 2)]
    north = await walk(VehicleSelector(fleet="acme", tags={"depot": "north"}), start=T0 + 4)
    assert north == [("a1", 4), ("a3", 4)]
    both = await walk(VehicleSelector(tags={"depot": "north", "model": "e"}), end=T0 + 1)
    assert both == [("a3", 0)]
    picked = await walk(VehicleSelector(vehicle_ids=("b1", "a2", "zz"), fleet="bolt"), order=Order.DESC, end=T0 + 2)
    assert picked == [("b1", 1), ("b1", 0)]
    assert await walk(VehicleSelector(fleet="nobody")) == []
    page = await store.history_page(PointQuery(VehicleSelector.one("a1"), fields=("soc",), limit=1))
    assert page.rows[0].data == {"soc": 0}


async def test_bad_cursor_is_refused(store) -> None:
    """A cursor this store never returned is an InvalidPayload, not a crash."""
    with pytest.raises(InvalidPayload):
        await store.history_page(PointQuery(VehicleSelector.one("v1"), cursor="not-a-cursor"))
    with pytest.raises(InvalidPayload):
        await store.aggregate(
            AggregateQuery(VehicleSelector.one("v1"), Bucket.HOUR, parse_aggs("soc:avg"), cursor="WyJwIiwidiIsMSwxXQ")
        )


# -- aggregates ------------------------------------------------------------------------


def _day_of_driving(vid: str, start: float, seconds: int, step: int = 7) -> list[HistoryRow]:
    """Telemetry with numbers, strings, booleans, nulls, nesting and gaps."""
    rows = []
    for k, s in enumerate(range(0, seconds, step)):
        data = {"soc": 90 - k * 0.125, "speed": (k * 13) % 97, "gps": {"lat": 19.4 + k * 1e-4, "lon": -99.1}}
        if k % 11 == 0:
            data["speed"] = "n/a"
        if k % 17 == 0:
            data["soc"] = None
        if k % 5 == 0:
            data["ignition"] = k % 10 == 0
            data["temp"] = {"cabin": 21 + k % 3}
        rows.append(HistoryRow(vid, start + s, start + s + 1, k, data))
    return rows


AGGS = parse_aggs(
    "soc:avg,soc:min,soc:max,soc:last,soc:count,speed:max,speed:count,gps.lat:avg,temp.cabin:last,nope:avg"
)


@pytest.mark.parametrize("bucket", list(Bucket))
async def test_aggregates_match_the_reference(store, bucket: Bucket) -> None:
    """Every function and bucket gives exactly the in-memory reference's answer, before and after maintenance."""
    reference = MemoryStore()
    rows = _day_of_driving("v1", T0 + 13.5, 3 * 3600) + _day_of_driving("v2", T0, 1800, step=3)
    await _write([store, reference], [], rows)
    queries = [
        AggregateQuery(VehicleSelector(vehicle_ids=("v1", "v2")), bucket, AGGS),
        AggregateQuery(VehicleSelector.one("v1"), bucket, AGGS, start=T0 + 95.5, end=T0 + 7000.25),
        AggregateQuery(VehicleSelector.one("v1"), bucket, AGGS, start=T0 + 600, end=T0 + 610),
    ]
    expected = [await reference.aggregate(q) for q in queries]
    assert [await store.aggregate(q) for q in queries] == expected
    # A late batch into minutes the rollup already covers must show up at once.
    await store.maintain(T0 + DAY)
    assert [await store.aggregate(q) for q in queries] == expected
    late = [HistoryRow("v1", T0 + 100 + k * 0.5, T0 + DAY, None, {"soc": 1000 + k, "speed": 300}) for k in range(4)]
    await _write([store, reference], [], late)
    assert [await store.aggregate(q) for q in queries] == [await reference.aggregate(q) for q in queries]


async def test_aggregate_values_by_hand(store) -> None:
    """Minute buckets: numbers only, last by device time then write order, empty fields null or 0."""
    rows = [
        HistoryRow("v1", T0 + 0, T0, None, {"soc": 10, "speed": 5}),
        HistoryRow("v1", T0 + 10, T0, None, {"soc": 20.5, "speed": "fast"}),
        HistoryRow("v1", T0 + 10, T0, None, {"soc": 30, "speed": True}),
        HistoryRow("v1", T0 + 20, T0, None, {"soc": {"v": 1}, "speed": None}),
        HistoryRow("v1", T0 + 70, T0, None, {"other": 1}),
    ]
    await store.write_batch([], rows[:2])
    await store.write_batch([], rows[2:])
    aggs = parse_aggs("soc:avg,soc:min,soc:max,soc:last,soc:count,speed:avg,speed:count,speed:last")
    page = await store.aggregate(AggregateQuery(VehicleSelector.one("v1"), Bucket.MINUTE, aggs, start=T0))
    first, second = page.rows
    assert first.bucket == T0 - 20  # T0 is 20 s past a whole minute
    assert first.rows == 4
    assert first.values == {
        "soc:avg": 20.166666666666668,
        "soc:min": 10,
        "soc:max": 30,
        "soc:last": 30,
        "soc:count": 3,
        "speed:avg": 5.0,
        "speed:count": 1,
        "speed:last": 5,
    }
    assert (second.bucket, second.rows) == (T0 + 40, 1)
    assert second.values["soc:avg"] is None
    assert second.values["soc:count"] == 0
    assert second.values["speed:last"] is None


@pytest.mark.parametrize(
    ("tz", "starts"),
    [
        ("Europe/Paris", ["2024-03-29T23:00:00+00:00", "2024-03-30T23:00:00+00:00", "2024-03-31T22:00:00+00:00"]),
        ("UTC", ["2024-03-30T00:00:00+00:00", "2024-03-31T00:00:00+00:00", "2024-04-01T00:00:00+00:00"]),
    ],
)
async def test_day_buckets_follow_the_time_zone(store, tz: str, starts: list[str]) -> None:
    """Day buckets run midnight to midnight in `tz`, 23 hours long on the spring DST change."""
    begin = datetime(2024, 3, 30, 0, 30, tzinfo=UTC).timestamp()
    rows = [HistoryRow("v1", begin + h * 3600, begin, h, {"n": 1}) for h in range(60)]
    await store.write_batch([], rows)
    page = await store.aggregate(AggregateQuery(VehicleSelector.one("v1"), Bucket.DAY, parse_aggs("n:count"), tz=tz))
    got = [datetime.fromtimestamp(r.bucket, UTC).isoformat() for r in page.rows]
    assert got == starts
    assert sum(r.rows for r in page.rows) == 60
    if tz == "Europe/Paris":
        assert [r.rows for r in page.rows] == [23, 23, 14]


async def test_aggregate_pages_across_vehicles(store) -> None:
    """Aggregate pages resume after the last bucket returned, across vehicle boundaries."""
    rows = [HistoryRow(v, T0 + m * 60, T0, m, {"soc": m}) for v in ("a", "b") for m in range(5)]
    await store.write_batch([], rows)
    query = AggregateQuery(VehicleSelector(vehicle_ids=("a", "b")), Bucket.MINUTE, parse_aggs("soc:max"), limit=3)
    seen, cursor = [], None
    while True:
        page = await store.aggregate(msgspec.structs.replace(query, cursor=cursor))
        seen.extend((r.vehicle_id, r.values["soc:max"]) for r in page.rows)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [(v, m) for v in ("a", "b") for m in range(5)]


async def test_bad_time_zone_is_refused(store) -> None:
    """An unknown IANA zone is an InvalidPayload naming the setting to fix."""
    with pytest.raises(InvalidPayload, match="tz"):
        await store.aggregate(
            AggregateQuery(VehicleSelector.one("v"), Bucket.DAY, parse_aggs("a:avg"), tz="Mars/Olympus")
        )


# -- twin as of a time -----------------------------------------------------------------


async def test_history_until_pages_oldest_first_up_to_and_including_at(store) -> None:
    """history_until returns one vehicle's rows with ts <= at, oldest first, ties in write order."""
    rows = [*_tied_rows(), HistoryRow("v2", T0, T0, None, {"k": -1})]
    await store.write_batch([], rows)
    at = T0 + 3
    expected = [r.data["k"] for r in sorted(rows, key=lambda r: (r.ts, r.data["k"])) if r.vehicle_id == "v1"]
    expected = [k for k in expected if rows[k].ts <= at]
    seen, cursor = [], None
    while True:
        page = await store.history_until("v1", at, cursor=cursor, limit=5)
        seen.extend(r.data["k"] for r in page.rows)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected
    assert seen[-1] in {12, 13, 14}  # the rows exactly at `at` are included
    assert (await store.history_until("v1", T0 - 1)).rows == []


# -- presence --------------------------------------------------------------------------


async def test_presence_events_range_order_and_limit(store) -> None:
    """Presence events are written with a batch and read back by vehicle, time range and order."""
    events = [
        PresenceEvent("v1", T0, True),
        PresenceEvent("v1", T0 + 60, False, "keepalive_timeout"),
        PresenceEvent("v2", T0 + 61, True),
        PresenceEvent("v1", T0 + 120.25, True),
    ]
    await store.write_batch([_twin("v1")], [], events[:2])
    await store.write_batch([], [], events[2:])
    assert await store.presence_history(PresenceQuery("v1")) == [events[0], events[1], events[3]]
    assert await store.presence_history(PresenceQuery("v1", start=T0 + 60, end=T0 + 120.25)) == [events[1]]
    newest = await store.presence_history(PresenceQuery("v1", order=Order.DESC, limit=2))
    assert newest == [events[3], events[1]]
    assert await store.presence_history(PresenceQuery("nobody")) == []


# -- retention -------------------------------------------------------------------------


async def test_retention_removes_whole_old_days(make_store) -> None:
    """Maintenance removes history before the start of the oldest retained UTC day, and nothing else."""
    day0 = 1_699_920_000.0  # 2023-11-14T00:00:00Z
    rows = [HistoryRow("v1", day0 + d * DAY + s, day0, None, {"d": d}) for d in range(-1, 6) for s in (0, 40_000)]
    presence = [PresenceEvent("v1", day0 + d * DAY, d % 2 == 0) for d in range(-1, 6)]
    async with make_store(retention_days=3) as store:
        await store.write_batch([], rows, presence)
        now = day0 + 5 * DAY + 50_000
        report = await store.maintain(now)
        assert report.retention_cutoff == day0 + 2 * DAY
        left = await store.history(HistoryQuery("v1", limit=100))
        assert sorted({r.data["d"] for r in left}) == [2, 3, 4, 5]
        assert await store.presence_history(PresenceQuery("v1")) == presence[3:]
        again = await store.maintain(now)
        assert again.rows_deleted == 0
        assert again.partitions_dropped == []
        page = await store.aggregate(AggregateQuery(VehicleSelector.one("v1"), Bucket.DAY, parse_aggs("d:min")))
        assert [r.values["d:min"] for r in page.rows] == [2, 3, 4, 5]


async def test_retention_zero_keeps_everything(make_store) -> None:
    """retention_days = 0 turns retention off."""
    async with make_store(retention_days=0) as store:
        await store.write_batch([], [HistoryRow("v1", 1_000.0, 1_000.0, None, {"a": 1})])
        report = await store.maintain(T0)
        assert report.retention_cutoff is None
        assert len(await store.history(HistoryQuery("v1"))) == 1


async def test_ping_and_info(store) -> None:
    """A healthy store answers ping and names its backend."""
    await store.ping()
    info = await store.info()
    assert info.backend in {"memory", "sqlite", "postgresql"}

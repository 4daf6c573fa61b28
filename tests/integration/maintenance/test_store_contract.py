"""One contract for every maintenance store backend: in memory, SQLite and PostgreSQL."""

import pytest

from kernel import PostgresDatabase, Sql, SqliteDatabase, VehicleIds, VehiclePartitions, partition_of
from maintenance import (
    Interval,
    MemoryMaintenanceStore,
    MeterCorrection,
    RecordQuery,
    Schedule,
    ScheduleBody,
    ServiceRecord,
    SqlMaintenanceStore,
    Stage,
)
from security import Actor, audit_entry
from twin import VehicleSelector

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    if request.param == "memory":
        async with MemoryMaintenanceStore() as memory:
            yield memory
        return
    if request.param == "sqlite":
        async with SqliteDatabase(f"sqlite:///{tmp_path}/hub.db") as db, SqlMaintenanceStore(db) as sqlite:
            yield sqlite
        return
    url = request.getfixturevalue("pg_url")
    async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, SqlMaintenanceStore(db) as pg:
        yield pg


def schedule(sid: str, **body) -> Schedule:
    return Schedule(sid, ScheduleBody(name=sid.title(), **(body or {"every_km": 15000.0})), 1.0, 2.0)


def record(rid: str, vid="v1", at=100.0, sid="oil", fleet="f1") -> ServiceRecord:
    return ServiceRecord(rid, vid, fleet, sid, at, at + 1, "ana", 1000.5, 20.25, "filter")


async def test_schedules_round_trip_and_replace(store):
    """A schedule reads back as written; putting the same id replaces it."""
    selector = VehicleSelector(fleet="f1", tags={"m": "A"})
    await store.put_schedule(schedule("oil", every_km=15000.0, every_days=180.0, selector=selector))
    await store.put_schedule(schedule("brakes"))
    await store.put_schedule(schedule("oil", every_engine_hours=500.0))
    found = await store.list_schedules()
    assert [s.id for s in found] == ["brakes", "oil"]
    assert found[1].body == ScheduleBody(name="Oil", every_engine_hours=500.0)


async def test_deleting_a_schedule_drops_its_intervals_not_its_records(store):
    """Delete removes the schedule and its intervals; service records stay as history."""
    await store.put_schedule(schedule("oil"))
    await store.put_intervals([Interval("oil", "v1", "f1", 5.0, 100.0, 1.0), Interval("tyres", "v1", "f1", 5.0)])
    await store.record_service(record("r1"), Interval("oil", "v1", "f1", 100.0, 1000.5, 20.25, Stage.OK, "r1"))
    assert await store.delete_schedule("oil") is True
    assert await store.delete_schedule("oil") is False
    assert await store.list_schedules() == []
    assert [i.schedule_id for i in await store.intervals()] == ["tyres"]
    assert [r.id for r in await store.list_services(RecordQuery())] == ["r1"]


async def test_intervals_upsert_by_schedule_and_vehicle(store):
    """put_intervals replaces the interval of the same schedule and vehicle."""
    await store.put_intervals([Interval("oil", "v1", "f1", 5.0, 100.0, None)])
    await store.put_intervals(
        [Interval("oil", "v1", "f1", 5.0, 100.0, 3.5, Stage.OVERDUE), Interval("oil", "v2", "f2", 6.0)]
    )
    assert await store.intervals() == [
        Interval("oil", "v1", "f1", 5.0, 100.0, 3.5, Stage.OVERDUE),
        Interval("oil", "v2", "f2", 6.0),
    ]


async def test_intervals_of_some_vehicles_by_id_or_partition(store):
    """A worker reads the intervals of its partitions' vehicles, or of some vehicles by id, and no others."""
    vids = [f"veh-{n}" for n in range(16)]
    await store.put_intervals([Interval(sid, v, "f1", 5.0) for v in vids for sid in ("oil", "tyres")])
    chosen = VehicleIds(frozenset({"veh-3", "veh-12", "absent"}))
    assert [(i.schedule_id, i.vehicle_id) for i in await store.intervals(chosen)] == [
        ("oil", "veh-12"),
        ("oil", "veh-3"),
        ("tyres", "veh-12"),
        ("tyres", "veh-3"),
    ]
    parts = VehiclePartitions(frozenset({0, 2}), 4)
    mine = {v for v in vids if partition_of(v, 4) in {0, 2}}
    assert 0 < len(mine) < len(vids)
    assert {i.vehicle_id for i in await store.intervals(parts)} == mine
    assert len(await store.intervals(parts)) == 2 * len(mine)
    assert await store.intervals(VehiclePartitions(frozenset(), 4)) == []


async def test_service_records_page_newest_first_with_filters(store):
    """Records list newest first, filter by vehicle, schedule and fleets, and page by (done_at, id)."""
    for i, (vid, fleet) in enumerate([("v1", "f1"), ("v2", "f2"), ("v1", "f1"), ("v1", "f1")]):
        rec = record(f"r{i}", vid=vid, fleet=fleet, at=100.0 + i, sid="oil" if i != 2 else "tyres")
        await store.record_service(rec, Interval(rec.schedule_id, vid, fleet, rec.done_at, service_id=rec.id))
    assert [r.id for r in await store.list_services(RecordQuery())] == ["r3", "r2", "r1", "r0"]
    assert [r.id for r in await store.list_services(RecordQuery(vehicle_id="v1", schedule_id="oil"))] == ["r3", "r0"]
    assert [r.id for r in await store.list_services(RecordQuery(fleets=("f2",)))] == ["r1"]
    assert [r.id for r in await store.list_services(RecordQuery(before=(102.0, "r2"), limit=1))] == ["r1"]
    assert (await store.list_services(RecordQuery(limit=1)))[0] == record("r3", at=103.0)


async def test_corrections_round_trip(store):
    """Corrections read back newest first, per vehicle."""
    first = MeterCorrection("c1", "v1", "f1", 10.0, "ana", 500.0, None, 480.0, 2.0, "dashboard")
    second = MeterCorrection("c2", "v1", "f1", 20.0, "bo", None, 12.5)
    await store.add_correction(first)
    await store.add_correction(second)
    await store.add_correction(MeterCorrection("c3", "v2", "f1", 30.0, "bo", 1.0))
    assert await store.list_corrections(RecordQuery(vehicle_id="v1")) == [second, first]


async def test_writes_carry_their_audit_entry(store, request):
    """Each audited write commits its entry with it (checked where the audit log is readable here)."""
    actor = Actor("ana", "127.0.0.1")
    entry = audit_entry(actor, "maintenance.schedule.put", 5.0, target="oil")
    await store.put_schedule(schedule("oil"), audit=entry)
    rec = record("r1")
    entry2 = audit_entry(actor, "maintenance.service.record", 6.0, vehicle_id="v1", target="oil")
    await store.record_service(rec, Interval("oil", "v1", "f1", 100.0, service_id="r1"), audit=entry2)
    if isinstance(store, MemoryMaintenanceStore):
        assert [e.action for e in store.audit] == ["maintenance.schedule.put", "maintenance.service.record"]
        return
    rows = await Sql(store.db).fetch("SELECT action, target FROM audit_log ORDER BY ts")
    assert [tuple(r) for r in rows] == [("maintenance.schedule.put", "oil"), ("maintenance.service.record", "oil")]

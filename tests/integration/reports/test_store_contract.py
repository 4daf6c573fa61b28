"""One contract for every reports store backend: in memory, SQLite and PostgreSQL."""

import pytest

from kernel import PostgresDatabase, SqliteDatabase
from reports import (
    MemoryReportStore,
    Period,
    ReportSchedule,
    ReportScheduleBody,
    SqlReportStore,
)
from security import Actor, audit_entry

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    if request.param == "memory":
        async with MemoryReportStore() as memory:
            yield memory
        return
    if request.param == "sqlite":
        async with SqliteDatabase(f"sqlite:///{tmp_path}/hub.db") as db, SqlReportStore(db) as sqlite:
            yield sqlite
        return
    url = request.getfixturevalue("pg_url")
    async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, SqlReportStore(db) as pg:
        yield pg


def schedule(sid="daily", **body) -> ReportSchedule:
    return ReportSchedule(sid, ReportScheduleBody(**{"fleet": "north", "channel": "ops", **body}), 1.0, 2.0)


async def test_schedules_round_trip_and_keep_their_last_period(store):
    """A schedule reads back as written; replacing it keeps the last period sent; delete removes it."""
    entry = audit_entry(Actor("ana", "127.0.0.1"), "reports.schedule.put", 1.0, target="daily")
    await store.put_schedule(schedule(tz="Europe/Madrid", at_hour=7), audit=entry)
    await store.put_schedule(schedule("weekly", period=Period.WEEKLY))
    await store.mark_sent("daily", "2026-12-05")
    await store.put_schedule(schedule(tz="UTC"))
    found = await store.list_schedules()
    assert [(s.id, s.body.tz, s.last_period) for s in found] == [
        ("daily", "UTC", "2026-12-05"),
        ("weekly", "UTC", None),
    ]
    assert await store.delete_schedule("weekly") is True
    assert await store.delete_schedule("weekly") is False
    assert [s.id for s in await store.list_schedules()] == ["daily"]

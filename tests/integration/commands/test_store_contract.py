"""One contract for every commands store backend: in memory, SQLite and PostgreSQL."""

import pytest

from commands import (
    Command,
    CommandQuery,
    CommandState,
    Job,
    JobSelector,
    JobState,
    MemoryCommandStore,
    SqlCommandStore,
    Transition,
)
from kernel import PostgresDatabase, Sql, SqliteDatabase, StoreError, VehicleIds, VehiclePartitions, partition_of
from security import AuditEntry

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    if request.param == "memory":
        async with MemoryCommandStore() as memory:
            yield memory
        return
    if request.param == "sqlite":
        # The database applies the migrations that create the commands tables when it opens.
        async with SqliteDatabase(f"sqlite:///{tmp_path}/hub.db") as db, SqlCommandStore(db) as sqlite:
            yield sqlite
        return
    url = request.getfixturevalue("pg_url")
    async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, SqlCommandStore(db) as pg:
        yield pg


def command(cid: str, *, vehicle="v1", at=100.0, state=CommandState.QUEUED, **kw) -> Command:
    return Command(
        id=cid,
        vehicle_id=vehicle,
        name=kw.pop("name", "unlock"),
        state=state,
        created_at=at,
        expires_at=at + 60,
        updated_at=at,
        args=kw.pop("args", {"why": "renter"}),
        history=[Transition(CommandState.QUEUED, at)],
        **kw,
    )


def job(jid: str, *, at=100.0, state=JobState.RUNNING) -> Job:
    return Job(
        id=jid,
        name="set_charge_limit",
        selector=JobSelector(fleet="default", tags={"depot": "north"}),
        rate=5.0,
        ttl_s=60.0,
        state=state,
        created_at=at,
        updated_at=at,
        targets=["v1", "v2"],
        args={"limit": 80},
    )


async def test_commands_round_trip_and_replace(store):
    """A command is stored whole and replaced by id, its history and result included."""
    first = command("c1", precondition="speed == 0", idempotency_key="k1", requested_by="maria", source="10.0.0.1")
    await store.write([first])
    assert await store.get("c1") == first
    first.move(CommandState.SENT, 101.0)
    first.attempts = 1
    first.move(CommandState.SUCCEEDED, 102.0, "unlocked")
    first.result = {"doors": "unlocked"}
    await store.write([first])
    assert await store.get("c1") == first
    assert await store.get("nope") is None


async def test_idempotency_key_finds_the_command(store):
    """The key is looked up per vehicle."""
    await store.write([command("c1", idempotency_key="k1"), command("c2", vehicle="v2", idempotency_key="k1")])
    found = await store.by_key("v1", "k1")
    assert found is not None
    assert found.id == "c1"
    assert (await store.by_key("v2", "k1")).id == "c2"
    assert await store.by_key("v3", "k1") is None


async def test_query_filters_newest_first_and_pages(store):
    """Queries filter by vehicle, job, state, name and time, newest first, paged by the last id."""
    await store.write(
        [
            command("c1", at=100.0),
            command("c2", at=200.0, state=CommandState.SENT, job_id="j1"),
            command("c3", at=300.0, name="lock"),
            command("c4", at=300.0, vehicle="v2", job_id="j1"),
            command("c5", at=400.0, state=CommandState.EXPIRED),
        ]
    )
    ids = lambda found: [c.id for c in found]  # noqa: E731
    assert ids(await store.query(CommandQuery(vehicle_id="v1"))) == ["c5", "c3", "c2", "c1"]
    assert ids(await store.query(CommandQuery())) == ["c5", "c4", "c3", "c2", "c1"]
    assert ids(await store.query(CommandQuery(job_id="j1"))) == ["c4", "c2"]
    assert await store.count_states("j1") == {CommandState.SENT: 1, CommandState.QUEUED: 1}
    assert await store.count_states("j2") == {}
    assert ids(await store.query(CommandQuery(states=(CommandState.SENT, CommandState.EXPIRED)))) == ["c5", "c2"]
    assert ids(await store.query(CommandQuery(name="lock"))) == ["c3"]
    assert ids(await store.query(CommandQuery(since=200.0, until=400.0))) == ["c4", "c3", "c2"]
    page = await store.query(CommandQuery(limit=2))
    assert ids(page) == ["c5", "c4"]
    assert ids(await store.query(CommandQuery(limit=2, before="c4"))) == ["c3", "c2"]
    assert ids(await store.query(CommandQuery(limit=2, before="c1"))) == []


async def test_open_commands_are_queued_and_sent_oldest_first(store):
    """A starting hub loads exactly the commands still waiting, in creation order."""
    await store.write(
        [
            command("c3", at=300.0, state=CommandState.SENT),
            command("c1", at=100.0),
            command("c2", at=200.0, state=CommandState.CANCELLED),
            command("c4", at=400.0, state=CommandState.SUCCEEDED),
        ]
    )
    assert [c.id for c in await store.open_commands()] == ["c1", "c3"]


async def test_open_commands_of_some_partitions(store):
    """A worker taking partitions over loads the waiting commands of their vehicles only, oldest first."""
    vids = [f"veh-{n}" for n in range(24)]
    await store.write([command(f"c{n:02d}", vehicle=v, at=100.0 + n) for n, v in enumerate(vids)])
    chosen = VehiclePartitions(frozenset({0, 2}), 4)
    expected = [f"c{n:02d}" for n, v in enumerate(vids) if partition_of(v, 4) in {0, 2}]
    assert 0 < len(expected) < len(vids)
    assert [c.id for c in await store.open_commands(chosen)] == expected


async def test_open_commands_of_some_vehicles(store):
    """An owner rebuilding vehicles changed elsewhere loads the waiting commands of those vehicles only."""
    vids = [f"veh-{n}" for n in range(12)]
    await store.write([command(f"c{n:02d}", vehicle=v, at=100.0 + n) for n, v in enumerate(vids)])
    await store.write([command("c99", vehicle="veh-3", at=50.0, state=CommandState.SUCCEEDED)])
    chosen = VehicleIds(frozenset({"veh-3", "veh-10", "absent"}))
    assert [c.id for c in await store.open_commands(chosen)] == ["c03", "c10"]
    assert await store.open_commands(VehicleIds(frozenset())) == []


async def test_jobs_round_trip_with_commands_in_one_write(store):
    """Jobs and commands land in one write; jobs list newest first; open jobs are running or paused."""
    j1, j2, j3 = job("j1", at=100.0), job("j2", at=200.0, state=JobState.PAUSED), job("j3", at=300.0)
    j3.move(JobState.COMPLETED, 310.0)
    j1.dispatched = 1
    await store.write([command("c1", job_id="j1")], [j1, j2, j3])
    assert await store.get_job("j1") == j1
    assert (await store.get("c1")).job_id == "j1"
    assert [j.id for j in await store.jobs()] == ["j3", "j2", "j1"]
    assert [j.id for j in await store.jobs(limit=1, before="j3")] == ["j2"]
    assert [j.id for j in await store.open_jobs()] == ["j1", "j2"]
    assert await store.get_job("nope") is None


async def _audit_ids(store) -> set[str]:
    if isinstance(store, MemoryCommandStore):
        return {e.id for e in store.audit}
    return {row[0] for row in await Sql(store.db).fetch("SELECT id FROM audit_log")}


def _entry(entry_id: str) -> AuditEntry:
    return AuditEntry(entry_id, 100.0, "olga", "command.send", "127.0.0.1:1", vehicle_id="v1", detail={"name": "x"})


async def test_a_write_and_its_audit_entries_commit_together(store):
    """Commands and jobs are stored with the entries recording them; a refused entry undoes the whole write."""
    await store.write([command("c1")], [job("j1")], [_entry("e1"), _entry("e2")])
    assert await _audit_ids(store) == {"e1", "e2"}
    with pytest.raises(StoreError):
        await store.write([command("c2")], [job("j2")], [_entry("e3"), _entry("e1")])
    assert await store.get("c2") is None
    assert await store.get_job("j2") is None
    assert await store.get("c1") is not None
    assert await _audit_ids(store) == {"e1", "e2"}


async def test_change_writes_only_over_the_state_read(store):
    """A node that does not hold the vehicle's commands cancels one only while it is in the state it read."""
    await store.write([command("c1")])
    cancelled = command("c1", state=CommandState.CANCELLED)
    assert await store.change(cancelled, CommandState.SENT, audit=_entry("e1")) is False
    assert (await store.get("c1")).state is CommandState.QUEUED
    assert await _audit_ids(store) == set()
    assert await store.change(cancelled, CommandState.QUEUED, audit=_entry("e1")) is True
    assert (await store.get("c1")).state is CommandState.CANCELLED
    assert await _audit_ids(store) == {"e1"}
    assert await store.change(command("nope", state=CommandState.CANCELLED), CommandState.QUEUED) is False


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_closed_command_is_never_written_over(store):
    """The owner sending a command that another node cancelled meanwhile does not reopen it."""
    await store.write([command("c1", state=CommandState.CANCELLED)])
    await store.write([command("c1", state=CommandState.SENT)])
    assert (await store.get("c1")).state is CommandState.CANCELLED

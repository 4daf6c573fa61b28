"""Partition leases and the fence on a real PostgreSQL: fair shares, takeover, a stale owner refused;
a worker's takeover and rebuilds done again after a failure."""

import asyncio
import contextlib
from collections.abc import Callable

import psycopg
import pytest

from cluster import PARTITION_SQL, Leases, fence_of, install, partition_of
from cluster.settings import ClusterSettings
from cluster.worker import ClusterWorker
from commands import Command, CommandService, CommandsSettings, MemoryCommandStore
from kernel import Fenced, PostgresDatabase, VehicleSet, is_fenced
from tests.helpers import eventually
from tests.unit.commands.test_service import Twins
from twin import MemoryStore, TwinService

pytestmark = pytest.mark.postgres

K = 8


def vehicle_in(partition: int) -> str:
    """A vehicle id whose partition is `partition`."""
    n = 0
    while partition_of(f"veh-{n}", K) != partition:
        n += 1
    return f"veh-{n}"


async def _twin_write(db: PostgresDatabase, vid: str) -> None:
    async with db.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO twins (vehicle_id, fleet, version, connected, last_seen, created_at, updated_at, tags, state) "
            "VALUES (%s, 'default', 1, false, now(), now(), now(), '{}', '{}') "
            "ON CONFLICT (vehicle_id) DO UPDATE SET version = twins.version + 1",
            (vid,),
        )


async def test_partition_hash_matches_sql(pg_url: str) -> None:
    """Python and the fence trigger put every vehicle in the same partition."""
    ids = [f"veh-{n}" for n in range(200)] + ["a", "Z.z-_9", "x" * 64]
    with psycopg.connect(pg_url) as conn:
        part = PARTITION_SQL.format(vid="v", k="%s")
        sql = f"SELECT {part} FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n"
        rows = conn.execute(sql.encode(), (K, ids)).fetchall()
    assert [r[0] for r in rows] == [partition_of(v, K) for v in ids]


async def test_two_workers_split_and_a_leaver_hands_over(pg_url: str) -> None:
    """Two live workers hold half each; when one leaves, the other takes everything with new tokens."""
    async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=2) as db:
        async with db.connection() as conn:
            assert await install(conn, K) == K
        a = Leases(db, "a", partitions=K, lease_s=5)
        b = Leases(db, "b", partitions=K, lease_s=5)
        held_a = (await a.step({})).held
        assert len(held_a) == K  # alone, a takes every partition
        held_b = (await b.step({})).held
        assert held_b == {}  # nothing free yet: a has not given anything back
        change = await a.step(held_a)
        assert len(change.held) == K // 2
        assert len(change.lost) == K // 2
        held_a = change.held
        held_b = (await b.step(held_b)).held
        assert len(held_b) == K // 2
        assert set(held_a).isdisjoint(held_b)
        await a.leave(held_a)
        change = await b.step(held_b)
        assert set(change.held) == set(range(K))
        # Taking a partition raises its token: a's old tokens are all stale now.
        assert all(change.held[p] > held_a[p] for p in held_a)


async def test_a_stale_owner_writes_nothing(pg_url: str) -> None:
    """A worker whose lease expired and was taken over is refused by the fence; the new owner writes."""
    async with (
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=2) as old_db,
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=2) as new_db,
    ):
        async with old_db.connection() as conn:
            await install(conn, K)
        old = Leases(old_db, "old", partitions=K, lease_s=0.5)
        new = Leases(new_db, "new", partitions=K, lease_s=5)
        held_old = (await old.step({})).held
        old_db.set_fence(fence_of("old", K, held_old))
        vid = vehicle_in(3)
        await _twin_write(old_db, vid)  # positive control: the owner writes
        await asyncio.sleep(0.7)  # old's lease runs out while it is "paused"
        held_new = (await new.step({})).held
        assert 3 in held_new
        new_db.set_fence(fence_of("new", K, held_new))
        with pytest.raises(Fenced) as refused:
            await _twin_write(old_db, vid)
        assert is_fenced(refused.value)
        assert "partition 3" in str(refused.value)
        await _twin_write(new_db, vid)
        async with new_db.connection() as conn:
            cur = await conn.execute("SELECT version FROM twins WHERE vehicle_id = %s", (vid,))
            assert (await cur.fetchone()) == (2,)


async def test_unfenced_connections_and_a_worker_without_the_partition(pg_url: str) -> None:
    """Connections without a fence (the embedded hub) write freely; a worker writes only its own partitions."""
    async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=2) as db:
        async with db.connection() as conn:
            await install(conn, K)
        await _twin_write(db, vehicle_in(1))
        db.set_fence(fence_of("w", K, {}))
        with pytest.raises(Fenced):
            await _twin_write(db, vehicle_in(1))
        held = (await Leases(db, "w", partitions=K, lease_s=5).step({})).held
        db.set_fence(fence_of("w", K, held))
        await _twin_write(db, vehicle_in(1))


class _FailsOnce:
    """A part of the hub whose first rebuild fails, as a store read that raises would."""

    def __init__(self) -> None:
        self.adopted = 0

    async def adopt(self, vehicle: Callable[[str], bool]) -> None:
        self.adopted += 1
        if self.adopted == 1:
            raise RuntimeError("store read failed")

    def release(self, vehicle: Callable[[str], bool]) -> None:
        pass


async def test_a_takeover_that_failed_is_done_again_at_the_next_heartbeat(pg_url: str) -> None:
    """Partitions whose takeover raised are held but not ready; the next heartbeat takes them over again."""
    async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=2) as db:
        async with db.connection() as conn:
            await install(conn, K)
        worker = ClusterWorker(ClusterSettings(worker_id="w", partitions=K), db, TwinService(MemoryStore()))
        listener = _FailsOnce()
        worker.listeners.append(listener)
        with pytest.raises(RuntimeError):
            await worker._heartbeat_once()
        assert set(worker.ownership.tokens) == set(range(K))
        assert worker.ready == set()
        await worker._heartbeat_once()  # renews the same leases: nothing newly gained
        assert worker.ready == set(range(K))
        assert listener.adopted == 2
        await worker.leases.leave(worker.ownership.tokens)


class _OpenCommandsFailOnce(MemoryCommandStore):
    """A command store whose next read of open commands, once armed, fails (the database went away)."""

    armed = False
    failures = 0

    async def open_commands(self, vehicles: VehicleSet | None = None) -> list[Command]:
        if self.armed:
            self.armed = False
            self.failures += 1
            raise ConnectionError("store connection lost")
        return await super().open_commands(vehicles)


async def test_a_command_queued_elsewhere_is_taken_up_after_a_failed_rebuild(pg_url: str) -> None:
    """The owner's rebuild after NOTIFY fails once; it is done again, so the command is held here."""
    async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=2) as db:
        async with db.connection() as conn:
            await install(conn, K)
        store = _OpenCommandsFailOnce()
        commands = CommandService(store, Twins("v1"), settings=CommandsSettings())
        elsewhere = CommandService(store, Twins("v1"), settings=CommandsSettings())
        elsewhere.owns = set[str]().__contains__
        for service in (commands, elsewhere):
            await service.load()
        worker = ClusterWorker(ClusterSettings(worker_id="w", partitions=K), db, TwinService(MemoryStore()))
        worker.commands = commands
        commands.owns = worker.ownership.owns
        await worker._heartbeat_once()
        command, _ = await elsewhere.create("v1", "unlock")
        assert commands._open.of_vehicle("v1") == []  # not told yet
        store.armed = True
        task = asyncio.get_running_loop().create_task(worker._adopt_notified())

        async def held() -> bool:
            return [c.id for c in commands._open.of_vehicle("v1")] == [command.id]

        try:
            worker._noted("commands other-worker v1")  # what NOTIFY fleethub_cluster brings
            await eventually(held, wait_s=10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await worker.leases.leave(worker.ownership.tokens)
        assert store.failures == 1

"""The console's live relay on a real PostgreSQL: announcements chunked per commit, coalesced per tick, bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

import msgspec
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from psycopg import sql

from cluster import EventAnnouncer, Leases, ListenMetrics, LiveRelay, fence_of, install
from cluster.announce import IDS_PER_NOTICE, MAX_NOTICE_BYTES, Notice, channel_of
from kernel import PostgresDatabase
from twin import PostgresStore, TwinState, TwinUpdate

pytestmark = pytest.mark.postgres

K = 4


class Recorder:
    """A live sink that keeps what it was given."""

    def __init__(self) -> None:
        self.updates: list[list[TwinUpdate]] = []
        self.events: list[tuple[str, bytes]] = []
        self.resyncs = 0
        self.open_alerts: list[list[tuple[str, str, str]]] = []
        self.removed: list[str] = []
        # What the feed shows: every vehicle given, less those removed.
        self.shown: set[str] = set()

    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        self.updates.append(list(updates))
        self.shown.update(u.vehicle_id for u in updates)

    def twins_removed(self, vehicle_ids: Iterable[str]) -> None:
        self.removed.extend(sorted(vehicle_ids))
        self.shown.difference_update(self.removed)

    def vehicle_ids(self) -> set[str]:
        return set(self.shown)

    def hub_message(self, topic: str, payload: bytes) -> None:
        self.events.append((topic, payload))

    def resync(self) -> None:
        self.resyncs += 1

    def reload_alerts(self, open_alerts: Iterable[tuple[str, str, str]]) -> None:
        self.open_alerts.append(list(open_alerts))

    def vehicles(self) -> list[str]:
        return [u.vehicle_id for batch in self.updates for u in batch]


def _twin(vid: str, version: int) -> TwinState:
    now = time.time()
    return TwinState(vehicle_id=vid, created_at=now, updated_at=now, version=version)


async def _eventually(check: Callable[[], bool], what: str, wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {wait_s} s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def worker(pg_url: str) -> AsyncIterator[tuple[PostgresDatabase, PostgresStore]]:
    """A database and twin store whose connections carry worker w1's fence over every partition."""
    async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db, PostgresStore(db) as store:
        async with db.connection() as conn:
            await install(conn, K)
        held = (await Leases(db, "w1", partitions=K, lease_s=60).step({})).held
        db.set_fence(fence_of("w1", K, held))
        yield db, store


async def _listener(url: str) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(await channel_of(conn))))
    return conn


async def _notices(conn: psycopg.AsyncConnection, until: Callable[[list[Notice]], bool]) -> list[Notice]:
    got: list[Notice] = []
    async with asyncio.timeout(10):
        async for note in conn.notifies():
            assert len(note.payload.encode()) <= MAX_NOTICE_BYTES
            parsed = Notice.parse(note.payload)
            assert parsed is not None
            got.append(parsed)
            if until(got):
                return got
    return got


async def test_a_commit_announces_its_twins_in_chunks_and_only_with_a_fence(
    pg_url: str, worker: tuple[PostgresDatabase, PostgresStore]
) -> None:
    """One batch of 250 twins: three notices of at most 100 ids, naming the writer; unfenced writes say nothing."""
    _, store = worker
    listen = await _listener(pg_url)
    try:
        # Written without a fence (the embedded hub, tools): no announcement.
        async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=1) as plain, PostgresStore(plain) as bare:
            await bare.write_batch([_twin("plain-1", 1)], [])
        ids = [f"veh-{n:03d}" for n in range(250)]
        await store.write_batch([_twin(v, 1) for v in ids], [])
        got = await _notices(listen, lambda g: sum(len(n.body.split()) for n in g) >= 250)
        assert [n.kind for n in got] == ["t", "t", "t"]
        assert {n.writer for n in got} == {"w1"}
        assert [len(n.body.split()) for n in got] == [IDS_PER_NOTICE, IDS_PER_NOTICE, 50]
        assert sorted(v for n in got for v in n.body.split()) == ids  # "plain-1" is not among them
        # An upsert that updates 250 and creates one: announced once per kind of row, in the same commit.
        await store.write_batch([_twin(v, 2) for v in [*ids, "veh-new"]], [])
        got = await _notices(listen, lambda g: sum(len(n.body.split()) for n in g) >= 251)
        assert sorted(v for n in got for v in n.body.split()) == sorted([*ids, "veh-new"])
        assert len(got) == 4
    finally:
        await listen.close()


async def test_the_relay_coalesces_a_burst_into_one_read_per_tick_and_skips_its_own(
    pg_url: str, worker: tuple[PostgresDatabase, PostgresStore]
) -> None:
    """Three commits naming overlapping vehicles are read once each, in batches of live_read_batch, at the tick."""
    db, store = worker
    other, own = Recorder(), Recorder()
    relay = LiveRelay(db, store, other, writer="api-1", interval_s=3600, max_pending=1000, read_batch=4)
    mine = LiveRelay(db, store, own, writer="w1", interval_s=3600, max_pending=1000, read_batch=4)
    async with relay, mine:
        await asyncio.wait_for(relay.connected.wait(), 10)
        await asyncio.wait_for(mine.connected.wait(), 10)
        await relay.tick()  # the start's full read (nothing stored yet)
        await mine.tick()
        assert other.resyncs == 1
        await store.write_batch([_twin(f"car-{n}", 1) for n in range(6)], [])
        await store.write_batch([_twin(f"car-{n}", 2) for n in range(3, 9)], [])
        await store.write_batch([_twin(f"car-{n}", 3) for n in range(6, 10)], [])
        await _eventually(lambda: len(relay.pending) == 10, "every announced vehicle pending")
        # A positive control for the node's own relay: the same announcements reached the database.
        assert own.updates == []
        assert mine.pending == set()
        await relay.tick()
        assert sorted(other.vehicles()) == sorted(f"car-{n}" for n in range(10))
        assert [len(batch) for batch in other.updates] == [4, 4, 2]
        versions = {u.vehicle_id: u.state.version for batch in other.updates for u in batch}
        assert versions["car-0"] == 1
        assert versions["car-5"] == 2
        assert versions["car-9"] == 3
        assert relay.pending == set()
        await relay.tick()  # nothing new: nothing read
        assert len(other.updates) == 3


async def test_beyond_the_cap_the_relay_rereads_every_twin_instead(
    pg_url: str, worker: tuple[PostgresDatabase, PostgresStore]
) -> None:
    """More vehicles pending than live_max_pending: the set is dropped, the next tick reads every twin and resyncs."""
    db, store = worker
    sink = Recorder()
    relay = LiveRelay(db, store, sink, writer="api-1", interval_s=3600, max_pending=5, read_batch=3)
    async with relay:
        await asyncio.wait_for(relay.connected.wait(), 10)
        await relay.tick()
        resyncs = sink.resyncs
        await store.write_batch([_twin(f"bus-{n}", 1) for n in range(4)], [])
        await _eventually(lambda: len(relay.pending) == 4, "four vehicles pending")
        await store.write_batch([_twin(f"bus-{n}", 1) for n in range(4, 8)], [])
        await _eventually(lambda: relay.reload, "the relay gave up the list")
        assert relay.pending == set()
        await relay.tick()
        assert sorted(sink.vehicles()) == sorted(f"bus-{n}" for n in range(8))
        assert sink.resyncs == resyncs + 1


async def test_after_losing_its_listen_connection_the_relay_rereads_what_it_missed(
    pg_url: str, worker: tuple[PostgresDatabase, PostgresStore]
) -> None:
    """The LISTEN connection is killed (as by a PostgreSQL restart): it reconnects, re-reads twins and open alerts."""
    db, store = worker
    sink = Recorder()
    open_now = [("al-1", "tram-1", "major")]

    async def open_alerts() -> list[tuple[str, str, str]]:
        return list(open_now)

    metrics = ListenMetrics(CollectorRegistry())
    relay = LiveRelay(
        db,
        store,
        sink,
        writer="api-1",
        interval_s=3600,
        max_pending=100,
        read_batch=100,
        open_alerts=open_alerts,
        metrics=metrics,
    )
    async with relay:
        await asyncio.wait_for(relay.connected.wait(), 10)
        await relay.tick()
        assert sink.open_alerts == [open_now]
        status = relay.status()
        assert (status["listening"], status["reconnects"], status["pending_vehicles"]) == (True, 0, 0)
        assert status["since"] is not None
        async with db.connection() as conn:
            channel = await channel_of(conn)
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                (f'LISTEN "{channel}"',),
            )
        await _eventually(lambda: not relay.connected.is_set(), "the relay saw its connection go")
        # What /healthz shows while it reconnects (as long as the first backoff lasts).
        down = relay.status()
        assert down["listening"] is False
        assert down["last_error"]
        # Committed while nobody listened: no announcement reaches the relay.
        await store.write_batch([_twin("tram-1", 7)], [])
        await asyncio.wait_for(relay.connected.wait(), 10)
        assert relay.reload
        assert relay.status()["reload_pending"] is True
        assert (relay.status()["listening"], relay.status()["reconnects"]) == (True, 1)
        assert metrics.listening.labels("live")._value.get() == 1
        assert metrics.reconnects.labels("live")._value.get() == 1
        await relay.tick()
        assert "tram-1" in sink.vehicles()
        assert sink.open_alerts == [open_now, open_now]


async def test_events_reach_other_nodes_inline_or_by_reference_in_order(
    pg_url: str, worker: tuple[PostgresDatabase, PostgresStore]
) -> None:
    """Small events travel in the notification, large ones through cluster_live_events; order and topics kept."""
    db, store = worker
    sink, own = Recorder(), Recorder()
    relay = LiveRelay(db, store, sink, writer="api-1", interval_s=3600, max_pending=100, read_batch=100)
    mine = LiveRelay(db, store, own, writer="w1", interval_s=3600, max_pending=100, read_batch=100)
    announcer = EventAnnouncer(db, "w1", max_queued=2)
    async with relay, mine:
        await asyncio.wait_for(relay.connected.wait(), 10)
        await asyncio.wait_for(mine.connected.wait(), 10)
        small = msgspec.json.encode({"id": "a1", "vehicle_id": "veh-1", "state": "active", "fleet": "default"})
        large = msgspec.json.encode({"id": "c1", "vehicle_id": "veh-1", "result": {"log": "x" * 9000}})
        announcer.offer("alerts/default/major/low-battery/veh-1", small)
        announcer.offer("events/commands/veh-1/c1", large)
        announcer.offer("vehicles/veh-1/twin/delta", b"{}")  # not a console event: not announced
        await announcer.send_once()
        await _eventually(lambda: len(sink.events) == 2, "both events heard")
        assert sink.events == [("alerts/default/major/low-battery/veh-1", small), ("events/commands/veh-1/c1", large)]
        # Beyond live_events_max the rest is dropped and the others are told to reload.
        for n in range(3):
            announcer.offer(f"alerts/default/info/r/veh-{n}", small)
        await announcer.send_once()
        await _eventually(lambda: sink.resyncs == 1 and len(sink.events) == 4, "a resync and two more events")
        assert own.events == []
        assert own.resyncs == 0


async def test_the_relay_listens_again_after_a_postgresql_restart(pg_instance) -> None:
    """A real server restart: the relay reconnects by itself, re-reads the twins and open alerts, and hears again."""
    async with PostgresDatabase(pg_instance.url, pool_min_size=1, pool_max_size=2) as db, PostgresStore(db) as store:
        async with db.connection() as conn:
            await install(conn, K)
        held = (await Leases(db, "w1", partitions=K, lease_s=600).step({})).held
        db.set_fence(fence_of("w1", K, held))
        sink = Recorder()

        async def open_alerts() -> list[tuple[str, str, str]]:
            return []

        relay = LiveRelay(
            db, store, sink, writer="api-1", interval_s=3600, max_pending=100, read_batch=100, open_alerts=open_alerts
        )
        async with relay:
            await asyncio.wait_for(relay.connected.wait(), 10)
            await relay.tick()
            await asyncio.to_thread(pg_instance.stop)
            await _eventually(lambda: not relay.connected.is_set(), "the relay saw the server go")
            await asyncio.to_thread(pg_instance.start)
            await asyncio.wait_for(relay.connected.wait(), 30)
            await relay.tick()
            assert len(sink.open_alerts) == 2  # at start and after the restart
            # Listening again: a commit after the restart is announced and read at the next tick.
            deadline = time.monotonic() + 30
            while True:
                try:
                    await store.write_batch([_twin("ferry-1", 1)], [])
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            await _eventually(lambda: relay.pending == {"ferry-1"}, "the commit after the restart announced")
            await relay.tick()
            assert sink.vehicles()[-1] == "ferry-1"


async def test_deleted_twins_leave_the_feed_whoever_deletes_them_and_when_missed_at_the_next_reread(
    pg_url: str, worker: tuple[PostgresDatabase, PostgresStore]
) -> None:
    """A DELETE without a fence is announced and removed at once; one deleted while not listening, at the re-read."""
    db, store = worker
    sink = Recorder()
    relay = LiveRelay(db, store, sink, writer="api-1", interval_s=3600, max_pending=100, read_batch=2)
    async with relay:
        await asyncio.wait_for(relay.connected.wait(), 10)
        await relay.tick()  # the start's full read (nothing stored yet)
        await store.write_batch([_twin(f"bus-{n}", 1) for n in range(5)], [])
        await _eventually(lambda: len(relay.pending) == 5, "the twins announced")
        await relay.tick()
        assert sink.shown == {f"bus-{n}" for n in range(5)}
        # As an operator would, in psql: no fence on this connection.
        async with PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=1) as plain, plain.connection() as conn:
            await conn.execute("DELETE FROM twins WHERE vehicle_id IN ('bus-1', 'bus-2')")
        await _eventually(lambda: sink.removed == ["bus-1", "bus-2"], "the deletion heard")
        # Deleted while the LISTEN connection is down: not heard, found missing by the re-read.
        async with db.connection() as conn:
            channel = await channel_of(conn)
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s", (f'LISTEN "{channel}"',)
            )
        await _eventually(lambda: not relay.connected.is_set(), "the relay saw its connection go")
        async with db.connection() as conn:
            await conn.execute("DELETE FROM twins WHERE vehicle_id = 'bus-4'")
        await asyncio.wait_for(relay.connected.wait(), 10)
        assert sink.removed == ["bus-1", "bus-2"]
        await relay.tick()
        assert sink.removed == ["bus-1", "bus-2", "bus-4"]
        assert sink.shown == {"bus-0", "bus-3"}
        # Announced as changed but gone by the time the tick reads it (its deletion notice not heard).
        await relay.heard("t\nw9\nbus-0 bus-gone")
        await relay.tick()
        assert sink.removed == ["bus-1", "bus-2", "bus-4", "bus-gone"]
        assert sink.shown == {"bus-0", "bus-3"}

"""The broker store's group-commit writer, over the in-memory store."""

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from broker.stores import (
    BrokerStoreMetrics,
    Dropped,
    Enqueue,
    Expired,
    MemoryBrokerStore,
    Message,
    PutSession,
    Queued,
    QueueLimits,
    Retain,
    SessionRecord,
    StoreBusy,
    StoreWriter,
    WriterSettings,
)
from kernel import StoreError

NOW = 1_000_000.0


def session(client_id: str, expires_at: float | None = None) -> PutSession:
    return PutSession(SessionRecord(client_id, 5, 60, expires_at))


def enqueue(client_id: str, seq: int) -> Enqueue:
    return Enqueue(client_id, Queued(seq, Message("t", b"x", 1)))


class FlakyStore(MemoryBrokerStore):
    """The memory store, unreachable for the next `outages` commits, counting the commits it takes."""

    def __init__(self, limits: QueueLimits | None = None) -> None:
        super().__init__(limits)
        self.outages = 0
        self.batches: list[int] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.sweeps = 0

    async def apply(self, changes):
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.outages:
            self.outages -= 1
            raise StoreError("database is locked")
        self.batches.append(len(changes))
        return await super().apply(changes)

    async def expire(self, now):
        self.sweeps += 1
        return await super().expire(now)


async def test_packets_that_arrive_during_a_commit_share_the_next_one():
    """Changes gathered while a commit runs go together in one transaction, and each caller hears when it is durable."""
    store = FlakyStore()
    store.gate = asyncio.Event()
    async with StoreWriter(store) as writer:
        first = writer.put([session("c1")])
        await store.entered.wait()
        # The first commit is held at the gate; these three gather behind it.
        rest = [writer.put([enqueue("c1", n)]) for n in (1, 2, 3)]
        assert writer.pending == 4
        store.gate.set()
        await asyncio.gather(first, *rest)
        assert store.batches == [1, 3]
        assert [q.seq for q in (await store.load(NOW)).sessions[0].queue] == [1, 2, 3]


async def test_an_unreachable_database_is_retried_while_callers_wait():
    """A StoreError keeps the batch and retries it; its callers are told only once it is committed."""
    store = FlakyStore()
    store.outages = 2
    registry = CollectorRegistry()
    async with StoreWriter(store, WriterSettings(retry_max_s=0.05), metrics=BrokerStoreMetrics(registry)) as writer:
        await writer.write([session("c1"), enqueue("c1", 1)])
    assert store.batches == [2]
    assert registry.get_sample_value("fleethub_mqtt_store_commit_failures_total") == 2
    assert registry.get_sample_value("fleethub_mqtt_store_commits_total") == 1
    assert registry.get_sample_value("fleethub_mqtt_store_changes_total") == 2


async def test_a_refused_batch_fails_only_its_callers():
    """A batch the store refuses raises to the callers of that commit; the writer goes on with the next."""
    store = FlakyStore()
    async with StoreWriter(store) as writer:
        with pytest.raises(AssertionError):
            await writer.write([session("bad"), object()])
        await writer.write([session("good")])
    assert [s.record.client_id for s in (await store.load(NOW)).sessions] == ["good"]


async def test_a_bad_packet_in_a_group_fails_alone():
    """When a group commit is refused, its packets are committed apart: only the one at fault gets the error."""
    store = FlakyStore()
    store.gate = asyncio.Event()
    async with StoreWriter(store) as writer:
        first = writer.put([session("c1")])
        await store.entered.wait()
        good_before = writer.put([enqueue("c1", 1)])
        bad = writer.put([enqueue("c1", 2), object()])
        good_after = writer.put([enqueue("c1", 3)])
        store.gate.set()
        await asyncio.gather(first, good_before, good_after)
        with pytest.raises(AssertionError):
            await bad
    assert [q.seq for q in (await store.load(NOW)).sessions[0].queue] == [1, 3]


async def test_pending_changes_are_bounded():
    """Beyond max_pending, put raises StoreBusy and write waits for room; both go through once commits free it."""
    store = FlakyStore()
    store.gate = asyncio.Event()
    async with StoreWriter(store, WriterSettings(max_pending=2)) as writer:
        # The commit under way counts: c1's session, then one message, fill the two places.
        held = writer.put([session("c1")])
        await store.entered.wait()
        waiting = [writer.put([enqueue("c1", 1)])]
        with pytest.raises(StoreBusy):
            writer.put([enqueue("c1", 3)])
        blocked = asyncio.create_task(writer.write([enqueue("c1", 4)]))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        store.gate.set()
        await asyncio.gather(held, *waiting, blocked)
    assert [q.seq for q in (await store.load(NOW)).sessions[0].queue] == [1, 4]


async def test_batches_stay_within_batch_max_without_splitting_a_packet():
    """A commit takes whole packets up to batch_max changes."""
    store = FlakyStore()
    store.gate = asyncio.Event()
    async with StoreWriter(store, WriterSettings(batch_max=3)) as writer:
        first = writer.put([session("c1")])
        await store.entered.wait()
        rest = [writer.put([enqueue("c1", 1), enqueue("c1", 2)]), writer.put([enqueue("c1", 3), enqueue("c1", 4)])]
        rest.append(writer.put([enqueue("c1", n) for n in range(5, 10)]))
        store.gate.set()
        await asyncio.gather(first, *rest)
    assert store.batches == [1, 2, 2, 5]


async def test_drops_and_expiry_are_reported():
    """Queued messages dropped for the limits reach on_dropped; the sweep's removals reach on_expired and the gauges."""
    dropped: list[list[Dropped]] = []
    expired: list[Expired] = []
    registry = CollectorRegistry()
    clock = [NOW]
    store = MemoryBrokerStore(QueueLimits(max_messages=1))
    settings = WriterSettings(sweep_interval_s=0.01)
    async with StoreWriter(
        store,
        settings,
        metrics=BrokerStoreMetrics(registry),
        on_dropped=dropped.append,
        on_expired=expired.append,
        clock=lambda: clock[0],
    ) as writer:
        await writer.write([session("c1"), session("c2", expires_at=NOW + 1), enqueue("c1", 1), enqueue("c1", 2)])
        await writer.write([Retain(Message("r", b"1", 1, expires_at=NOW + 1))])
        clock[0] = NOW + 2
        for _ in range(500):
            if expired:
                break
            await asyncio.sleep(0.01)
    assert dropped == [[Dropped("c1", 1)]]
    assert expired[0] == Expired(sessions=["c2"], retained=1, queued=0)
    assert registry.get_sample_value("fleethub_mqtt_store_queued_dropped_total") == 1
    assert registry.get_sample_value("fleethub_mqtt_store_expired_sessions_total") == 1
    assert registry.get_sample_value("fleethub_mqtt_store_sessions") == 1
    assert registry.get_sample_value("fleethub_mqtt_store_queued_messages") == 1


async def test_closing_commits_what_is_pending_and_refuses_more():
    """On exit the writer commits what was handed to it; afterwards it takes nothing."""
    store = FlakyStore()
    async with StoreWriter(store) as writer:
        futures = [writer.put([session(f"c{n}")]) for n in range(5)]
    assert all(f.done() and f.exception() is None for f in futures)
    assert len((await store.load(NOW)).sessions) == 5
    with pytest.raises(StoreError):
        writer.put([session("late")])


async def test_commits_that_keep_failing_at_shutdown_are_given_up_after_the_timeout():
    """Database still down at shutdown: the writer stops after close_timeout_s; waiting callers get an error."""
    store = FlakyStore()
    store.outages = 10_000
    async with StoreWriter(store, WriterSettings(retry_max_s=0.01, close_timeout_s=0.2)) as writer:
        waiting = writer.put([session("c1")])
    with pytest.raises(StoreError):
        await waiting
    assert store.batches == []


async def test_the_sweep_runs_after_what_was_handed_over_before_it():
    """A client back before the sweep (its expiry cleared in a pending change) keeps its session and queue."""
    clock = [NOW]
    store = FlakyStore()
    settings = WriterSettings(sweep_interval_s=1.0, batch_max=1)
    async with StoreWriter(store, settings, clock=lambda: clock[0]) as writer:
        await writer.write([session("c1", expires_at=NOW + 0.5)])
        store.gate = asyncio.Event()
        store.entered.clear()
        held = writer.put([enqueue("c1", 1)])
        await store.entered.wait()
        # While that commit is held, the client comes back (no expiry) and the sweep falls due.
        back = writer.put([session("c1", expires_at=None)])
        clock[0] = NOW + 2
        store.gate.set()
        await asyncio.gather(held, back)
        for _ in range(500):
            if store.sweeps:
                break
            await asyncio.sleep(0.01)
        assert store.sweeps
    (kept,) = (await store.load(NOW + 2)).sessions
    assert (kept.record.expires_at, [q.seq for q in kept.queue]) == (None, [1])

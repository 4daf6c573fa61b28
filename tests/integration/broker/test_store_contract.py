"""One contract for every broker store backend: in memory, SQLite and PostgreSQL."""

import asyncio
import contextlib
import random

import pytest

from broker.stores import (
    NEVER_EXPIRES,
    AckInflight,
    ClearRetained,
    Dequeue,
    Dropped,
    DropSession,
    Enqueue,
    Inflight,
    InflightState,
    MemoryBrokerStore,
    Message,
    PostgresBrokerStore,
    PutIncoming,
    PutInflight,
    PutSession,
    Queued,
    QueueLimits,
    ReleaseIncoming,
    Retain,
    SessionRecord,
    SqliteBrokerStore,
    StoredSession,
    Subscribe,
    Subscription,
    Unsubscribe,
)
from kernel import PostgresDatabase, SqliteDatabase

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
NOW = 1_000_000.0


class Backend:
    """Opens stores on one backend's data; a store opened again sees what the last one committed."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self._memory: dict[QueueLimits, MemoryBrokerStore] = {}

    @contextlib.asynccontextmanager
    async def open(self, limits: QueueLimits | None = None):
        limits = limits or QueueLimits()
        if self.kind == "memory":
            # Nothing outlives a memory store: "reopening" hands back the same one.
            store = self._memory.setdefault(limits, MemoryBrokerStore(limits))
            async with store:
                yield store
            return
        if self.kind == "sqlite":
            async with SqliteDatabase(self.url) as db, SqliteBrokerStore(db, limits) as sqlite:
                yield sqlite
            return
        async with (
            PostgresDatabase(self.url, pool_min_size=1, pool_max_size=4) as db,
            PostgresBrokerStore(db, limits) as pg,
        ):
            yield pg


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Backend:
    if request.param == "postgresql":
        return Backend("postgresql", request.getfixturevalue("pg_url"))
    return Backend(request.param, f"sqlite:///{tmp_path}/hub.db")


@pytest.fixture
async def store(backend):
    async with backend.open() as opened:
        yield opened


def record(client_id: str, *, expires_at: float | None = None, version: int = 5, **kw) -> SessionRecord:
    return SessionRecord(
        client_id=client_id,
        protocol_version=version,
        expiry_interval_s=kw.pop("interval", 3600),
        expires_at=expires_at,
        username=kw.pop("username", "maria"),
        created_at=kw.pop("created_at", NOW - 10),
    )


def message(topic: str = "alerts/default/high/overheat/v1", payload: bytes = b'{"t": 91}', **kw) -> Message:
    return Message(topic=topic, payload=payload, qos=kw.pop("qos", 1), **kw)


def queued(seq: int, size: int = 10, **kw) -> Queued:
    # `size` counts topic, payload and properties: a one-letter topic leaves size - 1 for the payload.
    return Queued(seq, Message("t", b"x" * (size - 1), 1, **kw))


async def only(store, client_id: str) -> StoredSession:
    snapshot = await store.load(NOW)
    found = [s for s in snapshot.sessions if s.record.client_id == client_id]
    assert len(found) == 1, [s.record.client_id for s in snapshot.sessions]
    return found[0]


async def test_a_session_and_everything_it_holds_survive_reopening(backend):
    """Record, subscriptions with every option, queue, in-flight, incoming ids and retained messages come back whole."""
    props = b"\x03\x00\x10application/json&\x00\x04site\x00\x05north"
    sub_full = Subscription(
        "alerts/north/#", 2, no_local=True, retain_as_published=True, retain_handling=2, subscription_id=268_435_455
    )
    sub_plain = Subscription("alerts/+/high/#", 1)
    in_queue = [
        Queued(7, message(payload=b"\x00\xff binary", properties=props, expires_at=NOW + 60)),
        Queued(9, message(qos=2, retain=True)),
    ]
    in_flight = [
        Inflight(3, 17, InflightState.PUBLISH_SENT, message(qos=1)),
        Inflight(5, 65535, InflightState.PUBREL_SENT, message(qos=2, properties=props)),
    ]
    retained = message("fleet/north/status", b"open", qos=1, retain=True, properties=props, expires_at=NOW + 600)
    async with backend.open() as store:
        result = await store.apply(
            [
                PutSession(record("dash-1", expires_at=NOW + 3600, version=4)),
                Subscribe("dash-1", sub_full),
                Subscribe("dash-1", sub_plain),
                *(Enqueue("dash-1", q) for q in in_queue),
                *(PutInflight("dash-1", i) for i in in_flight),
                PutIncoming("dash-1", 42),
                PutIncoming("dash-1", 1),
                Retain(retained),
            ]
        )
        assert result.dropped == []
    async with backend.open() as reopened:
        snapshot = await reopened.load(NOW)
    assert snapshot.retained == [retained]
    assert snapshot.last_seq == 9
    assert snapshot.sessions == [
        StoredSession(
            record=record("dash-1", expires_at=NOW + 3600, version=4),
            subscriptions=[sub_plain, sub_full],
            queue=in_queue,
            inflight=in_flight,
            incoming=[1, 42],
        )
    ]


async def test_sessions_and_retained_load_in_code_point_order(store):
    """Sessions by client id and retained messages by topic, in code-point order on every backend."""
    ids = ["b", "B", "a-2", "a_1", "é", "Z"]
    await store.apply([PutSession(record(c)) for c in ids] + [Retain(message(t)) for t in ids])
    snapshot = await store.load(NOW)
    assert [s.record.client_id for s in snapshot.sessions] == sorted(ids)
    assert [m.topic for m in snapshot.retained] == sorted(ids)


async def test_replacing_a_record_keeps_what_the_session_holds(store):
    """PutSession on a known client id changes its record only: a client that reconnects and leaves again."""
    await store.apply([PutSession(record("c1")), Subscribe("c1", Subscription("a/#", 1)), Enqueue("c1", queued(1))])
    await store.apply([PutSession(record("c1", expires_at=NOW + 5, version=4, interval=5, username=None))])
    held = await only(store, "c1")
    assert held.record == record("c1", expires_at=NOW + 5, version=4, interval=5, username=None)
    assert held.subscriptions == [Subscription("a/#", 1)]
    assert held.queue == [queued(1)]


async def test_queue_comes_back_in_seq_order(store):
    """Messages queued out of order, across batches, load oldest (lowest seq) first."""
    await store.apply([PutSession(record("c1")), Enqueue("c1", queued(5)), Enqueue("c1", queued(2))])
    await store.apply([Enqueue("c1", queued(9)), Enqueue("c1", queued(3))])
    await store.apply([PutInflight("c1", Inflight(8, 2, InflightState.PUBLISH_SENT, message()))])
    await store.apply([PutInflight("c1", Inflight(4, 1, InflightState.PUBLISH_SENT, message()))])
    held = await only(store, "c1")
    assert [q.seq for q in held.queue] == [2, 3, 5, 9]
    assert [(i.seq, i.packet_id) for i in held.inflight] == [(4, 1), (8, 2)]


async def test_changes_apply_in_the_order_given(store):
    """Within one batch, later changes see earlier ones: drop-then-recreate, enqueue-then-send, ack, release."""
    await store.apply([PutSession(record("c1")), Enqueue("c1", queued(1)), Subscribe("c1", Subscription("old/#", 1))])
    sent = Inflight(2, 10, InflightState.PUBLISH_SENT, queued(2).message)
    await store.apply(
        [
            # Clean start: the old session goes; a new one with the same id starts empty.
            DropSession("c1"),
            PutSession(record("c1", version=4)),
            Subscribe("c1", Subscription("new/#", 0)),
            Subscribe("c1", Subscription("new/#", 2, no_local=True)),
            Enqueue("c1", queued(2)),
            Enqueue("c1", queued(3)),
            # Sent at once: moved from the queue to in flight.
            Dequeue("c1", 2),
            PutInflight("c1", sent),
            PutInflight("c1", Inflight(4, 11, InflightState.PUBLISH_SENT, message(qos=2))),
            PutInflight("c1", Inflight(4, 11, InflightState.PUBREL_SENT, message(qos=2))),
            PutInflight("c1", Inflight(5, 12, InflightState.PUBLISH_SENT, message())),
            AckInflight("c1", 12),
            PutIncoming("c1", 7),
            PutIncoming("c1", 8),
            ReleaseIncoming("c1", 7),
            Retain(message("r/1", b"one")),
            Retain(message("r/1", b"two")),
            Retain(message("r/2", b"gone")),
            ClearRetained("r/2"),
        ]
    )
    snapshot = await store.load(NOW)
    (held,) = snapshot.sessions
    assert held.record.protocol_version == 4
    assert held.subscriptions == [Subscription("new/#", 2, no_local=True)]
    assert held.queue == [queued(3)]
    assert held.inflight == [sent, Inflight(4, 11, InflightState.PUBREL_SENT, message(qos=2))]
    assert held.incoming == [8]
    assert snapshot.retained == [message("r/1", b"two")]
    stats = await store.stats()
    assert (stats.sessions, stats.queued_messages, stats.queued_bytes, stats.inflight, stats.retained) == (
        1,
        1,
        10,
        2,
        1,
    )


async def test_changes_to_unknown_sessions_are_ignored(store):
    """A change for a session that went away while the batch was gathered is skipped; the rest commits."""
    await store.apply(
        [
            PutSession(record("c1")),
            DropSession("c1"),
            Subscribe("c1", Subscription("a", 1)),
            Enqueue("c1", queued(1)),
            PutInflight("c1", Inflight(2, 1, InflightState.PUBLISH_SENT, message())),
            PutIncoming("c1", 5),
            Unsubscribe("nobody", "a"),
            Dequeue("nobody", 1),
            AckInflight("nobody", 1),
            ReleaseIncoming("nobody", 1),
            DropSession("nobody"),
            ClearRetained("never/retained"),
            PutSession(record("c2")),
            Enqueue("c2", queued(3)),
        ]
    )
    snapshot = await store.load(NOW)
    assert [(s.record.client_id, [q.seq for q in s.queue]) for s in snapshot.sessions] == [("c2", [3])]
    stats = await store.stats()
    assert (stats.sessions, stats.queued_messages, stats.inflight) == (1, 1, 0)


async def test_a_repeated_enqueue_is_ignored(store):
    """Enqueue with a seq the session holds changes nothing, counters included (a batch retried after a failure)."""
    batch = [PutSession(record("c1")), Enqueue("c1", queued(1, size=100))]
    await store.apply(batch)
    await store.apply(batch)
    assert [q.seq for q in (await only(store, "c1")).queue] == [1]
    stats = await store.stats()
    assert (stats.queued_messages, stats.queued_bytes) == (1, 100)


async def test_a_failing_batch_leaves_nothing_behind(store):
    """A batch that raises part-way is rolled back whole."""
    await store.apply([PutSession(record("c1")), Enqueue("c1", queued(1))])
    with pytest.raises((AssertionError, TypeError)):
        await store.apply(
            [Enqueue("c1", queued(2)), Dequeue("c1", 1), Retain(message("r")), PutSession(record("c2")), object()]
        )
    snapshot = await store.load(NOW)
    assert [(s.record.client_id, [q.seq for q in s.queue]) for s in snapshot.sessions] == [("c1", [1])]
    assert snapshot.retained == []
    stats = await store.stats()
    assert (stats.sessions, stats.queued_messages, stats.queued_bytes) == (1, 1, 10)


async def test_a_full_queue_drops_its_oldest_messages(backend):
    """Over max_messages, the oldest queued messages go, are reported, and leave the counters right."""
    async with backend.open(QueueLimits(max_messages=3, max_bytes=1_000_000)) as store:
        await store.apply([PutSession(record("c1")), PutSession(record("c2")), Enqueue("c2", queued(1))])
        result = await store.apply([Enqueue("c1", queued(seq)) for seq in range(1, 6)])
        assert result.dropped == [Dropped("c1", 1), Dropped("c1", 2)]
        result = await store.apply([Dequeue("c1", 4), Enqueue("c1", queued(6)), Enqueue("c1", queued(7))])
        assert result.dropped == [Dropped("c1", 3)]
        assert [q.seq for q in (await only(store, "c1")).queue] == [5, 6, 7]
        # In-flight messages do not count against the queue.
        await store.apply([PutInflight("c1", Inflight(4, 1, InflightState.PUBLISH_SENT, message()))])
        assert (await store.apply([Enqueue("c2", queued(8))])).dropped == []
        stats = await store.stats()
        assert (stats.queued_messages, stats.queued_bytes) == (5, 50)


async def test_queue_bytes_are_bounded_and_the_newest_is_kept(backend):
    """Over max_bytes, the oldest go until the rest fits; a message larger than the limit alone is still kept."""
    async with backend.open(QueueLimits(max_messages=100, max_bytes=250)) as store:
        await store.apply([PutSession(record("c1"))])
        batch = [Enqueue("c1", queued(seq, size=100)) for seq in range(1, 4)]
        assert (await store.apply(batch)).dropped == [Dropped("c1", 1)]
        assert (await store.apply([Enqueue("c1", queued(4, size=1000))])).dropped == [
            Dropped("c1", 2),
            Dropped("c1", 3),
        ]
        assert [q.seq for q in (await only(store, "c1")).queue] == [4]
        assert (await store.apply([Enqueue("c1", queued(5, size=10))])).dropped == [Dropped("c1", 4)]
        stats = await store.stats()
        assert (stats.queued_messages, stats.queued_bytes) == (1, 10)


async def test_limits_hold_across_many_sessions_in_one_batch(backend):
    """One message fanned out to 700 full sessions (past SQLite's statement chunking) trims each of them."""
    clients = [f"c{n:04d}" for n in range(700)]
    async with backend.open(QueueLimits(max_messages=2, max_bytes=1_000_000)) as store:
        await store.apply(
            [PutSession(record(c)) for c in clients] + [Enqueue(c, queued(s)) for c in clients for s in (1, 2)]
        )
        result = await store.apply([Enqueue(c, queued(3)) for c in clients])
        assert result.dropped == [Dropped(c, 1) for c in clients]
        snapshot = await store.load(NOW)
        assert {tuple(q.seq for q in s.queue) for s in snapshot.sessions} == {(2, 3)}
        stats = await store.stats()
        assert (stats.sessions, stats.queued_messages) == (700, 1400)


async def test_expired_sessions_go_with_everything_they_hold(store):
    """The sweep removes sessions whose expires_at passed, and their subscriptions, queue, in-flight and ids."""
    await store.apply(
        [
            PutSession(record("gone", expires_at=NOW - 1)),
            Subscribe("gone", Subscription("a/#", 1)),
            Enqueue("gone", queued(1)),
            PutInflight("gone", Inflight(2, 1, InflightState.PUBLISH_SENT, message())),
            PutIncoming("gone", 9),
            PutSession(record("due", expires_at=NOW)),
            PutSession(record("later", expires_at=NOW + 1)),
            PutSession(record("connected", expires_at=None)),
            PutSession(record("forever", expires_at=None, interval=NEVER_EXPIRES)),
        ]
    )
    # Loading leaves expired sessions out before any sweep.
    loaded = await store.load(NOW)
    assert [s.record.client_id for s in loaded.sessions] == ["connected", "forever", "later"]
    expired = await store.expire(NOW)
    assert expired.sessions == ["due", "gone"]
    assert (await store.expire(NOW)).sessions == []
    # The same client id starts afresh: nothing of the expired session is left under it.
    await store.apply([PutSession(record("gone"))])
    held = await only(store, "gone")
    assert (held.subscriptions, held.queue, held.inflight, held.incoming) == ([], [], [], [])
    stats = await store.stats()
    assert (stats.sessions, stats.queued_messages, stats.inflight) == (4, 0, 0)


async def test_expired_messages_go_from_queues_and_retained(store):
    """Queued and retained messages past their message expiry are left out of a load and removed by the sweep."""
    await store.apply(
        [
            PutSession(record("c1")),
            Enqueue("c1", queued(1, expires_at=NOW - 1)),
            Enqueue("c1", queued(2)),
            Enqueue("c1", queued(3, expires_at=NOW + 1)),
            # Sent in time: stays, whatever its expiry.
            PutInflight("c1", Inflight(4, 1, InflightState.PUBLISH_SENT, message(expires_at=NOW - 1))),
            Retain(message("r/old", expires_at=NOW)),
            Retain(message("r/new", expires_at=NOW + 1)),
            Retain(message("r/kept")),
        ]
    )
    loaded = await store.load(NOW)
    assert [q.seq for q in loaded.sessions[0].queue] == [2, 3]
    assert [m.topic for m in loaded.retained] == ["r/kept", "r/new"]
    expired = await store.expire(NOW)
    assert (expired.sessions, expired.retained, expired.queued) == ([], 1, 1)
    stats = await store.stats()
    assert (stats.queued_messages, stats.queued_bytes, stats.inflight, stats.retained) == (2, 20, 1, 2)
    later = await store.load(NOW + 10)
    assert [q.seq for q in later.sessions[0].queue] == [2]
    assert [m.topic for m in later.retained] == ["r/kept"]


async def test_concurrent_batches_all_commit(backend):
    """Batches applied side by side, on shared and separate sessions, all land and the counters agree."""
    async with backend.open() as store:
        await store.apply([PutSession(record(f"c{n}")) for n in range(5)])

        async def one(batch_no: int) -> None:
            # Every batch touches every session, in a different order, so lock order would matter.
            order = list(range(5))[batch_no % 5 :] + list(range(5))[: batch_no % 5]
            await store.apply(
                [Enqueue(f"c{n}", queued(batch_no * 10 + k)) for n in order for k in range(3)]
                + [Retain(message(f"r/{batch_no}"))]
            )

        await asyncio.gather(*(one(b) for b in range(40)))
        snapshot = await store.load(NOW)
        assert len(snapshot.retained) == 40
        for held in snapshot.sessions:
            assert [q.seq for q in held.queue] == sorted(b * 10 + k for b in range(40) for k in range(3))
        stats = await store.stats()
        assert (stats.queued_messages, stats.queued_bytes) == (5 * 40 * 3, 5 * 40 * 3 * 10)
        assert snapshot.last_seq == 392


async def test_empty_store_and_empty_batch(store):
    """An empty store loads empty with last_seq 0; an empty batch changes nothing."""
    assert (await store.apply([])).dropped == []
    snapshot = await store.load(NOW)
    assert (snapshot.retained, snapshot.sessions, snapshot.last_seq) == ([], [], 0)
    stats = await store.stats()
    assert (stats.sessions, stats.queued_messages, stats.queued_bytes, stats.inflight, stats.retained) == (
        0,
        0,
        0,
        0,
        0,
    )


def random_batch(rng, seq: list[int]) -> list:
    """A batch of random changes over a few clients, topics, seqs and packet ids, so they collide often."""
    clients = ["a", "b", "c"]
    changes = []
    for _ in range(rng.randint(1, 40)):
        c = rng.choice(clients)
        roll = rng.random()
        if roll < 0.08:
            changes.append(PutSession(record(c, expires_at=rng.choice([None, NOW + 100]), version=rng.choice([4, 5]))))
        elif roll < 0.12:
            changes.append(DropSession(c))
        elif roll < 0.20:
            changes.append(Subscribe(c, Subscription(rng.choice(["x/#", "y/+"]), rng.randint(0, 2))))
        elif roll < 0.24:
            changes.append(Unsubscribe(c, rng.choice(["x/#", "y/+"])))
        elif roll < 0.45:
            seq[0] += 1
            changes.append(Enqueue(c, queued(rng.choice([seq[0], rng.randint(1, seq[0])]), size=rng.randint(5, 40))))
        elif roll < 0.60:
            changes.append(Dequeue(c, rng.randint(1, max(1, seq[0]))))
        elif roll < 0.72:
            state = rng.choice(list(InflightState))
            changes.append(PutInflight(c, Inflight(rng.randint(1, 50), rng.randint(1, 4), state, message())))
        elif roll < 0.80:
            changes.append(AckInflight(c, rng.randint(1, 4)))
        elif roll < 0.86:
            changes.append(PutIncoming(c, rng.randint(1, 4)))
        elif roll < 0.90:
            changes.append(ReleaseIncoming(c, rng.randint(1, 4)))
        elif roll < 0.96:
            changes.append(Retain(message(rng.choice(["r/1", "r/2"]), payload=bytes([rng.randint(0, 255)]))))
        else:
            changes.append(ClearRetained(rng.choice(["r/1", "r/2"])))
    return changes


@pytest.mark.parametrize("seed", range(1, 7))
async def test_random_batches_end_as_the_reference_store_does(backend, seed):
    """Random batches of colliding changes leave every backend with what the in-memory reference holds."""
    rng = random.Random(seed)
    limits = QueueLimits(max_messages=6, max_bytes=150)
    reference = MemoryBrokerStore(limits)
    seq = [0]
    async with backend.open(limits) as store:
        for _ in range(25):
            batch = random_batch(rng, seq)
            expected = await reference.apply(batch)
            assert await store.apply(batch) == expected
            assert await store.load(NOW) == await reference.load(NOW)
            assert await store.stats() == await reference.stats()

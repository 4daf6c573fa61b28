"""The broker store seam: the protocol of what the embedded broker persists, and its implementations.

How the broker uses it (docs/broker-persistence.md has the user's side):

1. At start, after the database: `store = broker_store(db, QueueLimits(...))`, then
   `snapshot = await store.load(now)`: retained messages into the retained index, each
   `StoredSession` into a disconnected session with its subscriptions, queue (oldest
   first), in-flight messages (resend order) and incoming QoS 2 ids. A session whose
   `record.expires_at` is None with a finite interval had its client connected when the
   hub stopped: write `PutSession` with `expires_at = now + interval`. Number new messages
   from `snapshot.last_seq + 1`.
2. Run a `StoreWriter(store, settings, metrics=..., on_dropped=..., on_expired=...)` for
   the broker's lifetime; hand it each packet's changes and acknowledge the packet when
   `write` returns (or the future from `put` is done), in the order the protocol module
   describes. `on_dropped` and `on_expired` tell the broker what the store removed, so
   its own copy agrees.
3. At shutdown, stop taking packets, then leave the writer's `async with` (it commits
   what is pending), then close the database.

Every implementation passes one contract suite (tests/integration/broker/test_store_contract.py).
"""

from typing import assert_never

from broker.stores.memory import MemoryBrokerStore
from broker.stores.metrics import BrokerStoreMetrics
from broker.stores.postgres import PostgresBrokerStore
from broker.stores.protocol import (
    NEVER_EXPIRES,
    AckInflight,
    ApplyResult,
    BrokerStore,
    Change,
    ClearRetained,
    Dequeue,
    Dropped,
    DropSession,
    Enqueue,
    Expired,
    Inflight,
    InflightState,
    Message,
    PutIncoming,
    PutInflight,
    PutSession,
    Queued,
    QueueLimits,
    ReleaseIncoming,
    Retain,
    SessionRecord,
    Snapshot,
    StoredSession,
    StoreStats,
    Subscribe,
    Subscription,
    Unsubscribe,
)
from broker.stores.sqlite import SqliteBrokerStore
from broker.stores.writer import StoreBusy, StoreWriter, WriterSettings
from kernel import Database, PostgresDatabase, SqliteDatabase

__all__ = [
    "NEVER_EXPIRES",
    "AckInflight",
    "ApplyResult",
    "BrokerStore",
    "BrokerStoreMetrics",
    "Change",
    "ClearRetained",
    "Dequeue",
    "DropSession",
    "Dropped",
    "Enqueue",
    "Expired",
    "Inflight",
    "InflightState",
    "MemoryBrokerStore",
    "Message",
    "PostgresBrokerStore",
    "PutIncoming",
    "PutInflight",
    "PutSession",
    "QueueLimits",
    "Queued",
    "ReleaseIncoming",
    "Retain",
    "SessionRecord",
    "Snapshot",
    "SqliteBrokerStore",
    "StoreBusy",
    "StoreStats",
    "StoreWriter",
    "StoredSession",
    "Subscribe",
    "Subscription",
    "Unsubscribe",
    "WriterSettings",
    "broker_store",
]


def broker_store(db: Database, limits: QueueLimits | None = None) -> BrokerStore:
    """The broker store on `db`, of its backend; enter it (`async with`) after the database."""
    match db:
        case SqliteDatabase():
            return SqliteBrokerStore(db, limits)
        case PostgresDatabase():
            return PostgresBrokerStore(db, limits)
        case _:
            assert_never(db)

"""The broker store seam: the protocol of what the embedded broker persists, and its implementations.

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

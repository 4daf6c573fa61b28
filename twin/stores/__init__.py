"""The twin store seam: twins, history, presence and their queries.

`protocol` holds the `Store` protocol and the query and page types every backend
shares; `memory`, `sqlite` and `postgres` implement it (the PostgreSQL backend's
write path, partitions, rollup and TimescaleDB policies are the `pg_*` modules beside
it, and `aggregates` folds rows into buckets for the backends that do it in Python).
Every implementation passes one contract suite (tests/integration/twin/test_store_contract.py).
"""

from typing import assert_never

from kernel import Database, PostgresDatabase, SqliteDatabase
from twin.stores.aggregates import parse_aggs, time_zone
from twin.stores.dead_letters import (
    DeadLetter,
    DeadLetterQuery,
    DeadLetterStore,
    MemoryDeadLetters,
    dead_letter_store,
)
from twin.stores.memory import MemoryStore
from twin.stores.postgres import PostgresStore
from twin.stores.protocol import (
    Agg,
    AggregatePage,
    AggregateQuery,
    AggregateRow,
    Bucket,
    FieldAgg,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    HistoryReader,
    MaintenanceReport,
    Order,
    PointQuery,
    PresenceQuery,
    Statement,
    Store,
    TwinFilter,
    run_maintenance,
)
from twin.stores.sqlite import SqliteStore

__all__ = [
    "Agg",
    "AggregatePage",
    "AggregateQuery",
    "AggregateRow",
    "Bucket",
    "DeadLetter",
    "DeadLetterQuery",
    "DeadLetterStore",
    "FieldAgg",
    "HistoryOptions",
    "HistoryPage",
    "HistoryQuery",
    "HistoryReader",
    "MaintenanceReport",
    "MemoryDeadLetters",
    "MemoryStore",
    "Order",
    "PointQuery",
    "PostgresStore",
    "PresenceQuery",
    "SqliteStore",
    "Statement",
    "Store",
    "TwinFilter",
    "dead_letter_store",
    "parse_aggs",
    "run_maintenance",
    "time_zone",
    "twin_store",
]


def twin_store(db: Database, options: HistoryOptions | None = None) -> Store:
    """The twin store on `db`, of its backend; enter it (`async with`) after the database."""
    options = options or HistoryOptions()
    match db:
        case SqliteDatabase():
            return SqliteStore(db, retention_days=options.retention_days)
        case PostgresDatabase():
            return PostgresStore(db, options=options)
        case _:
            assert_never(db)

"""The twin store seam: twins, history, presence and their queries.

`protocol` holds the `Store` protocol and the query and page types every backend
shares; `memory`, `sqlite` and `postgres` implement it (the PostgreSQL backend's
write path, partitions, rollup and schema are the `pg_*` modules beside it).
Every implementation passes one contract suite (tests/integration/twin/test_store_contract.py).
"""

from twin.stores.aggregates import parse_aggs, zone
from twin.stores.memory import MemoryStore
from twin.stores.pg_schema import PostgresOptions
from twin.stores.postgres import PostgresStore
from twin.stores.protocol import (
    Agg,
    AggregatePage,
    AggregateQuery,
    AggregateRow,
    Bucket,
    FieldAgg,
    HistoryPage,
    HistoryQuery,
    MaintenanceReport,
    Order,
    PointQuery,
    PresenceQuery,
    Store,
    StoreInfo,
    TwinFilter,
    VehicleSet,
    run_maintenance,
)
from twin.stores.sqlite import SqliteStore

__all__ = [
    "Agg",
    "AggregatePage",
    "AggregateQuery",
    "AggregateRow",
    "Bucket",
    "FieldAgg",
    "HistoryPage",
    "HistoryQuery",
    "MaintenanceReport",
    "MemoryStore",
    "Order",
    "PointQuery",
    "PostgresOptions",
    "PostgresStore",
    "PresenceQuery",
    "SqliteStore",
    "Store",
    "StoreInfo",
    "TwinFilter",
    "VehicleSet",
    "parse_aggs",
    "run_maintenance",
    "zone",
]

"""What every part of the hub shares: the exception tree, the clock, and database access.

`kernel` imports no other part of fleethub; every other part may import it.
"""

from kernel.clock import Clock, isoformat, parse_time
from kernel.database import Database, open_database
from kernel.errors import (
    FENCED_SQLSTATE,
    ConfigError,
    Fenced,
    FleethubError,
    InvalidPayload,
    LimitExceeded,
    NotFound,
    PreconditionFailed,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreRejected,
    StoreUnavailable,
    TransientStoreError,
    is_fenced,
)
from kernel.info import DatabaseInfo
from kernel.jsondepth import deeper_than, json_depth
from kernel.migrate import Migration, TimeseriesMode, load_migrations, load_pg_migrations, split_statements
from kernel.partitions import PARTITION_SQL, VehicleIds, VehiclePartitions, VehicleSet, partition_of, vehicles_where
from kernel.postgres import PostgresDatabase, Timeseries, redact, schema_lock
from kernel.sql import POSTGRES, SQLITE, Dialect, Duplicate, Sql, SqlStore, Statement
from kernel.sqlite import SqliteDatabase, fetch_all, in_connection_thread, rollback, sqlite_path
from kernel.tasks import cancel_and_wait

__all__ = [
    "FENCED_SQLSTATE",
    "PARTITION_SQL",
    "POSTGRES",
    "SQLITE",
    "Clock",
    "ConfigError",
    "Database",
    "DatabaseInfo",
    "Dialect",
    "Duplicate",
    "Fenced",
    "FleethubError",
    "InvalidPayload",
    "LimitExceeded",
    "Migration",
    "NotFound",
    "PostgresDatabase",
    "PreconditionFailed",
    "Sql",
    "SqlStore",
    "SqliteDatabase",
    "Statement",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreRejected",
    "StoreUnavailable",
    "Timeseries",
    "TimeseriesMode",
    "TransientStoreError",
    "VehicleIds",
    "VehiclePartitions",
    "VehicleSet",
    "cancel_and_wait",
    "deeper_than",
    "fetch_all",
    "in_connection_thread",
    "is_fenced",
    "isoformat",
    "json_depth",
    "load_migrations",
    "load_pg_migrations",
    "open_database",
    "parse_time",
    "partition_of",
    "redact",
    "rollback",
    "schema_lock",
    "split_statements",
    "sqlite_path",
    "vehicles_where",
]

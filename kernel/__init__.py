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
    StoreError,
    is_fenced,
)
from kernel.info import DatabaseInfo
from kernel.migrate import Migration, TimeseriesMode, load_migrations, load_pg_migrations, split_statements
from kernel.postgres import PostgresDatabase, Timeseries, redact, schema_lock
from kernel.sql import POSTGRES, SQLITE, Dialect, Duplicate, Sql, Statement
from kernel.sqlite import SqliteDatabase, fetch_all, in_connection_thread, sqlite_path

__all__ = [
    "FENCED_SQLSTATE",
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
    "Sql",
    "SqliteDatabase",
    "Statement",
    "StoreError",
    "Timeseries",
    "TimeseriesMode",
    "fetch_all",
    "in_connection_thread",
    "is_fenced",
    "isoformat",
    "load_migrations",
    "load_pg_migrations",
    "open_database",
    "parse_time",
    "redact",
    "schema_lock",
    "split_statements",
    "sqlite_path",
]

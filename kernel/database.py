"""The one Database object of a process: its backend is chosen here, from the URL, and nowhere else.

Stores are built on an open Database (each package has a factory that picks its
SQLite or PostgreSQL store by the Database's type); they share its migrations and its
connections instead of opening their own.
"""

from __future__ import annotations

from kernel.errors import ConfigError
from kernel.postgres import PostgresDatabase, Timeseries
from kernel.sqlite import SqliteDatabase

Database = SqliteDatabase | PostgresDatabase


def open_database(
    url: str,
    *,
    sqlite_synchronous: str = "NORMAL",
    sqlite_readers: int = 3,
    pg_pool_min_size: int = 2,
    pg_pool_max_size: int = 10,
    pg_timeseries: Timeseries = "auto",
    pg_pool_timeout_s: float = 10.0,
    pg_reconnect_max_s: float = 2.0,
) -> Database:
    """The database `url` names, not yet open: enter it (`async with`) to migrate and connect."""
    if url.startswith("sqlite://"):
        return SqliteDatabase(url, synchronous=sqlite_synchronous, readers=sqlite_readers)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(
            url,
            pool_min_size=pg_pool_min_size,
            pool_max_size=pg_pool_max_size,
            timeseries=pg_timeseries,
            pool_timeout_s=pg_pool_timeout_s,
            reconnect_max_s=pg_reconnect_max_s,
        )
    raise ConfigError(f"setting 'store.url' must be a sqlite:/// or postgresql:// URL, got {url!r}")

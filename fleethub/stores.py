"""The process's database and the twin store's options, from the `[store]` settings."""

from __future__ import annotations

from fleethub.settings import StoreSettings
from kernel import Database, open_database
from twin import HistoryOptions


def database(settings: StoreSettings) -> Database:
    """The one Database of this process (not yet open), of the backend `settings.url` names."""
    return open_database(
        settings.url,
        sqlite_synchronous=settings.sqlite_synchronous,
        sqlite_readers=settings.sqlite_readers,
        pg_pool_min_size=settings.pg_pool_min_size,
        pg_pool_max_size=settings.pg_pool_max_size,
        pg_timeseries=settings.pg_timeseries,
        pg_pool_timeout_s=settings.pg_pool_timeout_s,
        pg_reconnect_max_s=settings.pg_reconnect_max_s,
    )


def history_options(settings: StoreSettings) -> HistoryOptions:
    return HistoryOptions(
        retention_days=settings.retention_days,
        chunk_interval_hours=settings.pg_chunk_interval_hours,
        compress_after_days=settings.pg_compress_after_days,
        premake_partitions=settings.pg_premake_partitions,
    )

"""Choosing a store from the configured URL."""

from __future__ import annotations

from fleethub.settings import StoreSettings
from kernel import ConfigError
from security import MemorySecurityStore, SecurityStore
from security.stores.postgres import PostgresSecurityStore
from security.stores.sqlite import SqliteSecurityStore
from twin import SqliteStore, Store
from twin.stores.postgres import PostgresOptions, PostgresStore
from twin.stores.sqlite import sqlite_path


def open_store(settings: StoreSettings) -> Store:
    url = settings.url
    if url.startswith("sqlite://"):
        return SqliteStore(url, synchronous=settings.sqlite_synchronous, retention_days=settings.retention_days)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, options=postgres_options(settings))
    raise ConfigError(f"setting 'store.url' must be a sqlite:/// or postgresql:// URL, got {url!r}")


def postgres_options(settings: StoreSettings) -> PostgresOptions:
    return PostgresOptions(
        pool_min_size=settings.pg_pool_min_size,
        pool_max_size=settings.pg_pool_max_size,
        timeseries=settings.pg_timeseries,
        chunk_interval_hours=settings.pg_chunk_interval_hours,
        retention_days=settings.retention_days,
        compress_after_days=settings.pg_compress_after_days,
        premake_partitions=settings.pg_premake_partitions,
    )


def open_security_store(settings: StoreSettings) -> SecurityStore:
    """The security store beside the twin store, on the same database (whose migrations it shares)."""
    url = settings.url
    if url.startswith("sqlite://"):
        if sqlite_path(url) == ":memory:":
            # A private in-memory database cannot be shared; credentials then live as long as the process.
            return MemorySecurityStore()
        return SqliteSecurityStore(url, synchronous=settings.sqlite_synchronous)
    return PostgresSecurityStore(url)

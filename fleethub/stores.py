"""Choosing a store from the configured URL."""

from __future__ import annotations

from fleethub.settings import StoreSettings
from twin import ConfigError, SqliteStore, Store


def open_store(settings: StoreSettings) -> Store:
    url = settings.url
    if url.startswith("sqlite://"):
        return SqliteStore(url, synchronous=settings.sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("setting 'store.url': the PostgreSQL store is not available in this version; use sqlite:///")
    raise ConfigError(f"setting 'store.url' must be a sqlite:/// or postgresql:// URL, got {url!r}")

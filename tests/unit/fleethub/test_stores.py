"""Every store follows the one Database: its backend, its connections, its migrations."""

import pytest

from commands import SqlCommandStore, command_store
from fleethub import load_settings
from fleethub.rules_setup import rules_engine
from fleethub.settings import StoreSettings
from fleethub.stores import database, history_options
from kernel import PostgresDatabase, SqliteDatabase
from rules import SqlRulesStore, rules_store
from security import SqlSecurityStore, security_store
from twin import MemoryStore, PostgresStore, SqliteStore, twin_store

SQLITE = (SqliteStore, SqlRulesStore, SqlCommandStore, SqlSecurityStore)
POSTGRES = (PostgresStore, SqlRulesStore, SqlCommandStore, SqlSecurityStore)


@pytest.mark.parametrize(
    ("url", "kinds"),
    [
        ("sqlite:///var/hub.db", SQLITE),
        ("postgresql://hub@db:5432/fleet", POSTGRES),
        ("postgres://hub@db/fleet", POSTGRES),
    ],
)
def test_every_store_is_of_the_databases_backend(url: str, kinds: tuple[type, ...]) -> None:
    """The twin, rules, commands and security stores all sit on the one Database `store.url` names."""
    db = database(StoreSettings(url=url))
    stores = (twin_store(db), rules_store(db), command_store(db), security_store(db))
    for store, kind in zip(stores, kinds, strict=True):
        assert isinstance(store, kind)
        assert store.db is db


def test_store_settings_reach_the_database_and_the_twin_store() -> None:
    """Pool sizes go to the one pool; retention and partitions to the twin store."""
    settings = StoreSettings(
        url="postgresql://db/fleet", pg_pool_min_size=1, pg_pool_max_size=5, retention_days=9, pg_premake_partitions=1
    )
    db = database(settings)
    assert isinstance(db, PostgresDatabase)
    assert (db.pool_min_size, db.pool_max_size) == (1, 5)
    store = twin_store(db, history_options(settings))
    assert isinstance(store, PostgresStore)
    assert (store.options.retention_days, store.options.premake_partitions) == (9, 1)
    lite = database(StoreSettings(url="sqlite:///x.db", sqlite_readers=2))
    assert isinstance(lite, SqliteDatabase)
    assert lite.read_connections == 2
    sqlite = twin_store(lite, history_options(StoreSettings(retention_days=9)))
    assert isinstance(sqlite, SqliteStore)
    assert sqlite.retention_days == 9


def test_engine_is_built_for_postgresql_and_off_only_when_disabled() -> None:
    """A PostgreSQL store.url gets a rules engine; only rules.enabled = false turns it off."""
    on = load_settings(environ={}, overrides={"store.url": "postgresql://db/fleet"})
    engine = rules_engine(on, database(on.store), MemoryStore())
    assert engine is not None
    assert isinstance(engine.store, SqlRulesStore)
    off = load_settings(environ={}, overrides={"store.url": "postgresql://db/fleet", "rules.enabled": False})
    assert rules_engine(off, database(off.store), MemoryStore()) is None

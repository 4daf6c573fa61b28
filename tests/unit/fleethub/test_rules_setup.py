"""The rules store follows the twin store's URL, so every backend runs the rules engine."""

import pytest

from fleethub.rules_setup import rules_engine, rules_store
from fleethub.settings import StoreSettings, load_settings
from kernel import ConfigError
from rules.stores.postgres import PostgresRulesStore
from rules.stores.sqlite import SqliteRulesStore
from twin import MemoryStore


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///var/hub.db", SqliteRulesStore),
        ("postgresql://hub@db:5432/fleet", PostgresRulesStore),
        ("postgres://hub@db/fleet", PostgresRulesStore),
    ],
)
def test_rules_store_matches_the_store_url(url: str, kind: type) -> None:
    """SQLite and PostgreSQL URLs give that backend's rules store, on the same database."""
    store = rules_store(StoreSettings(url=url))
    assert isinstance(store, kind)
    assert store.url == url


def test_rules_store_refuses_other_urls() -> None:
    """Any other URL is a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=r"store\.url"):
        rules_store(StoreSettings(url="mysql://db/fleet"))


def test_engine_is_built_for_postgresql_and_off_only_when_disabled() -> None:
    """A PostgreSQL store.url gets a rules engine; only rules.enabled = false turns it off."""
    on = load_settings(environ={}, overrides={"store.url": "postgresql://db/fleet"})
    engine = rules_engine(on, MemoryStore())
    assert engine is not None
    assert isinstance(engine.store, PostgresRulesStore)
    off = load_settings(environ={}, overrides={"store.url": "postgresql://db/fleet", "rules.enabled": False})
    assert rules_engine(off, MemoryStore()) is None

"""The one place a backend is chosen: database URLs, and what each backend's migrations hold."""

import pytest

from kernel import (
    ConfigError,
    PostgresDatabase,
    SqliteDatabase,
    TimeseriesMode,
    load_pg_migrations,
    open_database,
    redact,
    sqlite_path,
)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///var/hub.db", SqliteDatabase),
        ("sqlite://:memory:", SqliteDatabase),
        ("postgresql://hub@db:5432/fleet", PostgresDatabase),
        ("postgres://hub@db/fleet", PostgresDatabase),
    ],
)
def test_the_url_chooses_the_backend(url: str, kind: type) -> None:
    """sqlite:// opens SQLite, postgresql:// and postgres:// open PostgreSQL."""
    assert isinstance(open_database(url), kind)


def test_other_urls_are_refused() -> None:
    """Any other scheme is a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=r"store\.url"):
        open_database("mysql://db/fleet")


def test_settings_reach_the_database() -> None:
    """Pool sizes, the time-series mode and SQLite's knobs are passed through."""
    pg = open_database("postgresql://db/fleet", pg_pool_min_size=3, pg_pool_max_size=7, pg_timeseries="native")
    assert isinstance(pg, PostgresDatabase)
    assert (pg.pool_min_size, pg.pool_max_size, pg.timeseries) == (3, 7, "native")
    lite = open_database("sqlite:///x.db", sqlite_synchronous="FULL")
    assert isinstance(lite, SqliteDatabase)
    assert lite.synchronous == "FULL"


def test_sqlite_url_forms() -> None:
    """Three slashes start a relative path, four an absolute one."""
    assert sqlite_path("sqlite:///var/fleethub.db") == "var/fleethub.db"
    assert sqlite_path("sqlite:////tmp/x.db") == "/tmp/x.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"


def test_passwords_are_redacted() -> None:
    """The URL shown by info() and the health endpoint carries no password."""
    assert redact("postgresql://hub:s3cret@db:5432/fleet") == "postgresql://hub:***@db:5432/fleet"
    assert redact("postgresql://db/fleet") == "postgresql://db/fleet"


@pytest.mark.parametrize("mode", list(TimeseriesMode))
def test_each_mode_has_a_complete_migration_chain(mode: TimeseriesMode) -> None:
    """Both modes get the same migration numbers, in order; time-series DDL differs as intended."""
    chain = load_pg_migrations(mode)
    versions = [m.version for m in chain]
    assert versions == sorted(set(versions))
    assert versions == [m.version for m in load_pg_migrations(TimeseriesMode.NATIVE)]
    assert {10, 20, 30} <= set(versions), "the rules, commands and security tables are part of both chains"
    text = "\n".join(m.sql for m in chain)
    if mode is TimeseriesMode.TIMESCALEDB:
        assert "create_hypertable('history'" in text
        assert "timescaledb.continuous" not in text, "nothing reads a continuous aggregate; none is created"
        assert "PARTITION BY" not in text
    else:
        assert "PARTITION BY RANGE (ts)" in text

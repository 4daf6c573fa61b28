"""Real SQLite failures map to one store error per cause (`kernel.sqlite_errors`)."""

from __future__ import annotations

import sqlite3

import pytest

from kernel import StoreFull, StoreLocked, StoreRejected, StoreUnavailable, TransientStoreError
from kernel.sqlite_errors import store_error


def _raised(fn) -> BaseException:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the point is which error it is
        fn()
    return caught.value


def test_locked_database_is_transient(tmp_path):
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    error = store_error(_raised(lambda: other.execute("SELECT * FROM t").fetchall()))
    assert isinstance(error, StoreLocked)
    assert isinstance(error, TransientStoreError)
    holder.execute("ROLLBACK")


def test_full_database_is_transient(tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 3")

    def fill() -> None:
        for _ in range(1000):
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 4000,))

    error = store_error(_raised(fill))
    assert isinstance(error, StoreFull)
    assert isinstance(error, TransientStoreError)


@pytest.mark.parametrize(
    "statement",
    [
        lambda c: c.execute("INSERT INTO t VALUES (?)", (2**63,)),
        lambda c: c.execute("INSERT INTO t VALUES (NULL)"),
        lambda c: c.execute("INSERT INTO t VALUES (?)", (object(),)),
    ],
    ids=["int-overflow", "not-null", "unbindable"],
)
def test_a_refused_value_is_deterministic(tmp_path, statement):
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t (x INTEGER NOT NULL)")
    error = store_error(_raised(lambda: statement(conn)))
    assert isinstance(error, StoreRejected)
    assert not isinstance(error, TransientStoreError)


def test_anything_else_is_unavailable_so_it_is_retried_not_dropped(tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    conn.close()
    error = store_error(_raised(lambda: conn.execute("SELECT 1")))
    assert isinstance(error, StoreUnavailable)

"""SQL written once: `kernel.Sql` runs the same statements on SQLite and PostgreSQL with the same results."""

import sqlite3

import psycopg
import pytest

from kernel import (
    POSTGRES,
    SQLITE,
    Duplicate,
    PostgresDatabase,
    Sql,
    SqliteDatabase,
    Statement,
    StoreError,
    StoreRejected,
    VehicleIds,
    VehiclePartitions,
    partition_of,
    vehicles_where,
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def sql(request, tmp_path):
    if request.param == "sqlite":
        db: SqliteDatabase | PostgresDatabase = SqliteDatabase(f"sqlite:///{tmp_path}/hub.db")
    else:
        db = PostgresDatabase(request.getfixturevalue("pg_url"), pool_min_size=1, pool_max_size=2)
    async with db:
        runner = Sql(db)
        d = runner.dialect
        # A table of the test's own: a unique key, a time column and a JSON column, typed per backend.
        ts_type, json_type = ("REAL", "TEXT") if d is SQLITE else ("timestamptz", "jsonb")
        await runner.transaction(
            [
                Statement(
                    f"CREATE TABLE t (k text PRIMARY KEY, n int NOT NULL, at {ts_type}, doc {json_type}, ok boolean)"
                )
            ]
        )
        yield runner


async def test_statements_take_question_marks_on_both_backends(sql: Sql) -> None:
    """One statement text with `?` runs on either backend; `many` inserts every row; rowcounts come back."""
    d = sql.dialect
    insert = f"INSERT INTO t (k, n, at, doc, ok) VALUES (?, ?, ?, {d.json_mark}, ?)"
    rows = [(f"k{i}", i, d.time(1_700_000_000.5 + i), f'{{"fleet": "f{i % 2}"}}', d.flag(i % 2 == 0)) for i in range(5)]
    changed = await sql.transaction(
        [Statement(insert, rows, many=True), Statement("UPDATE t SET n = n + 10 WHERE n >= ?", (3,))]
    )
    assert changed == [5, 2]
    where = f"{d.true} AND {d.json_field('doc', 'fleet')} = ?"
    got = await sql.fetch(f"SELECT k, n, {d.seconds('at')}, doc{d.as_text} FROM t WHERE {where} ORDER BY k", ("f1",))
    assert [(k, n, at) for k, n, at, _ in got] == [("k1", 1, 1_700_000_001.5), ("k3", 13, 1_700_000_003.5)]
    assert d.sql("SELECT ?") == ("SELECT ?" if d is SQLITE else "SELECT %s")
    assert d in (SQLITE, POSTGRES)


async def test_a_transaction_is_all_or_nothing_and_a_broken_key_is_a_duplicate(sql: Sql) -> None:
    """A statement that breaks a unique key raises `Duplicate` and undoes the statements before it."""
    d = sql.dialect
    insert = f"INSERT INTO t (k, n, at, doc, ok) VALUES (?, ?, ?, {d.json_mark}, ?)"
    row = ("a", 1, d.time(0.0), "{}", d.flag(True))
    await sql.transaction([Statement(insert, row)])
    with pytest.raises(Duplicate) as caught:
        await sql.transaction([Statement("UPDATE t SET n = 2 WHERE k = ?", ("a",)), Statement(insert, row)])
    assert isinstance(caught.value, StoreError)
    assert await sql.fetch("SELECT n FROM t WHERE k = ?", ("a",)) == [(1,)]
    # Other refusals are not duplicates: they propagate as the database's refusal of a value.
    with pytest.raises(StoreRejected) as refused:
        await sql.transaction([Statement("INSERT INTO t (k, n) VALUES (?, ?)", ("b", None))])
    assert not isinstance(refused.value, Duplicate)
    assert isinstance(refused.value.__cause__, (sqlite3.IntegrityError, psycopg.errors.NotNullViolation))


async def test_vehicles_are_chosen_in_sql_by_id_on_both_backends_and_by_partition_on_postgresql(sql: Sql) -> None:
    """`vehicles_where` narrows a read in the database: ids on both backends, partitions where md5 exists."""
    keys = [f"veh-{i}" for i in range(40)] + ["it's"]
    await sql.transaction([Statement("INSERT INTO t (k, n) VALUES (?, ?)", [(k, 0) for k in keys], many=True)])

    async def chosen(vehicles: VehicleIds | VehiclePartitions) -> set[str] | None:
        where = vehicles_where(vehicles, "k", sql.dialect)
        if where is None:
            return None
        condition, arg = where
        return {row[0] for row in await sql.fetch(f"SELECT k FROM t WHERE {condition}", (arg,))}

    assert await chosen(VehicleIds(frozenset({"veh-3", "it's", "absent"}))) == {"veh-3", "it's"}
    assert await chosen(VehicleIds(frozenset())) == set()
    parts = VehiclePartitions(frozenset({1, 3}), 4)
    expected = {k for k in keys if partition_of(k, 4) in {1, 3}}
    assert await chosen(parts) == (None if sql.dialect is SQLITE else expected)

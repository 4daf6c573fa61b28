"""SQL written once for SQLite and PostgreSQL: what differs between them as data, and one way to run it.

A store whose tables are the same on both backends writes each statement once, with
`?` placeholders, and runs it through `Sql`: reads on one of SQLite's readers or a
pooled PostgreSQL connection, writes as one all-or-nothing transaction (one call on
SQLite's writer thread; one PostgreSQL transaction). What the SQL itself must say
differently (casts, time columns, an always-true condition) comes from `Dialect`.

Statements must not contain a literal `?` or `%` outside placeholders: PostgreSQL's
form is made by replacing one with `%s`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import psycopg

from kernel.errors import PreconditionFailed, StoreRejected
from kernel.postgres import PostgresDatabase
from kernel.sqlite import SqliteDatabase, rollback

# The SQLite codes of a broken PRIMARY KEY or UNIQUE constraint (other integrity errors are not duplicates).
_DUPLICATE_CODES = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})


class Duplicate(StoreRejected):
    """A write broke a unique key: the row it adds is already stored. Nothing of its transaction is kept."""


def _datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the SQL the stores share must say differently on each backend."""

    name: str
    # A condition that always holds, to start a list of WHERE clauses.
    true: str
    # Appended to a JSON column read: jsonb is read as text, so one msgspec decoder reads both.
    as_text: str
    # The placeholder of a JSON parameter, which is always given as JSON text.
    json_mark: str
    # A time column's parameter from epoch seconds (None stays None): REAL in SQLite, timestamptz
    # in PostgreSQL; `seconds` reads one back as epoch seconds.
    time: Callable[[float | None], Any]
    # A boolean column's parameter: INTEGER 0/1 in SQLite.
    flag: Callable[[bool], Any]
    # Templates of `seconds` and `json_field`.
    seconds_of: str
    field_of: str

    def seconds(self, column: str) -> str:
        """A time column read as epoch seconds (a float), computed by the database rather than per row here."""
        return self.seconds_of.format(column=column)

    def json_field(self, column: str, key: str) -> str:
        """A top-level field of a JSON document column, as text."""
        return self.field_of.format(column=column, key=key)

    def sql(self, text: str) -> str:
        """`text` (written with `?` placeholders) as this backend takes it."""
        return text if self.name == "sqlite" else _percent_s(text)


SQLITE: Final = Dialect(
    "sqlite",
    true="1=1",
    as_text="",
    json_mark="?",
    time=_same,
    flag=int,
    seconds_of="{column}",
    field_of="json_extract({column}, '$.{key}')",
)
POSTGRES: Final = Dialect(
    "postgresql",
    true="true",
    as_text="::text",
    json_mark="?::jsonb",
    time=_datetime,
    flag=bool,
    seconds_of="extract(epoch from {column})::float8",
    field_of="({column}->>'{key}')",
)


@functools.lru_cache(maxsize=1024)
def _percent_s(text: str) -> str:
    return text.replace("?", "%s")


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a transaction; with `many`, `args` is a sequence of argument rows.

    With `expect`, the statement must change exactly that many rows, or the whole
    transaction rolls back with `PreconditionFailed` (a compare-and-set).
    """

    sql: str
    args: Sequence[Any] = ()
    many: bool = False
    expect: int | None = None


class Sql:
    """The process's database (see `kernel.Database`) as stores that share their SQL use it."""

    def __init__(self, db: SqliteDatabase | PostgresDatabase) -> None:
        self.db = db
        self.dialect = SQLITE if isinstance(db, SqliteDatabase) else POSTGRES

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row of a read query."""
        db = self.db
        if isinstance(db, SqliteDatabase):
            return await db.fetch(sql, args)
        async with db.connection() as conn:
            cur = await conn.execute(_percent_s(sql).encode(), args)
            return list(await cur.fetchall())

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Run every statement or none; the rows each one changed. A broken unique key raises `Duplicate`."""
        try:
            return await self._transaction(statements)
        except Exception as exc:
            # The driver's error, or the database's mapping of it to a `StoreError` cause.
            for error in (exc, exc.__cause__):
                if _is_duplicate(error):
                    raise Duplicate(str(error)) from exc
            raise

    async def _transaction(self, statements: Sequence[Statement]) -> list[int]:
        db = self.db
        if isinstance(db, SqliteDatabase):
            return await db.write(_sqlite_transaction, statements)
        changed = []
        async with db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for s in statements:
                sql = _percent_s(s.sql).encode()
                if s.many:
                    await cur.executemany(sql, s.args)
                else:
                    await cur.execute(sql, s.args)
                _check(s, cur.rowcount)
                changed.append(cur.rowcount)
        return changed


def _is_duplicate(error: BaseException | None) -> bool:
    if isinstance(error, sqlite3.IntegrityError):
        return error.sqlite_errorname in _DUPLICATE_CODES
    return isinstance(error, psycopg.errors.UniqueViolation)


class SqlStore:
    """The base of a store whose SQL is the same on both backends: its Database and the `Sql` over it.

    Entering and leaving the store does nothing of its own: the Database is the process's,
    entered (migrated, connected) before every store and left after them.
    """

    def __init__(self, db: SqliteDatabase | PostgresDatabase) -> None:
        self.db = db
        self._sql = Sql(db)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


def _check(statement: Statement, rows: int) -> None:
    if statement.expect is not None and rows != statement.expect:
        raise PreconditionFailed(f"expected {statement.expect} row(s) changed, found {rows}")


def _sqlite_transaction(conn: sqlite3.Connection, statements: Sequence[Statement]) -> list[int]:
    # The whole transaction is one call on the writer's thread: a hop per statement would
    # wait a busy event loop's iteration each.
    changed = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for s in statements:
            cur = conn.executemany(s.sql, s.args) if s.many else conn.execute(s.sql, s.args)
            _check(s, cur.rowcount)
            changed.append(cur.rowcount)
    except BaseException:
        rollback(conn)
        raise
    conn.execute("COMMIT")
    return changed

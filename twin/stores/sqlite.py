"""The zero-setup store: SQLite in WAL mode through aiosqlite.

One connection writes (group-committed batches), another reads, so API reads never
queue behind a write batch.
"""

from __future__ import annotations

import asyncio
import functools
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite
import msgspec

from kernel import StoreError, load_migrations, split_statements
from twin.model import HistoryRow, Json, PresenceEvent, TwinState
from twin.paths import get_path
from twin.stores.aggregates import Bucketizer, next_bucket, zone
from twin.stores.protocol import (
    AggregatePage,
    AggregateQuery,
    AggregateRow,
    HistoryPage,
    HistoryQuery,
    MaintenanceReport,
    Order,
    PointQuery,
    PresenceQuery,
    StoreInfo,
    TwinFilter,
    VehicleSet,
    bucket_cursor,
    fill_page,
    parse_bucket_cursor,
    parse_point_cursor,
    point_cursor,
    retention_cutoff,
)

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(TwinState).decode
_decode_data = msgspec.json.Decoder(dict[str, Any]).decode
_decode_tags = msgspec.json.Decoder(dict[str, Any] | None).decode

# Rows deleted per retention transaction, and per maintenance call, so a long-idle
# hub catching up never holds the write lock for long.
_RETENTION_CHUNK = 5_000
_RETENTION_PER_CALL = 100_000

_TWIN_COLUMNS = "(vehicle_id, fleet, version, connected, last_seen, created_at, updated_at, state)"
_TWIN_CONFLICT = """
ON CONFLICT (vehicle_id) DO UPDATE SET
    fleet = excluded.fleet, version = excluded.version, connected = excluded.connected,
    last_seen = excluded.last_seen, updated_at = excluded.updated_at, state = excluded.state
"""
_HISTORY_COLUMNS = "(vehicle_id, ts, received_at, seq, data)"
_INSERT_PRESENCE = "INSERT INTO presence (vehicle_id, ts, connected, reason) VALUES (?, ?, ?, ?)"

# Rows per INSERT statement at most. Python's sqlite3 drops and retakes the GIL around
# every statement step; with the event loop busy, each retake waits for it, so an
# `executemany` of a thousand rows took about 0.7 s under load where a few
# multi-row statements take milliseconds. Chunks are powers of two so that only a few
# statement texts exist and stay in sqlite3's statement cache. 128 rows of 8 columns
# keep well below SQLite's 32,766 bound variables.
_CHUNK = 128
# Vehicle ids per `load_twins` query.
_LOAD_CHUNK = 500


def _values(width: int, rows: int) -> str:
    return ",".join(["(" + ",".join("?" * width) + ")"] * rows)


def _chunks(n: int) -> list[tuple[int, int]]:
    """(start, size) of full `_CHUNK`s, then the rest split into powers of two."""
    out, start = [], 0
    while n - start >= _CHUNK:
        out.append((start, _CHUNK))
        start += _CHUNK
    size = _CHUNK // 2
    while start < n:
        if n - start >= size:
            out.append((start, size))
            start += size
        size //= 2
    return out


def _insert_rows(conn: sqlite3.Connection, make_sql: Callable[[int], str], rows: Sequence[tuple[Any, ...]]) -> None:
    for start, size in _chunks(len(rows)):
        params = [value for row in rows[start : start + size] for value in row]
        conn.execute(make_sql(size), params)


@functools.cache
def _history_sql(rows: int) -> str:
    return f"INSERT OR IGNORE INTO history {_HISTORY_COLUMNS} VALUES {_values(5, rows)}"


@functools.cache
def _twin_sql(rows: int) -> str:
    return f"INSERT INTO twins {_TWIN_COLUMNS} VALUES {_values(8, rows)}{_TWIN_CONFLICT}"


def _write_rows(
    conn: sqlite3.Connection,
    history: Sequence[tuple[Any, ...]],
    twins: Sequence[tuple[Any, ...]],
    presence: Sequence[tuple[Any, ...]],
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if presence:
            # Two rows per real connection change: few enough for executemany.
            conn.executemany(_INSERT_PRESENCE, presence)
        _insert_rows(conn, _history_sql, history)
        _insert_rows(conn, _twin_sql, twins)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _delete_before(conn: sqlite3.Connection, cutoff: float) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE ts < ? LIMIT ?)",
            (cutoff, _RETENTION_CHUNK),
        )
        count = cur.rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return count


async def _configure(conn: aiosqlite.Connection, synchronous: str) -> None:
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute(f"PRAGMA synchronous={synchronous}")
    await conn.execute("PRAGMA busy_timeout=5000")


async def open_beside(path: str, *, synchronous: str, store: str, table: str) -> aiosqlite.Connection:
    """A connection of another store (rules, commands, security) to the hub's database file.

    Configured as the twin store's are; `table` must exist, since the hub's migrations
    create every store's tables.
    """
    if path == ":memory:":
        raise StoreError(f"the {store} store needs a database file; an in-memory SQLite database is private")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await _configure(conn, synchronous)
        async with conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)) as cur:
            found = await cur.fetchone()
        if found is None:
            raise StoreError(
                f"database {path} has no {store} tables; run `fleethub migrate` "
                "(the hub applies migrations when it starts)"
            )
    except BaseException:
        await conn.close()
        raise
    return conn


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/or/absolute.db` (or `sqlite://:memory:`) to a filesystem path."""
    if not url.startswith("sqlite://"):
        raise StoreError(f"not a SQLite URL: {url!r}; expected sqlite:///path/to.db")
    path = url.removeprefix("sqlite://")
    if path in {":memory:", "/:memory:"}:
        return ":memory:"
    # As in SQLAlchemy: three slashes start a relative path, four an absolute one.
    return path[1:] if path.startswith("/") else path


class SqliteStore:
    def __init__(self, url: str, *, synchronous: str = "NORMAL", retention_days: int = 730) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._synchronous = synchronous
        self.retention_days = retention_days
        # One transaction at a time on the writer: batches and retention deletes both use it.
        self._write_lock = asyncio.Lock()
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._schema_version = 0

    async def __aenter__(self) -> Self:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._migrate(self._writer)
        # An in-memory database is private to its connection, so reads share the writer.
        self._reader = self._writer if self.path == ":memory:" else await self._connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            await conn.close()
        self._reader = self._writer = None

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await _configure(conn, self._synchronous)
        await conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        async with conn.execute("SELECT version FROM schema_version") as cur:
            applied = {int(r[0]) for r in await cur.fetchall()}
        current = max(applied, default=0)
        for migration in load_migrations("sqlite"):
            # Every missing number runs, not only those above the highest: parts of the hub
            # own number ranges, so a lower number can land after a higher one.
            if migration.version in applied:
                continue
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in split_statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            current = max(current, migration.version)
        self._schema_version = current

    @property
    def _w(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StoreError("the SQLite store is not open")
        return self._writer

    @property
    def _r(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StoreError("the SQLite store is not open")
        return self._reader

    async def run_in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(sqlite3_connection, *args)` as one call on the writer connection's thread.

        Another part of the hub with tables in this database (the rules store) writes
        through here: calls run one after another on one thread, so its transactions
        and the ingest commits never wait for each other in SQLite's busy handler,
        which sleeps in steps of up to 100 ms. `fn` must finish any transaction it opens.
        """
        return await in_connection_thread(self._w, fn, *args)

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        # One hop to the reader's thread (aiosqlite's cursor takes three: execute, fetch, close).
        return await in_connection_thread(self._r, fetch_all, sql, args)

    async def load_twin(self, vehicle_id: str) -> TwinState | None:
        rows = await self._fetch("SELECT state FROM twins WHERE vehicle_id = ?", (vehicle_id,))
        return _decode_state(rows[0][0]) if rows else None

    async def load_twins(self, vehicle_ids: Sequence[str]) -> dict[str, TwinState]:
        found: dict[str, TwinState] = {}
        for start in range(0, len(vehicle_ids), _LOAD_CHUNK):
            ids = vehicle_ids[start : start + _LOAD_CHUNK]
            sql = f"SELECT state FROM twins WHERE vehicle_id IN ({','.join('?' * len(ids))})"
            rows = await self._fetch(sql, tuple(ids))
            for (raw,) in rows:
                state = _decode_state(raw)
                found[state.vehicle_id] = state
        return found

    async def write_batch(
        self, twins: Sequence[TwinState], history: Sequence[HistoryRow], presence: Sequence[PresenceEvent] = ()
    ) -> None:
        async with self._write_lock:
            await self._write_batch(twins, history, presence)

    async def _write_batch(
        self, twins: Sequence[TwinState], history: Sequence[HistoryRow], presence: Sequence[PresenceEvent]
    ) -> None:
        history_rows = [(h.vehicle_id, h.ts, h.received_at, h.seq, _encode(h.data).decode()) for h in history]
        twin_rows = [
            (
                t.vehicle_id,
                t.fleet,
                t.version,
                int(t.connection.connected),
                t.connection.last_seen,
                t.created_at,
                t.updated_at,
                _encode(t).decode(),
            )
            for t in twins
        ]
        # The whole transaction is one hop to the connection's thread: each hop back to a
        # busy event loop costs a loop iteration, and four of them per batch added up.
        presence_rows = [(p.vehicle_id, p.ts, int(p.connected), p.reason) for p in presence]
        await in_connection_thread(self._w, _write_rows, history_rows, twin_rows, presence_rows)

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        where, args = ["1=1"], list[Any]()
        if query.fleet is not None:
            where.append("fleet = ?")
            args.append(query.fleet)
        if query.connected is not None:
            where.append("connected = ?")
            args.append(int(query.connected))
        if query.after is not None:
            where.append("vehicle_id > ?")
            args.append(query.after)
        sql = f"SELECT state FROM twins WHERE {' AND '.join(where)} ORDER BY vehicle_id LIMIT ?"
        rows = await self._fetch(sql, (*args, query.limit))
        return [_decode_state(r[0]) for r in rows]

    async def count_twins(self, fleet: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM twins", tuple[str, ...]()
        if fleet is not None:
            sql, args = sql + " WHERE fleet = ?", (fleet,)
        rows = await self._fetch(sql, args)
        return int(rows[0][0]) if rows else 0

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        where, args = ["vehicle_id = ?"], list[Any]([query.vehicle_id])
        if query.start is not None:
            where.append("ts >= ?")
            args.append(query.start)
        if query.end is not None:
            where.append("ts < ?")
            args.append(query.end)
        direction = "ASC" if query.order is Order.ASC else "DESC"
        sql = (
            f"SELECT ts, received_at, seq, data FROM history WHERE {' AND '.join(where)} "
            f"ORDER BY ts {direction}, id {direction} LIMIT ?"
        )
        rows = await self._fetch(sql, (*args, query.limit))
        return [HistoryRow(query.vehicle_id, r[0], r[1], r[2], project(_decode_data(r[3]), query.fields)) for r in rows]

    async def presence_history(self, query: PresenceQuery) -> list[PresenceEvent]:
        where, args = ["vehicle_id = ?"], list[Any]([query.vehicle_id])
        if query.start is not None:
            where.append("ts >= ?")
            args.append(query.start)
        if query.end is not None:
            where.append("ts < ?")
            args.append(query.end)
        direction = "ASC" if query.order is Order.ASC else "DESC"
        sql = (
            f"SELECT ts, connected, reason FROM presence WHERE {' AND '.join(where)} "
            f"ORDER BY ts {direction}, id {direction} LIMIT ?"
        )
        async with self._r.execute(sql, (*args, query.limit)) as cur:
            rows = await cur.fetchall()
        return [PresenceEvent(query.vehicle_id, r[0], bool(r[1]), r[2]) for r in rows]

    async def _vehicles(self, selection: VehicleSet) -> list[str]:
        if not selection.needs_twins:
            return sorted(set(selection.ids or ()))
        sql, args = "SELECT vehicle_id, fleet, json_extract(state, '$.tags') FROM twins", list[Any]()
        if selection.fleet is not None:
            sql, args = sql + " WHERE fleet = ?", [selection.fleet]
        found = await self._fetch(sql + " ORDER BY vehicle_id", args)
        wanted = set(selection.ids) if selection.ids is not None else None
        out = []
        for vid, fleet, tags_json in found:
            tags = _decode_tags(tags_json) if tags_json else None
            probe = TwinState(vehicle_id=vid, created_at=0, updated_at=0, fleet=fleet, tags=tags or {})
            if selection.admits(probe) and (wanted is None or vid in wanted):
                out.append(vid)
        return out

    async def _points(
        self,
        vid: str,
        lo: float | None,
        hi: float | None,
        hi_inclusive: bool,
        order: Order,
        after: tuple[float, int] | None,
        n: int,
    ) -> list[tuple[int, HistoryRow]]:
        where, args = ["vehicle_id = ?"], list[Any]([vid])
        if lo is not None:
            where.append("ts >= ?")
            args.append(lo)
        if hi is not None:
            where.append("ts <= ?" if hi_inclusive else "ts < ?")
            args.append(hi)
        direction, beyond = ("ASC", ">") if order is Order.ASC else ("DESC", "<")
        if after is not None:
            # The plain range test lets the (vehicle_id, ts) index start at the cursor.
            where.append(f"ts {beyond}= ? AND (ts {beyond} ? OR id {beyond} ?)")
            args.extend([after[0], after[0], after[1]])
        sql = (
            f"SELECT id, ts, received_at, seq, data FROM history WHERE {' AND '.join(where)} "
            f"ORDER BY ts {direction}, id {direction} LIMIT ?"
        )
        rows = await self._fetch(sql, (*args, n))
        return [(r[0], HistoryRow(vid, r[1], r[2], r[3], _decode_data(r[4]))) for r in rows]

    async def _page(
        self,
        vids: list[str],
        lo: float | None,
        hi: float | None,
        hi_inclusive: bool,
        query: PointQuery,
        cursor: str | None,
    ) -> HistoryPage:
        resume = None
        if cursor is not None:
            vid, ts, row_id = parse_point_cursor(cursor)
            resume = (vid, (ts, row_id))

        async def fetch(vid: str, after: tuple[float, int] | None, n: int) -> list[tuple[int, HistoryRow]]:
            return await self._points(vid, lo, hi, hi_inclusive, query.order, after, n)

        items, more = await fill_page(vids, query.order, resume, query.limit, fetch)
        rows = [HistoryRow(r.vehicle_id, r.ts, r.received_at, r.seq, project(r.data, query.fields)) for _, r in items]
        cursor = point_cursor(items[-1][1].vehicle_id, items[-1][1].ts, items[-1][0]) if more else None
        return HistoryPage(rows=rows, next_cursor=cursor)

    async def history_page(self, query: PointQuery) -> HistoryPage:
        vids = await self._vehicles(query.vehicles)
        return await self._page(vids, query.start, query.end, False, query, query.cursor)

    async def history_until(
        self, vehicle_id: str, at: float, *, cursor: str | None = None, limit: int = 1000
    ) -> HistoryPage:
        query = PointQuery(VehicleSet.one(vehicle_id), limit=limit)
        return await self._page([vehicle_id], None, at, True, query, cursor)

    async def aggregate(self, query: AggregateQuery) -> AggregatePage:
        tz = zone(query.tz)
        resume = parse_bucket_cursor(query.cursor) if query.cursor is not None else None

        async def fetch(vid: str, after: float | None, n: int) -> list[AggregateRow]:
            lo = -math.inf if query.start is None else query.start
            if after is not None:
                lo = max(lo, next_bucket(after, query.bucket, tz))
            where, args = ["vehicle_id = ?", "ts >= ?"], list[Any]([vid, lo])
            if query.end is not None:
                where.append("ts < ?")
                args.append(query.end)
            sql = f"SELECT ts, id, data FROM history WHERE {' AND '.join(where)} ORDER BY ts, id"
            folder = Bucketizer(vid, query.bucket, query.aggs, tz)
            out: list[AggregateRow] = []
            async with self._r.execute(sql, args) as cur:
                async for ts, row_id, data in cur:
                    done = folder.feed(ts, row_id, _decode_data(data))
                    if done is not None:
                        out.append(done)
                        if len(out) >= n:
                            return out
            last = folder.finish()
            return [*out, last][:n] if last is not None else out

        items, more = await fill_page(await self._vehicles(query.vehicles), Order.ASC, resume, query.limit, fetch)
        cursor = bucket_cursor(items[-1].vehicle_id, items[-1].bucket) if more else None
        return AggregatePage(rows=items, next_cursor=cursor)

    async def maintain(self, now: float) -> MaintenanceReport:
        """Delete history older than the retention, in short transactions."""
        cutoff = retention_cutoff(now, self.retention_days)
        if cutoff is None:
            return MaintenanceReport()
        deleted = 0
        while deleted < _RETENTION_PER_CALL:
            async with self._write_lock:
                # One call per chunk: the writer's thread may run other parts' transactions between calls.
                count = await self.run_in_writer(_delete_before, cutoff)
            deleted += count
            if count < _RETENTION_CHUNK:
                break
        async with self._write_lock:
            # Presence rows are few (two per connection); one statement keeps up with them.
            await self._w.execute("DELETE FROM presence WHERE ts < ?", (cutoff,))
        return MaintenanceReport(retention_cutoff=cutoff, rows_deleted=deleted)

    async def info(self) -> StoreInfo:
        return StoreInfo(backend="sqlite", url=self.url, schema_version=self._schema_version, detail="WAL")

    async def ping(self) -> None:
        async with self._r.execute("SELECT 1") as cur:
            await cur.fetchone()


async def in_connection_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(sqlite3_connection, *args)` on the aiosqlite connection's own thread.

    aiosqlite has no public way to run several statements in one hop; `_execute` is the
    method all of its public calls go through (aiosqlite 0.20-0.22).
    """

    def call() -> T:
        return fn(conn._conn, *args)

    result: T = await conn._execute(call)  # type: ignore[no-untyped-call]  # aiosqlite leaves it unannotated
    return result


def fetch_all(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Any]:
    """Every row of a query, on a plain sqlite3 connection (run it in the connection's thread)."""
    return conn.execute(sql, args).fetchall()


def project(data: dict[str, Json], fields: tuple[str, ...] | None) -> dict[str, Json]:
    """Keep only the requested (dotted) field paths of a history row's data."""
    if fields is None:
        return data
    out: dict[str, Json] = {}
    for name in fields:
        found, value = get_path(data, tuple(name.split(".")))
        if found:
            out[name] = value
    return out

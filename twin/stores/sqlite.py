"""The zero-setup store: twins and history in SQLite, through the process's `SqliteDatabase`.

A group-committed batch is one call on the database's writer thread; reads take one
of its read connections, so API reads never queue behind a write batch.
"""

from __future__ import annotations

import asyncio
import functools
import math
import sqlite3
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

import msgspec

from kernel import DatabaseInfo, Sql, SqliteDatabase, rollback
from twin.model import HistoryRow, PresenceEvent, TwinState
from twin.selector import VehicleSelector
from twin.stores.aggregates import Bucketizer
from twin.stores.protocol import (
    AggregateQuery,
    AggregateRow,
    MaintenanceReport,
    Statement,
    retention_cutoff,
)
from twin.stores.sql import SqlReads

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
    statements: Sequence[tuple[str, tuple[Any, ...]]] = (),
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if presence:
            # Two rows per real connection change: few enough for executemany.
            conn.executemany(_INSERT_PRESENCE, presence)
        _insert_rows(conn, _history_sql, history)
        _insert_rows(conn, _twin_sql, twins)
        for sql, args in statements:
            conn.execute(sql, args)
    except BaseException:
        rollback(conn)
        raise
    conn.execute("COMMIT")


def _delete_presence_before(conn: sqlite3.Connection, cutoff: float) -> None:
    conn.execute("DELETE FROM presence WHERE ts < ?", (cutoff,))


def _delete_before(conn: sqlite3.Connection, cutoff: float) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE ts < ? LIMIT ?)",
            (cutoff, _RETENTION_CHUNK),
        )
        count = cur.rowcount
    except BaseException:
        rollback(conn)
        raise
    conn.execute("COMMIT")
    return count


class SqliteStore(SqlReads):
    """Twins, history and presence in the hub's SQLite database (see `kernel.SqliteDatabase`)."""

    def __init__(self, db: SqliteDatabase, *, retention_days: int = 730) -> None:
        self.db = db
        self._sql = Sql(db)
        self.retention_days = retention_days
        # One transaction at a time of this store: batches and retention deletes both take it.
        self._write_lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        # One hop to a reader's thread (aiosqlite's cursor takes three: execute, fetch, close).
        return await self.db.fetch(sql, args)

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
        self,
        twins: Sequence[TwinState],
        history: Sequence[HistoryRow],
        presence: Sequence[PresenceEvent] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        async with self._write_lock:
            await self._write_batch(twins, history, presence, statements)

    async def _write_batch(
        self,
        twins: Sequence[TwinState],
        history: Sequence[HistoryRow],
        presence: Sequence[PresenceEvent],
        statements: Sequence[Statement],
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
        extra = [statement("?") for statement in statements]
        await self.db.write(_write_rows, history_rows, twin_rows, presence_rows, extra)

    async def _vehicles(self, selection: VehicleSelector) -> list[str]:
        if not selection.needs_twins:
            return sorted(set(selection.vehicle_ids or ()))
        sql, args = "SELECT vehicle_id, fleet, json_extract(state, '$.tags') FROM twins", list[Any]()
        if selection.fleet is not None:
            sql, args = sql + " WHERE fleet = ?", [selection.fleet]
        found = await self._fetch(sql + " ORDER BY vehicle_id", args)
        out = []
        for vid, fleet, tags_json in found:
            tags = _decode_tags(tags_json) if tags_json else None
            probe = TwinState(vehicle_id=vid, created_at=0, updated_at=0, fleet=fleet, tags=tags or {})
            if selection.admits(probe):
                out.append(vid)
        return out

    async def _buckets(
        self, vid: str, query: AggregateQuery, tz: ZoneInfo, start: float | None, n: int
    ) -> list[AggregateRow]:
        # Folded here, in reading order: SQLite has no exact decimal sum to do it in SQL.
        where, args = ["vehicle_id = ?", "ts >= ?"], list[Any]([vid, -math.inf if start is None else start])
        if query.end is not None:
            where.append("ts < ?")
            args.append(query.end)
        sql = f"SELECT ts, id, data FROM history WHERE {' AND '.join(where)} ORDER BY ts, id"
        folder = Bucketizer(vid, query.bucket, query.aggs, tz)
        out: list[AggregateRow] = []
        async with self.db.reading() as conn, conn.execute(sql, args) as cur:
            async for ts, row_id, data in cur:
                done = folder.feed(ts, row_id, _decode_data(data))
                if done is not None:
                    out.append(done)
                    if len(out) >= n:
                        return out
        last = folder.finish()
        return [*out, last][:n] if last is not None else out

    async def maintain(self, now: float) -> MaintenanceReport:
        """Delete history older than the retention, in short transactions."""
        cutoff = retention_cutoff(now, self.retention_days)
        if cutoff is None:
            return MaintenanceReport()
        deleted = 0
        while deleted < _RETENTION_PER_CALL:
            async with self._write_lock:
                # One call per chunk: the writer's thread may run other parts' transactions between calls.
                count = await self.db.write(_delete_before, cutoff)
            deleted += count
            if count < _RETENTION_CHUNK:
                break
        async with self._write_lock:
            # Presence rows are few (two per connection); one statement keeps up with them.
            await self.db.write(_delete_presence_before, cutoff)
        return MaintenanceReport(retention_cutoff=cutoff, rows_deleted=deleted)

    async def info(self) -> DatabaseInfo:
        return await self.db.info()

    async def ping(self) -> None:
        await self.db.ping()

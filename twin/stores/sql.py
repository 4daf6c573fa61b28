"""Twin and history reads the SQLite and PostgreSQL stores share: each query written once.

The two stores write differently (a multi-row INSERT on SQLite's writer thread; COPY,
partitions and a rollup on PostgreSQL) and choose vehicles and fold aggregates their own
way, but list twins, read presence and page raw history with the same SQL, sent through
`kernel.Sql`. Time columns are REAL seconds in SQLite and timestamptz in PostgreSQL; the
dialect turns parameters into the column's type and has the database read them back as
seconds, so rows are built the same way on both.
"""

from __future__ import annotations

import abc
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from kernel import Sql, vehicles_where
from twin.model import HistoryRow, PresenceEvent, TwinState
from twin.selector import VehicleSelector
from twin.stores.aggregates import next_bucket, time_zone
from twin.stores.protocol import (
    AggregatePage,
    AggregateQuery,
    AggregateRow,
    HistoryPage,
    HistoryQuery,
    Order,
    PointQuery,
    PresenceQuery,
    TwinFilter,
    bucket_cursor,
    fill_page,
    parse_bucket_cursor,
    parse_point_cursor,
    point_cursor,
    project,
)

_decode_state = msgspec.json.Decoder(TwinState).decode
_decode_data = msgspec.json.Decoder(dict[str, Any]).decode


class SqlReads(abc.ABC):
    """The reads of the twin store's SQL backends; a subclass sets `_sql` and chooses vehicles and buckets."""

    _sql: Sql

    @abc.abstractmethod
    async def _vehicles(self, selection: VehicleSelector) -> list[str]:
        """The ids a selection names, sorted."""

    @abc.abstractmethod
    async def _buckets(
        self, vid: str, query: AggregateQuery, tz: ZoneInfo, start: float | None, n: int
    ) -> list[AggregateRow]:
        """Up to `n` buckets of one vehicle from `start` (a bucket start, or the query's) on."""

    # -- twins and presence --------------------------------------------------------------

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        d = self._sql.dialect
        where, args = [d.true], list[Any]()
        if query.fleet is not None:
            where.append("fleet = ?")
            args.append(query.fleet)
        if query.connected is not None:
            where.append("connected = ?")
            args.append(d.flag(query.connected))
        if query.after is not None:
            where.append("vehicle_id > ?")
            args.append(query.after)
        chosen = query.vehicles
        narrowed = None if chosen is None else vehicles_where(chosen, "vehicle_id", d)
        if chosen is not None and narrowed is None:
            # SQLite has no md5: the partitions are chosen here (worker mode runs on PostgreSQL).
            sql = f"SELECT vehicle_id, state{d.as_text} FROM twins WHERE {' AND '.join(where)} ORDER BY vehicle_id"
            rows = await self._sql.fetch(sql, args)
            return [_decode_state(r[1]) for r in rows if chosen(r[0])][: query.limit]
        if narrowed is not None:
            condition, arg = narrowed
            where.append(condition)
            args.append(arg)
        sql = f"SELECT state{d.as_text} FROM twins WHERE {' AND '.join(where)} ORDER BY vehicle_id LIMIT ?"
        rows = await self._sql.fetch(sql, (*args, query.limit))
        return [_decode_state(r[0]) for r in rows]

    async def count_twins(self, fleet: str | None = None) -> int:
        if fleet is None:
            rows = await self._sql.fetch("SELECT count(*) FROM twins")
        else:
            rows = await self._sql.fetch("SELECT count(*) FROM twins WHERE fleet = ?", (fleet,))
        return int(rows[0][0]) if rows else 0

    async def presence_history(self, query: PresenceQuery) -> list[PresenceEvent]:
        d = self._sql.dialect
        where, args = ["vehicle_id = ?"], list[Any]([query.vehicle_id])
        if query.start is not None:
            where.append("ts >= ?")
            args.append(d.time(query.start))
        if query.end is not None:
            where.append("ts < ?")
            args.append(d.time(query.end))
        direction = "ASC" if query.order is Order.ASC else "DESC"
        sql = (
            f"SELECT {d.seconds('ts')}, connected, reason FROM presence WHERE {' AND '.join(where)} "
            f"ORDER BY ts {direction}, id {direction} LIMIT ?"
        )
        rows = await self._sql.fetch(sql, (*args, query.limit))
        return [PresenceEvent(query.vehicle_id, r[0], bool(r[1]), r[2]) for r in rows]

    # -- raw history -----------------------------------------------------------------------

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        # One query, no cursor: the unpaged read of one vehicle (backtests, exports of a range).
        rows = await self._rows(query.vehicle_id, query.start, query.end, False, query.order, None, query.limit)
        return [HistoryRow(query.vehicle_id, r[1], r[2], r[3], project(_decode_data(r[4]), query.fields)) for r in rows]

    async def history_page(self, query: PointQuery) -> HistoryPage:
        vids = await self._vehicles(query.vehicles)
        return await self._page(vids, query.start, query.end, False, query, query.cursor)

    async def history_until(
        self, vehicle_id: str, at: float, *, cursor: str | None = None, limit: int = 1000
    ) -> HistoryPage:
        query = PointQuery(VehicleSelector.one(vehicle_id), limit=limit)
        return await self._page([vehicle_id], None, at, True, query, cursor)

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

        fields = query.fields

        async def fetch(vid: str, after: tuple[float, int] | None, n: int) -> list[tuple[int, HistoryRow]]:
            rows = await self._rows(vid, lo, hi, hi_inclusive, query.order, after, n)
            return [(int(r[0]), HistoryRow(vid, r[1], r[2], r[3], project(_decode_data(r[4]), fields))) for r in rows]

        items, more = await fill_page(vids, query.order, resume, query.limit, fetch)
        cursor = point_cursor(items[-1][1].vehicle_id, items[-1][1].ts, items[-1][0]) if more else None
        return HistoryPage(rows=[row for _, row in items], next_cursor=cursor)

    async def _rows(
        self,
        vid: str,
        lo: float | None,
        hi: float | None,
        hi_inclusive: bool,
        order: Order,
        after: tuple[float, int] | None,
        n: int,
    ) -> list[Any]:
        """(id, ts, received_at, seq, data text) of one vehicle's rows in range, after a keyset position."""
        d = self._sql.dialect
        where, args = ["vehicle_id = ?"], list[Any]([vid])
        if lo is not None:
            where.append("ts >= ?")
            args.append(d.time(lo))
        if hi is not None:
            where.append("ts <= ?" if hi_inclusive else "ts < ?")
            args.append(d.time(hi))
        direction, beyond = ("ASC", ">") if order is Order.ASC else ("DESC", "<")
        if after is not None:
            # The plain range test lets the (vehicle_id, ts) index start at the cursor.
            where.append(f"ts {beyond}= ? AND (ts {beyond} ? OR id {beyond} ?)")
            at = d.time(after[0])
            args.extend([at, at, after[1]])
        sql = (
            f"SELECT id, {d.seconds('ts')}, {d.seconds('received_at')}, seq, data{d.as_text} FROM history "
            f"WHERE {' AND '.join(where)} ORDER BY ts {direction}, id {direction} LIMIT ?"
        )
        return await self._sql.fetch(sql, (*args, n))

    # -- aggregates ------------------------------------------------------------------------

    async def aggregate(self, query: AggregateQuery) -> AggregatePage:
        tz = time_zone(query.tz)
        resume = parse_bucket_cursor(query.cursor) if query.cursor is not None else None

        async def fetch(vid: str, after: float | None, n: int) -> list[AggregateRow]:
            start = query.start
            if after is not None:
                resume_at = next_bucket(after, query.bucket, tz)
                start = resume_at if start is None else max(start, resume_at)
            return await self._buckets(vid, query, tz, start, n)

        items, more = await fill_page(await self._vehicles(query.vehicles), Order.ASC, resume, query.limit, fetch)
        cursor = bucket_cursor(items[-1].vehicle_id, items[-1].bucket) if more else None
        return AggregatePage(rows=items, next_cursor=cursor)

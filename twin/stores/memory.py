"""An in-memory store with the same contract as the SQL stores, for fast tests."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from kernel import DatabaseInfo
from twin.model import HistoryRow, PresenceEvent, TwinState
from twin.selector import VehicleSelector
from twin.stores.aggregates import Bucketizer, next_bucket, time_zone
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
    Statement,
    TwinFilter,
    bucket_cursor,
    fill_page,
    parse_bucket_cursor,
    parse_point_cursor,
    point_cursor,
    project,
    retention_cutoff,
)


class MemoryStore:
    def __init__(self, *, retention_days: int = 730) -> None:
        self.twins: dict[str, TwinState] = {}
        self.rows: list[HistoryRow] = []
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.retention_days = retention_days
        # Row ids in write order, parallel to `rows`: the tie-break of equal device times.
        self._ids: list[int] = []
        self._next_id = 1
        self._keys: set[tuple[str, float, int]] = set()
        self.batches = 0
        self.presence: list[PresenceEvent] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def load_twin(self, vehicle_id: str) -> TwinState | None:
        state = self.twins.get(vehicle_id)
        return copy.deepcopy(state) if state is not None else None

    async def load_twins(self, vehicle_ids: Sequence[str]) -> dict[str, TwinState]:
        return {vid: copy.deepcopy(self.twins[vid]) for vid in vehicle_ids if vid in self.twins}

    async def write_batch(
        self,
        twins: Sequence[TwinState],
        history: Sequence[HistoryRow],
        presence: Sequence[PresenceEvent] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        self.batches += 1
        # No SQL here: the statements are kept as they would be written.
        self.statements.extend(statement("?") for statement in statements)
        self.presence.extend(presence)
        for row in history:
            if row.seq is not None:
                key = (row.vehicle_id, row.ts, row.seq)
                if key in self._keys:
                    continue
                self._keys.add(key)
            self.rows.append(row)
            self._ids.append(self._next_id)
            self._next_id += 1
        for twin in twins:
            self.twins[twin.vehicle_id] = copy.deepcopy(twin)

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        out = [
            copy.deepcopy(t)
            for vid, t in sorted(self.twins.items())
            if (query.fleet is None or t.fleet == query.fleet)
            and (query.connected is None or t.connection.connected == query.connected)
            and (query.after is None or vid > query.after)
            and (query.vehicles is None or query.vehicles(vid))
        ]
        return out[: query.limit]

    async def count_twins(self, fleet: str | None = None) -> int:
        return sum(1 for t in self.twins.values() if fleet is None or t.fleet == fleet)

    def _series(self, vehicle_id: str) -> list[tuple[float, int, HistoryRow]]:
        """One vehicle's rows in (device time, row id) order."""
        found = [(r.ts, i, r) for r, i in zip(self.rows, self._ids, strict=True) if r.vehicle_id == vehicle_id]
        found.sort(key=lambda t: (t[0], t[1]))
        return found

    async def presence_history(self, query: PresenceQuery) -> list[PresenceEvent]:
        found = sorted(
            (
                p
                for p in self.presence
                if p.vehicle_id == query.vehicle_id
                and (query.start is None or p.ts >= query.start)
                and (query.end is None or p.ts < query.end)
            ),
            key=lambda p: p.ts,
            reverse=query.order is Order.DESC,
        )
        return found[: query.limit]

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        rows = [
            r
            for ts, _, r in self._series(query.vehicle_id)
            if (query.start is None or ts >= query.start) and (query.end is None or ts < query.end)
        ]
        if query.order is Order.DESC:
            rows.reverse()
        return [
            HistoryRow(r.vehicle_id, r.ts, r.received_at, r.seq, project(r.data, query.fields))
            for r in rows[: query.limit]
        ]

    async def _vehicles(self, selection: VehicleSelector) -> list[str]:
        if selection.needs_twins:
            return sorted(t.vehicle_id for t in self.twins.values() if selection.admits(t))
        return sorted(set(selection.vehicle_ids or ()))

    async def history_page(self, query: PointQuery) -> HistoryPage:
        resume = None
        if query.cursor is not None:
            vid, ts, row_id = parse_point_cursor(query.cursor)
            resume = (vid, (ts, row_id))
        lo = -math.inf if query.start is None else query.start
        hi = math.inf if query.end is None else query.end
        return await self._page(await self._vehicles(query.vehicles), lo, hi, False, query, resume)

    async def history_until(
        self, vehicle_id: str, at: float, *, cursor: str | None = None, limit: int = 1000
    ) -> HistoryPage:
        resume = None
        if cursor is not None:
            vid, ts, row_id = parse_point_cursor(cursor)
            resume = (vid, (ts, row_id))
        query = PointQuery(VehicleSelector.one(vehicle_id), limit=limit)
        return await self._page([vehicle_id], -math.inf, at, True, query, resume)

    async def _page(
        self,
        vids: list[str],
        lo: float,
        hi: float,
        hi_inclusive: bool,
        query: PointQuery,
        resume: tuple[str, tuple[float, int]] | None,
    ) -> HistoryPage:
        desc = query.order is Order.DESC

        async def fetch(vid: str, after: tuple[float, int] | None, n: int) -> list[tuple[int, HistoryRow]]:
            series = [
                (i, r)
                for ts, i, r in self._series(vid)
                if ts >= lo
                and (ts <= hi if hi_inclusive else ts < hi)
                and (after is None or ((ts, i) < after if desc else (ts, i) > after))
            ]
            if desc:
                series.reverse()
            return series[:n]

        items, more = await fill_page(vids, query.order, resume, query.limit, fetch)
        rows = [HistoryRow(r.vehicle_id, r.ts, r.received_at, r.seq, project(r.data, query.fields)) for _, r in items]
        cursor = point_cursor(items[-1][1].vehicle_id, items[-1][1].ts, items[-1][0]) if more else None
        return HistoryPage(rows=rows, next_cursor=cursor)

    async def aggregate(self, query: AggregateQuery) -> AggregatePage:
        tz = time_zone(query.tz)
        resume = parse_bucket_cursor(query.cursor) if query.cursor is not None else None

        async def fetch(vid: str, after: float | None, n: int) -> list[AggregateRow]:
            lo = -math.inf if query.start is None else query.start
            if after is not None:
                lo = max(lo, next_bucket(after, query.bucket, tz))
            hi = math.inf if query.end is None else query.end
            folder = Bucketizer(vid, query.bucket, query.aggs, tz)
            out: list[AggregateRow] = []
            for ts, row_id, row in self._series(vid):
                if lo <= ts < hi:
                    done = folder.feed(ts, row_id, row.data)
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
        cutoff = retention_cutoff(now, self.retention_days)
        if cutoff is None:
            return MaintenanceReport()
        self.presence = [p for p in self.presence if p.ts >= cutoff]
        keep = [k for k, r in enumerate(self.rows) if r.ts >= cutoff]
        deleted = len(self.rows) - len(keep)
        if deleted:
            self.rows = [self.rows[k] for k in keep]
            self._ids = [self._ids[k] for k in keep]
            self._keys = {(r.vehicle_id, r.ts, r.seq) for r in self.rows if r.seq is not None}
        return MaintenanceReport(retention_cutoff=cutoff, rows_deleted=deleted)

    async def info(self) -> DatabaseInfo:
        return DatabaseInfo(backend="memory", url="memory://", schema_version=0)

    async def ping(self) -> None:
        return None

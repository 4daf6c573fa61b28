"""The production store: PostgreSQL (optionally TimescaleDB) through psycopg 3 and a pool.

A batch is one transaction: history rows are COPYed into a per-connection temporary
staging table and moved with INSERT ... ON CONFLICT DO NOTHING (so resends are
dropped), twins likewise with an upsert. Any failure, a dropped connection included,
raises and rolls the whole batch back; the twin service retries it and the pool
replaces broken connections, checking each one before lending it out.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from kernel import StoreError
from twin.model import HistoryRow, PresenceEvent, TwinState
from twin.stores.aggregates import next_bucket, zone
from twin.stores.pg_copy import (
    COPY_HISTORY,
    COPY_TWINS,
    MOVE_HISTORY,
    MOVE_TWINS,
    STAGING,
    history_copy,
    json_text,
    twins_copy,
)
from twin.stores.pg_partitions import Partitions
from twin.stores.pg_rollup import MARK_DIRTY, aggregate_params, aggregate_rows, aggregate_sql, refresh
from twin.stores.pg_schema import Mode, PostgresOptions, prepare
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
from twin.stores.sqlite import project

__all__ = ["PostgresOptions", "PostgresStore"]

log = structlog.get_logger(__name__)

_decode_state = msgspec.json.Decoder(TwinState).decode
_decode_data = msgspec.json.Decoder(dict[str, Any]).decode

# Minutes younger than this are still being written: the rollup leaves them to raw reads.
_SETTLE = timedelta(minutes=2)
_REFRESH_CHUNK = 2_000
_REFRESH_BUDGET_S = 5.0


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@asynccontextmanager
async def pool_connection(pool: AsyncConnectionPool | None, store: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection from `pool`, with a pool that is exhausted or a server that is gone as `StoreError`."""
    if pool is None:
        raise StoreError(f"{store} is not open")
    try:
        async with pool.connection() as conn:
            yield conn
    except PoolTimeout as exc:
        raise StoreError(f"no PostgreSQL connection available: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise StoreError(f"PostgreSQL connection failed: {exc}") from exc


def redact(url: str) -> str:
    """The URL without its password, for logs and the health endpoint."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore:
    def __init__(self, url: str, *, options: PostgresOptions | None = None) -> None:
        self.url = url
        self.options = options or PostgresOptions()
        self.mode = Mode.NATIVE
        self._pool: AsyncConnectionPool | None = None
        self._schema_version = 0
        self._detail = ""
        self._partitions = Partitions(self.options.chunk_interval_hours, self.options.premake_partitions)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                self.mode, self._schema_version, self._detail = await prepare(conn, self.options)
                if self.mode is Mode.NATIVE:
                    await self._fix_partition_width(conn)
                    await self._partitions.load(conn)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot open PostgreSQL at {redact(self.url)}: {exc}") from None
        pool = AsyncConnectionPool(
            self.url,
            min_size=self.options.pool_min_size,
            max_size=self.options.pool_max_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="fleethub-store",
        )
        await pool.open(wait=True, timeout=30)
        self._pool = pool
        if self.mode is Mode.NATIVE:
            await self._partitions.premake_from(pool, time.time())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(STAGING)

    async def _fix_partition_width(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Partitions keep the width they were created with; a changed setting would overlap them."""
        hours = self.options.chunk_interval_hours
        # Workers starting together both get here after migrating: the first one records it.
        await conn.execute(
            "INSERT INTO store_meta (key, value) VALUES ('partition_hours', %s) ON CONFLICT (key) DO NOTHING",
            (str(hours),),
        )
        cur = await conn.execute("SELECT value FROM store_meta WHERE key = 'partition_hours'")
        row = await cur.fetchone()
        if row is not None and int(row[0]) != hours:
            log.warning(
                "store.pg_chunk_interval_hours differs from the existing partitions; keeping theirs",
                configured=hours,
                existing=int(row[0]),
            )
            self._partitions = Partitions(int(row[0]), self.options.premake_partitions)

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return pool_connection(self._pool, "the PostgreSQL store")

    # -- writes ------------------------------------------------------------------------

    async def write_batch(
        self, twins: Sequence[TwinState], history: Sequence[HistoryRow], presence: Sequence[PresenceEvent] = ()
    ) -> None:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        if history and self.mode is Mode.NATIVE:
            needed = self._partitions.missing(h.ts for h in history)
            if needed:
                await self._partitions.ensure(self._pool, needed)
        try:
            async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
                if history:
                    async with cur.copy(COPY_HISTORY) as copy:
                        await copy.write(history_copy(history))
                    await cur.execute(MOVE_HISTORY)
                    await cur.execute(MARK_DIRTY)
                if presence:
                    await cur.executemany(
                        "INSERT INTO presence (vehicle_id, ts, connected, reason) VALUES (%s, %s, %s, %s)",
                        [(p.vehicle_id, _dt(p.ts), p.connected, p.reason) for p in presence],
                    )
                if twins:
                    async with cur.copy(COPY_TWINS) as copy:
                        await copy.write(twins_copy(twins))
                    await cur.execute(MOVE_TWINS)
        except psycopg.errors.CheckViolation:
            # "no partition of relation found": another worker's retention dropped one we
            # thought existed. Forget what we know; the retried batch recreates it.
            self._partitions.known.clear()
            raise

    # -- twins -------------------------------------------------------------------------

    async def load_twin(self, vehicle_id: str) -> TwinState | None:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT state::text FROM twins WHERE vehicle_id = %s", (vehicle_id,))
            row = await cur.fetchone()
        return _decode_state(row[0]) if row else None

    async def load_twins(self, vehicle_ids: Sequence[str]) -> dict[str, TwinState]:
        if not vehicle_ids:
            return {}
        async with self._conn() as conn:
            cur = await conn.execute("SELECT state::text FROM twins WHERE vehicle_id = ANY(%s)", (list(vehicle_ids),))
            rows = await cur.fetchall()
        states = [_decode_state(raw) for (raw,) in rows]
        return {state.vehicle_id: state for state in states}

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        where, args = ["true"], list[Any]()
        if query.fleet is not None:
            where.append("fleet = %s")
            args.append(query.fleet)
        if query.connected is not None:
            where.append("connected = %s")
            args.append(query.connected)
        if query.after is not None:
            where.append("vehicle_id > %s")
            args.append(query.after)
        sql = f"SELECT state::text FROM twins WHERE {' AND '.join(where)} ORDER BY vehicle_id LIMIT %s"
        async with self._conn() as conn:
            cur = await conn.execute(sql.encode(), (*args, query.limit))
            rows = await cur.fetchall()
        return [_decode_state(r[0]) for r in rows]

    async def count_twins(self, fleet: str | None = None) -> int:
        async with self._conn() as conn:
            if fleet is None:
                cur = await conn.execute("SELECT count(*) FROM twins")
            else:
                cur = await conn.execute("SELECT count(*) FROM twins WHERE fleet = %s", (fleet,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _vehicles(self, selection: VehicleSet) -> list[str]:
        if not selection.needs_twins:
            return sorted(set(selection.ids or ()))
        where, args = ["true"], list[Any]()
        if selection.fleet is not None:
            where.append("fleet = %s")
            args.append(selection.fleet)
        if selection.tags:
            where.append("tags @> %s::jsonb")
            args.append(json_text(dict(selection.tags)))
        if selection.ids is not None:
            where.append("vehicle_id = ANY(%s::text[])")
            args.append(list(selection.ids))
        sql = f"SELECT vehicle_id FROM twins WHERE {' AND '.join(where)} ORDER BY vehicle_id"
        async with self._conn() as conn:
            cur = await conn.execute(sql.encode(), args)
            return [str(r[0]) for r in await cur.fetchall()]

    async def presence_history(self, query: PresenceQuery) -> list[PresenceEvent]:
        where, args = ["vehicle_id = %s"], list[Any]([query.vehicle_id])
        if query.start is not None:
            where.append("ts >= %s")
            args.append(_dt(query.start))
        if query.end is not None:
            where.append("ts < %s")
            args.append(_dt(query.end))
        direction = "ASC" if query.order is Order.ASC else "DESC"
        sql = (
            f"SELECT ts, connected, reason FROM presence WHERE {' AND '.join(where)} "
            f"ORDER BY ts {direction}, id {direction} LIMIT %s"
        )
        async with self._conn() as conn:
            cur = await conn.execute(sql.encode(), (*args, query.limit))
            rows = await cur.fetchall()
        return [PresenceEvent(query.vehicle_id, r[0].timestamp(), r[1], r[2]) for r in rows]

    # -- history -----------------------------------------------------------------------

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        page = await self.history_page(
            PointQuery(
                VehicleSet.one(query.vehicle_id),
                start=query.start,
                end=query.end,
                fields=query.fields,
                limit=query.limit,
                order=query.order,
            )
        )
        return page.rows

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
        where, args = ["vehicle_id = %s"], list[Any]([vid])
        if lo is not None:
            where.append("ts >= %s")
            args.append(_dt(lo))
        if hi is not None:
            where.append("ts <= %s" if hi_inclusive else "ts < %s")
            args.append(_dt(hi))
        direction, beyond = ("ASC", ">") if order is Order.ASC else ("DESC", "<")
        if after is not None:
            # The plain range test lets the (vehicle_id, ts) index start at the cursor.
            where.append(f"ts {beyond}= %s AND (ts {beyond} %s OR id {beyond} %s)")
            at = _dt(after[0])
            args.extend([at, at, after[1]])
        sql = (
            f"SELECT id, ts, received_at, seq, data::text FROM history WHERE {' AND '.join(where)} "
            f"ORDER BY ts {direction}, id {direction} LIMIT %s"
        )
        async with self._conn() as conn:
            cur = await conn.execute(sql.encode(), (*args, n))
            rows = await cur.fetchall()
        return [
            (int(r[0]), HistoryRow(vid, r[1].timestamp(), r[2].timestamp(), r[3], _decode_data(r[4]))) for r in rows
        ]

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
        fields = list(dict.fromkeys(a.field for a in query.aggs))
        sql = aggregate_sql(query.bucket, fields)

        async def fetch(vid: str, after: float | None, n: int) -> list[AggregateRow]:
            lo = query.start
            if after is not None:
                resume_at = next_bucket(after, query.bucket, tz)
                lo = resume_at if lo is None else max(lo, resume_at)
            params = aggregate_params(vid, fields, lo, query.end, query.tz, n)
            async with self._conn() as conn:
                cur = await conn.execute(sql, params)
                found = await cur.fetchall()
            return aggregate_rows(vid, fields, query.aggs, found)

        items, more = await fill_page(await self._vehicles(query.vehicles), Order.ASC, resume, query.limit, fetch)
        cursor = bucket_cursor(items[-1].vehicle_id, items[-1].bucket) if more else None
        return AggregatePage(rows=items, next_cursor=cursor)

    # -- maintenance -------------------------------------------------------------------

    async def maintain(self, now: float) -> MaintenanceReport:
        """Partitions ahead and retention (native mode), then rollup refresh within a time budget.

        With TimescaleDB, chunks, retention and compression are its own background jobs.
        """
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        report = MaintenanceReport()
        if self.mode is Mode.NATIVE:
            report.partitions_created = await self._partitions.premake_from(self._pool, now)
            cutoff = retention_cutoff(now, self.options.retention_days, self._partitions.width)
            if cutoff is not None:
                report.retention_cutoff = cutoff
                report.partitions_dropped = await self._partitions.drop_before(self._pool, cutoff)
        elif self.options.retention_days > 0:
            report.retention_cutoff = now - self.options.retention_days * 86_400
        if report.retention_cutoff is not None:
            async with self._conn() as conn:
                await conn.execute("DELETE FROM history_1m_dirty WHERE bucket < %s", (_dt(report.retention_cutoff),))
                await conn.execute("DELETE FROM presence WHERE ts < %s", (_dt(report.retention_cutoff),))
        deadline = time.monotonic() + _REFRESH_BUDGET_S
        settled = _dt(now) - _SETTLE
        while time.monotonic() < deadline:
            async with self._conn() as conn:
                done = await refresh(conn, settled, _REFRESH_CHUNK)
            report.rollup_buckets_refreshed += done
            if done < _REFRESH_CHUNK:
                break
        return report

    # -- health ------------------------------------------------------------------------

    async def info(self) -> StoreInfo:
        return StoreInfo(
            backend="postgresql", url=redact(self.url), schema_version=self._schema_version, detail=self._detail
        )

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT 1")

"""The production store: PostgreSQL (optionally TimescaleDB), on the process's connection pool.

A batch is one transaction: history rows are COPYed into a per-connection temporary
staging table and moved with INSERT ... ON CONFLICT DO NOTHING (so resends are
dropped), twins likewise with an upsert. Any failure, a dropped connection included,
raises and rolls the whole batch back; the twin service retries it and the pool
replaces broken connections, checking each one before lending it out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import structlog

from kernel import DatabaseInfo, PostgresDatabase, Sql, StoreError, TimeseriesMode, schema_lock
from twin.model import HistoryRow, PresenceEvent, TwinState
from twin.selector import VehicleSelector
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
from twin.stores.pg_policies import apply_policies, drop_chunks
from twin.stores.pg_rollup import MARK_DIRTY, aggregate_params, aggregate_rows, aggregate_sql, refresh
from twin.stores.protocol import (
    AggregateQuery,
    AggregateRow,
    HistoryOptions,
    MaintenanceReport,
    Statement,
    retention_cutoff,
)
from twin.stores.sql import SqlReads

log = structlog.get_logger(__name__)

_decode_state = msgspec.json.Decoder(TwinState).decode

# Minutes younger than this are still being written: the rollup leaves them to raw reads.
_SETTLE = timedelta(minutes=2)
_REFRESH_CHUNK = 2_000
_REFRESH_BUDGET_S = 5.0


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class PostgresStore(SqlReads):
    """Twins, history and presence in the hub's PostgreSQL database (see `kernel.PostgresDatabase`)."""

    def __init__(self, db: PostgresDatabase, *, options: HistoryOptions | None = None) -> None:
        self.db = db
        self._sql = Sql(db)
        self.options = options or HistoryOptions()
        self._partitions = Partitions(self.options.chunk_interval_hours, self.options.premake_partitions)

    @property
    def mode(self) -> TimeseriesMode:
        return self.db.mode

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self.mode is TimeseriesMode.TIMESCALEDB:
            # Every worker does this at start-up; the migrations' lock makes them take turns.
            async with self._conn() as conn, schema_lock(conn):
                await apply_policies(conn, self.options)
            return self
        async with self._conn() as conn:
            await self._fix_partition_width(conn)
            await self._partitions.load(conn)
        await self._partitions.premake_from(self.db, time.time())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

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
        return self.db.connection()

    # -- writes ------------------------------------------------------------------------

    async def write_batch(
        self,
        twins: Sequence[TwinState],
        history: Sequence[HistoryRow],
        presence: Sequence[PresenceEvent] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        if history and self.mode is TimeseriesMode.NATIVE:
            needed = self._partitions.missing(h.ts for h in history)
            if needed:
                await self._partitions.ensure(self.db, needed)
        try:
            async with self.db.connection(prepare=STAGING) as conn, conn.transaction(), conn.cursor() as cur:
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
                for statement in statements:
                    sql, args = statement("%s", jsonb=True)
                    await cur.execute(sql.encode(), args)
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.errors.CheckViolation):
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

    async def _vehicles(self, selection: VehicleSelector) -> list[str]:
        if not selection.needs_twins:
            return sorted(set(selection.vehicle_ids or ()))
        where, args = ["true"], list[Any]()
        if selection.fleet is not None:
            where.append("fleet = %s")
            args.append(selection.fleet)
        if selection.tags:
            where.append("tags @> %s::jsonb")
            args.append(json_text(dict(selection.tags)))
        if selection.vehicle_ids is not None:
            where.append("vehicle_id = ANY(%s::text[])")
            args.append(list(selection.vehicle_ids))
        sql = f"SELECT vehicle_id FROM twins WHERE {' AND '.join(where)} ORDER BY vehicle_id"
        async with self._conn() as conn:
            cur = await conn.execute(sql.encode(), args)
            return [str(r[0]) for r in await cur.fetchall()]

    async def _buckets(
        self, vid: str, query: AggregateQuery, tz: ZoneInfo, start: float | None, n: int
    ) -> list[AggregateRow]:
        # Summed in SQL (exact numerics), from the 1-minute rollup where it is settled.
        fields = list(dict.fromkeys(a.field for a in query.aggs))
        params = aggregate_params(vid, fields, start, query.end, query.tz, n)
        async with self._conn() as conn:
            cur = await conn.execute(aggregate_sql(query.bucket, fields), params)
            found = await cur.fetchall()
        return aggregate_rows(vid, fields, query.aggs, found)

    # -- maintenance -------------------------------------------------------------------

    async def maintain(self, now: float) -> MaintenanceReport:
        """Partitions ahead and retention (native mode), then rollup refresh within a time budget.

        With TimescaleDB, chunks, retention and compression are its own background jobs.
        """
        report = MaintenanceReport()
        if self.mode is TimeseriesMode.NATIVE:
            report.partitions_created = await self._partitions.premake_from(self.db, now)
            cutoff = retention_cutoff(now, self.options.retention_days, self._partitions.width)
            if cutoff is not None:
                report.retention_cutoff = cutoff
                report.partitions_dropped = await self._partitions.drop_before(self.db, cutoff)
        else:
            # Chunks start at multiples of their width since the epoch, as native partitions do: the
            # same cutoff in both modes. TimescaleDB's retention job drops the same chunks on its own
            # schedule; dropping them here too makes retention follow the hub's clock, as in native mode.
            cutoff = retention_cutoff(now, self.options.retention_days, self.options.chunk_interval_hours * 3600)
            if cutoff is not None:
                report.retention_cutoff = cutoff
                async with self._conn() as conn:
                    report.partitions_dropped = await drop_chunks(conn, cutoff)
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

    async def info(self) -> DatabaseInfo:
        return await self.db.info()

    async def ping(self) -> None:
        await self.db.ping()

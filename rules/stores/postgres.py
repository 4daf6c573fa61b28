"""The rules store on PostgreSQL: the hub's database, through its one connection pool.

The tables come from `migrations/postgres/0010_rules.sql`, applied when the database opens.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import msgspec
import psycopg

from kernel import PostgresDatabase
from rules.alerts import Alert, AlertQuery, AlertState
from rules.definitions import RuleDefinition
from rules.stores.protocol import PendingTimer, RulesWrite, TimerKind
from rules.zones import Zone

_encode = msgspec.json.Encoder().encode
_decode_rule = msgspec.json.Decoder(RuleDefinition).decode
_decode_zone = msgspec.json.Decoder(Zone).decode
_decode_alert = msgspec.json.Decoder(Alert).decode
_decode_values = msgspec.json.Decoder(dict[str, Any]).decode

_UPSERT_RULE = """
INSERT INTO rules (name, definition, updated_at) VALUES (%s, %s, now())
ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at
"""
_UPSERT_ZONE = """
INSERT INTO zones (name, zone, updated_at) VALUES (%s, %s, now())
ON CONFLICT (name) DO UPDATE SET zone = excluded.zone, updated_at = excluded.updated_at
"""
_UPSERT_ALERT = """
INSERT INTO alerts (id, rule, vehicle_id, severity, state, raised_at, cleared_at, doc)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, cleared_at = excluded.cleared_at, doc = excluded.doc
"""
_DELETE_TIMER = "DELETE FROM rule_timers WHERE rule = %s AND vehicle_id = %s"
_UPSERT_TIMER = """
INSERT INTO rule_timers (rule, vehicle_id, kind, since, due, vals) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (rule, vehicle_id) DO UPDATE SET
    kind = excluded.kind, since = excluded.since, due = excluded.due, vals = excluded.vals
"""
# The newest clear per rule and vehicle, for cooldowns after a restart.
_LAST_CLEARED = """
SELECT DISTINCT ON (rule, vehicle_id) doc::text FROM alerts
WHERE cleared_at >= %s ORDER BY rule, vehicle_id, cleared_at DESC
"""


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _json(value: object) -> str:
    return _encode(value).decode()


class PostgresRulesStore:
    """Rules, zones, alerts and timers in the hub's PostgreSQL database (see `kernel.PostgresDatabase`)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return self.db.connection()

    async def _fetch(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        async with self._conn() as conn:
            cur = await conn.execute(sql.encode(), args)
            return list(await cur.fetchall())

    async def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(sql.encode(), args)
            return cur.rowcount

    # -- rules and zones ----------------------------------------------------------------

    async def list_rules(self) -> list[RuleDefinition]:
        rows = await self._fetch("SELECT definition::text FROM rules ORDER BY name")
        return [_decode_rule(row[0]) for row in rows]

    async def put_rule(self, definition: RuleDefinition) -> None:
        await self._execute(_UPSERT_RULE, (definition.name, _json(definition)))

    async def delete_rule(self, name: str) -> bool:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM rules WHERE name = %s", (name,))
            found = cur.rowcount > 0
            await conn.execute("DELETE FROM rule_timers WHERE rule = %s", (name,))
        return found

    async def list_zones(self) -> dict[str, Zone]:
        rows = await self._fetch("SELECT name, zone::text FROM zones ORDER BY name")
        return {row[0]: _decode_zone(row[1]) for row in rows}

    async def put_zone(self, name: str, zone: Zone) -> None:
        await self._execute(_UPSERT_ZONE, (name, _json(zone)))

    async def delete_zone(self, name: str) -> bool:
        return await self._execute("DELETE FROM zones WHERE name = %s", (name,)) > 0

    # -- alerts and timers --------------------------------------------------------------

    async def write(self, batch: RulesWrite) -> None:
        if not (batch.alerts or batch.timers or batch.timers_done):
            return
        alerts = [
            (
                a.id,
                a.rule,
                a.vehicle_id,
                a.severity,
                a.state.value,
                _dt(a.raised_at),
                _dt(a.cleared_at),
                _json(a),
            )
            for a in batch.alerts
        ]
        timers = [(t.rule, t.vehicle_id, t.kind.value, t.since, t.due, _json(t.values)) for t in batch.timers]
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            # Same order as the SQLite store: a clear lands before a new alert of the same
            # rule and vehicle, and a timer ended and restarted in one batch stays started.
            if alerts:
                await cur.executemany(_UPSERT_ALERT, alerts)
            if batch.timers_done:
                await cur.executemany(_DELETE_TIMER, batch.timers_done)
            if timers:
                await cur.executemany(_UPSERT_TIMER, timers)

    async def get_alert(self, alert_id: str) -> Alert | None:
        rows = await self._fetch("SELECT doc::text FROM alerts WHERE id = %s", (alert_id,))
        return _decode_alert(rows[0][0]) if rows else None

    async def query_alerts(self, query: AlertQuery) -> list[Alert]:
        where, args = ["true"], list[Any]()
        if query.state is not None:
            where.append("state = %s")
            args.append(query.state.value)
        if query.open_only:
            where.append("state <> %s")
            args.append(AlertState.CLEARED.value)
        for column, value in (("severity", query.severity), ("rule", query.rule), ("vehicle_id", query.vehicle_id)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        if query.start is not None:
            where.append("raised_at >= %s")
            args.append(_dt(query.start))
        if query.end is not None:
            where.append("raised_at < %s")
            args.append(_dt(query.end))
        if query.fleets is not None:
            where.append("(doc->>'fleet') = ANY(%s)")
            args.append(list(query.fleets))
        sql = f"SELECT doc::text FROM alerts WHERE {' AND '.join(where)} ORDER BY raised_at DESC, id DESC LIMIT %s"
        rows = await self._fetch(sql, (*args, query.limit))
        return [_decode_alert(row[0]) for row in rows]

    async def open_alerts(self) -> list[Alert]:
        rows = await self._fetch("SELECT doc::text FROM alerts WHERE state <> %s", (AlertState.CLEARED.value,))
        return [_decode_alert(row[0]) for row in rows]

    async def last_cleared(self, since: float) -> list[Alert]:
        rows = await self._fetch(_LAST_CLEARED, (_dt(since),))
        return [_decode_alert(row[0]) for row in rows]

    async def pending_timers(self) -> list[PendingTimer]:
        rows = await self._fetch("SELECT rule, vehicle_id, kind, since, due, vals::text FROM rule_timers")
        return [PendingTimer(r[0], r[1], TimerKind(r[2]), r[3], r[4], _decode_values(r[5])) for r in rows]

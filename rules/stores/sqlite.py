"""The rules store on SQLite: the hub's database file, through its one writer and its readers.

The tables come from `migrations/sqlite/0010_rules.sql`, applied when the database opens.
"""

from __future__ import annotations

import sqlite3
import time
from types import TracebackType
from typing import Any, Self

import msgspec

from kernel import SqliteDatabase, rollback
from rules.alerts import Alert, AlertQuery, AlertState
from rules.definitions import RuleDefinition
from rules.stores.protocol import PendingTimer, RulesWrite, TimerKind
from rules.zones import Zone
from security import AuditEntry, audit_insert

_encode = msgspec.json.Encoder().encode
_decode_rule = msgspec.json.Decoder(RuleDefinition).decode
_decode_zone = msgspec.json.Decoder(Zone).decode
_decode_alert = msgspec.json.Decoder(Alert).decode
_decode_values = msgspec.json.Decoder(dict[str, Any]).decode

_UPSERT_ALERT = """
INSERT INTO alerts (id, rule, vehicle_id, severity, state, raised_at, cleared_at, doc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, cleared_at = excluded.cleared_at, doc = excluded.doc
"""
_UPSERT_TIMER = """
INSERT INTO rule_timers (rule, vehicle_id, kind, since, due, vals) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (rule, vehicle_id) DO UPDATE SET
    kind = excluded.kind, since = excluded.since, due = excluded.due, vals = excluded.vals
"""


class SqliteRulesStore:
    """Rules, zones, alerts and timers in the hub's SQLite database (see `kernel.SqliteDatabase`)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return await self.db.fetch(sql, args)

    async def _transaction(self, statements: list[tuple[str, tuple[Any, ...]]], *audit: AuditEntry | None) -> None:
        # One call on the writer's thread for the whole transaction: a hop per statement
        # waited a busy event loop's iteration each, and an alert is published only after
        # its write (alert p99 was 523 ms at 1,000 msg/s). Audit entries go in the same transaction.
        statements = statements + [audit_insert(entry, "?") for entry in audit if entry is not None]
        await self.db.write(_run_transaction, statements)

    # -- rules and zones ----------------------------------------------------------------

    async def list_rules(self) -> list[RuleDefinition]:
        rows = await self._fetch("SELECT definition FROM rules ORDER BY name")
        return [_decode_rule(row[0]) for row in rows]

    async def put_rule(self, definition: RuleDefinition, *, audit: AuditEntry | None = None) -> None:
        await self._transaction(
            [
                (
                    "INSERT INTO rules (name, definition, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                    "DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
                    (definition.name, _encode(definition).decode(), time.time()),
                )
            ],
            audit,
        )

    async def delete_rule(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        found = await self._fetch("SELECT 1 FROM rules WHERE name = ?", (name,))
        await self._transaction(
            [("DELETE FROM rules WHERE name = ?", (name,)), ("DELETE FROM rule_timers WHERE rule = ?", (name,))],
            audit,
        )
        return bool(found)

    async def list_zones(self) -> dict[str, Zone]:
        rows = await self._fetch("SELECT name, zone FROM zones ORDER BY name")
        return {row[0]: _decode_zone(row[1]) for row in rows}

    async def put_zone(self, name: str, zone: Zone, *, audit: AuditEntry | None = None) -> None:
        await self._transaction(
            [
                (
                    "INSERT INTO zones (name, zone, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET zone = excluded.zone, updated_at = excluded.updated_at",
                    (name, _encode(zone).decode(), time.time()),
                )
            ],
            audit,
        )

    async def delete_zone(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        found = await self._fetch("SELECT 1 FROM zones WHERE name = ?", (name,))
        await self._transaction([("DELETE FROM zones WHERE name = ?", (name,))], audit)
        return bool(found)

    # -- alerts and timers --------------------------------------------------------------

    async def write(self, batch: RulesWrite) -> None:
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for alert in batch.alerts:
            statements.append(
                (
                    _UPSERT_ALERT,
                    (
                        alert.id,
                        alert.rule,
                        alert.vehicle_id,
                        alert.severity,
                        alert.state.value,
                        alert.raised_at,
                        alert.cleared_at,
                        _encode(alert).decode(),
                    ),
                )
            )
        for rule, vehicle_id in batch.timers_done:
            statements.append(("DELETE FROM rule_timers WHERE rule = ? AND vehicle_id = ?", (rule, vehicle_id)))
        for timer in batch.timers:
            statements.append(
                (
                    _UPSERT_TIMER,
                    (
                        timer.rule,
                        timer.vehicle_id,
                        timer.kind.value,
                        timer.since,
                        timer.due,
                        _encode(timer.values).decode(),
                    ),
                )
            )
        if statements or batch.audit:
            await self._transaction(statements, *batch.audit)

    async def get_alert(self, alert_id: str) -> Alert | None:
        rows = await self._fetch("SELECT doc FROM alerts WHERE id = ?", (alert_id,))
        return _decode_alert(rows[0][0]) if rows else None

    async def query_alerts(self, query: AlertQuery) -> list[Alert]:
        where, args = ["1=1"], list[Any]()
        if query.state is not None:
            where.append("state = ?")
            args.append(query.state.value)
        if query.open_only:
            where.append("state != ?")
            args.append(AlertState.CLEARED.value)
        for column, value in (("severity", query.severity), ("rule", query.rule), ("vehicle_id", query.vehicle_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.fleets is not None:
            where.append(f"json_extract(doc, '$.fleet') IN ({', '.join('?' * len(query.fleets)) or 'NULL'})")
            args.extend(query.fleets)
        if query.start is not None:
            where.append("raised_at >= ?")
            args.append(query.start)
        if query.end is not None:
            where.append("raised_at < ?")
            args.append(query.end)
        if query.before is not None:
            where.append("(raised_at < ? OR (raised_at = ? AND id < ?))")
            args.extend((query.before[0], query.before[0], query.before[1]))
        sql = f"SELECT doc FROM alerts WHERE {' AND '.join(where)} ORDER BY raised_at DESC, id DESC LIMIT ?"
        rows = await self._fetch(sql, (*args, query.limit))
        return [_decode_alert(row[0]) for row in rows]

    async def open_alerts(self) -> list[Alert]:
        rows = await self._fetch("SELECT doc FROM alerts WHERE state != ?", (AlertState.CLEARED.value,))
        return [_decode_alert(row[0]) for row in rows]

    async def last_cleared(self, since: float) -> list[Alert]:
        rows = await self._fetch(
            "SELECT doc FROM alerts WHERE cleared_at >= ? ORDER BY cleared_at",
            (since,),
        )
        newest: dict[tuple[str, str], Alert] = {}
        for row in rows:
            alert = _decode_alert(row[0])
            newest[(alert.rule, alert.vehicle_id)] = alert
        return list(newest.values())

    async def pending_timers(self) -> list[PendingTimer]:
        rows = await self._fetch("SELECT rule, vehicle_id, kind, since, due, vals FROM rule_timers")
        return [PendingTimer(r[0], r[1], TimerKind(r[2]), r[3], r[4], _decode_values(r[5])) for r in rows]


def _run_transaction(conn: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, args in statements:
            conn.execute(sql, args)
    except BaseException:
        rollback(conn)
        raise
    conn.execute("COMMIT")

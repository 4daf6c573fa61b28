"""The rules store on SQLite or PostgreSQL: the same tables (migration 0010), the same SQL.

Statements go through `kernel.Sql`; what the two backends must say differently (alert
times are timestamptz in PostgreSQL, documents are read as text) comes from its dialect.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from kernel import Database, PreconditionFailed, SqlStore, Statement, VehicleSet, vehicles_where
from rules.alerts import Alert, AlertQuery, AlertState
from rules.definitions import RuleDefinition
from rules.stores.protocol import PendingTimer, RulesWrite, TimerKind
from rules.zones import Zone
from security import AuditEntry, audit_statement

_encode = msgspec.json.Encoder().encode
_decode_rule = msgspec.json.Decoder(RuleDefinition).decode
_decode_zone = msgspec.json.Decoder(Zone).decode
_decode_alert = msgspec.json.Decoder(Alert).decode
_decode_values = msgspec.json.Decoder(dict[str, Any]).decode

_UPSERT_RULE = """
INSERT INTO rules (name, definition, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at
"""
_UPSERT_ZONE = """
INSERT INTO zones (name, zone, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET zone = excluded.zone, updated_at = excluded.updated_at
"""
_UPSERT_ALERT = """
INSERT INTO alerts (id, rule, vehicle_id, severity, state, raised_at, cleared_at, doc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, cleared_at = excluded.cleared_at, doc = excluded.doc
"""
_DELETE_TIMER = "DELETE FROM rule_timers WHERE rule = ? AND vehicle_id = ?"
_UPSERT_TIMER = """
INSERT INTO rule_timers (rule, vehicle_id, kind, since, due, vals) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (rule, vehicle_id) DO UPDATE SET
    kind = excluded.kind, since = excluded.since, due = excluded.due, vals = excluded.vals
"""


def _json(value: object) -> str:
    return _encode(value).decode()


class SqlRulesStore(SqlStore):
    """Rules, zones, alerts and timers in the hub's database, SQLite or PostgreSQL (see `kernel.Database`)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._dialect = self._sql.dialect
        # Documents are read as text, so one msgspec decoder reads both backends.
        text = self._dialect.as_text
        self._select_alert = f"SELECT doc{text} FROM alerts"
        self._select_timers = f"SELECT rule, vehicle_id, kind, since, due, vals{text} FROM rule_timers"

    async def _transaction(self, statements: list[Statement], audit: Sequence[AuditEntry | None]) -> list[int]:
        # Audit entries commit in the same transaction as the change they record; the whole
        # transaction is one hop (an alert is published only after its write).
        statements += [audit_statement(entry, self._dialect) for entry in audit if entry is not None]
        return await self._sql.transaction(statements)

    # -- rules and zones ----------------------------------------------------------------

    async def list_rules(self) -> list[RuleDefinition]:
        rows = await self._sql.fetch(f"SELECT definition{self._dialect.as_text} FROM rules ORDER BY name")
        return [_decode_rule(row[0]) for row in rows]

    async def put_rule(self, definition: RuleDefinition, *, audit: AuditEntry | None = None) -> None:
        args = (definition.name, _json(definition), self._dialect.time(time.time()))
        await self._transaction([Statement(_UPSERT_RULE, args)], [audit])

    async def delete_rule(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        statements = [
            Statement("DELETE FROM rules WHERE name = ?", (name,)),
            Statement("DELETE FROM rule_timers WHERE rule = ?", (name,)),
        ]
        changed = await self._transaction(statements, [audit])
        return changed[0] > 0

    async def list_zones(self) -> dict[str, Zone]:
        rows = await self._sql.fetch(f"SELECT name, zone{self._dialect.as_text} FROM zones ORDER BY name")
        return {row[0]: _decode_zone(row[1]) for row in rows}

    async def put_zone(self, name: str, zone: Zone, *, audit: AuditEntry | None = None) -> None:
        args = (name, _json(zone), self._dialect.time(time.time()))
        await self._transaction([Statement(_UPSERT_ZONE, args)], [audit])

    async def delete_zone(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        changed = await self._transaction([Statement("DELETE FROM zones WHERE name = ?", (name,))], [audit])
        return changed[0] > 0

    # -- alerts and timers --------------------------------------------------------------

    async def write(self, batch: RulesWrite) -> None:
        at = self._dialect.time
        statements = []
        # In this order: a clear lands before a new alert of the same rule and vehicle, and
        # a timer ended and restarted in one batch stays started.
        if batch.alerts:
            alerts = [
                (a.id, a.rule, a.vehicle_id, a.severity, a.state.value, at(a.raised_at), at(a.cleared_at), _json(a))
                for a in batch.alerts
            ]
            statements.append(Statement(_UPSERT_ALERT, alerts, many=True))
        if batch.timers_done:
            statements.append(Statement(_DELETE_TIMER, list(batch.timers_done), many=True))
        if batch.timers:
            timers = [(t.rule, t.vehicle_id, t.kind.value, t.since, t.due, _json(t.values)) for t in batch.timers]
            statements.append(Statement(_UPSERT_TIMER, timers, many=True))
        if statements or batch.audit:
            await self._transaction(statements, batch.audit)

    async def change_alert(
        self, alert: Alert, expected: Sequence[AlertState], *, audit: AuditEntry | None = None
    ) -> bool:
        at = self._dialect.time
        states = [s.value for s in expected]
        marks = ", ".join("?" * len(states))
        sql = f"UPDATE alerts SET state = ?, cleared_at = ?, doc = ? WHERE id = ? AND state IN ({marks})"
        args = (alert.state.value, at(alert.cleared_at), _json(alert), alert.id, *states)
        try:
            await self._transaction([Statement(sql, args, expect=1)], [audit])
        except PreconditionFailed:
            return False
        return True

    async def get_alert(self, alert_id: str) -> Alert | None:
        rows = await self._sql.fetch(f"{self._select_alert} WHERE id = ?", (alert_id,))
        return _decode_alert(rows[0][0]) if rows else None

    async def query_alerts(self, query: AlertQuery) -> list[Alert]:
        at = self._dialect.time
        where, args = [self._dialect.true], list[Any]()
        for column, op, value in (
            ("state", "=", query.state.value if query.state is not None else None),
            ("state", "<>", AlertState.CLEARED.value if query.open_only else None),
            ("severity", "=", query.severity),
            ("rule", "=", query.rule),
            ("vehicle_id", "=", query.vehicle_id),
            ("raised_at", ">=", at(query.start)),
            ("raised_at", "<", at(query.end)),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        if query.fleets is not None:
            where.append(
                f"{self._dialect.json_field('doc', 'fleet')} IN ({', '.join('?' * len(query.fleets)) or 'NULL'})"
            )
            args.extend(query.fleets)
        if query.before is not None:
            where.append("(raised_at, id) < (?, ?)")
            args.extend((at(query.before[0]), query.before[1]))
        sql = f"{self._select_alert} WHERE {' AND '.join(where)} ORDER BY raised_at DESC, id DESC LIMIT ?"
        rows = await self._sql.fetch(sql, (*args, query.limit))
        return [_decode_alert(row[0]) for row in rows]

    def _of(self, vehicles: VehicleSet | None) -> tuple[str, tuple[Any, ...]]:
        """The condition narrowing a read to `vehicles` in SQL, where the backend can say it (see the callers)."""
        chosen = None if vehicles is None else vehicles_where(vehicles, "vehicle_id", self._dialect)
        if chosen is None:
            return "", ()
        condition, arg = chosen
        return f" AND {condition}", (arg,)

    async def open_alerts(self, vehicles: VehicleSet | None = None) -> list[Alert]:
        where, args = self._of(vehicles)
        rows = await self._sql.fetch(f"{self._select_alert} WHERE state <> ?{where}", (AlertState.CLEARED.value, *args))
        found = [_decode_alert(row[0]) for row in rows]
        return found if vehicles is None else [a for a in found if vehicles(a.vehicle_id)]

    async def last_cleared(self, since: float, vehicles: VehicleSet | None = None) -> list[Alert]:
        """The newest clear per rule and vehicle since `since`, for cooldowns after a restart."""
        where, args = self._of(vehicles)
        sql = f"{self._select_alert} WHERE cleared_at >= ?{where} ORDER BY cleared_at"
        newest: dict[tuple[str, str], Alert] = {}
        for row in await self._sql.fetch(sql, (self._dialect.time(since), *args)):
            alert = _decode_alert(row[0])
            if vehicles is None or vehicles(alert.vehicle_id):
                newest[(alert.rule, alert.vehicle_id)] = alert
        return list(newest.values())

    async def pending_timers(self, vehicles: VehicleSet | None = None) -> list[PendingTimer]:
        where, args = self._of(vehicles)
        sql = f"{self._select_timers} WHERE {self._dialect.true}{where}"
        rows = await self._sql.fetch(sql, args)
        found = [PendingTimer(r[0], r[1], TimerKind(r[2]), r[3], r[4], _decode_values(r[5])) for r in rows]
        return found if vehicles is None else [t for t in found if vehicles(t.vehicle_id)]

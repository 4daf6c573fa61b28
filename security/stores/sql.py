"""What the SQLite and PostgreSQL security stores share: the same tables, columns and audit filter.

The tables come from migration 0030.
"""

from __future__ import annotations

from typing import Any

from security.model import AuditQuery

CRED = "vehicle_id, fleet, secret_hash, created_at, rotated_at, revoked_at"
USER = "name, role, fleets, password_hash, disabled, created_at"
TOK = "id, user_name, token_hash, label, created_at, expires_at, revoked_at"
AUDIT = "id, ts, actor, action, remote, vehicle_id, fleet, target, detail"


def audit_where(query: AuditQuery, mark: str) -> tuple[str, list[Any]]:
    """WHERE clause and arguments for an audit query; `mark` is the placeholder ("?" or "%s")."""
    where: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("ts", ">=", query.start),
        ("ts", "<", query.end),
        ("actor", "=", query.actor),
        ("vehicle_id", "=", query.vehicle_id),
        ("action", "=", query.action),
    ):
        if value is not None:
            where.append(f"{column} {op} {mark}")
            args.append(value)
    if query.fleets is not None:
        marks = ", ".join([mark] * len(query.fleets)) or "NULL"
        where.append(f"(fleet IS NULL OR fleet IN ({marks}))")
        args.extend(query.fleets)
    if query.before is not None:
        where.append(f"(ts < {mark} OR (ts = {mark} AND id < {mark}))")
        args.extend((query.before[0], query.before[0], query.before[1]))
    return (" WHERE " + " AND ".join(where)) if where else "", args

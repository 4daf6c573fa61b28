"""The audit log's entries, and how a store writes one in the same transaction as the change it records.

Every operator write (credentials, users, tokens, rules, zones, alerts, commands, jobs)
is audited by the store that commits it: the entry is inserted in the same transaction,
so no change is committed without its entry and no entry without its change. The
services build entries (`audit_entry`) from the `Actor` the API or CLI hands them.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from kernel import Dialect, Statement
from security.model import AuditEntry
from security.roles import Principal

AUDIT_COLUMNS = "id, ts, actor, action, remote, vehicle_id, fleet, target, detail"

_encode = msgspec.json.encode


def _json(value: object) -> str:
    return _encode(value).decode()


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change and from where, for the audit log."""

    name: str
    remote: str

    @classmethod
    def of(cls, principal: Principal, remote: str) -> Actor:
        return cls(principal.actor, remote)


def audit_entry(
    actor: Actor,
    action: str,
    ts: float,
    *,
    vehicle_id: str | None = None,
    fleet: str | None = None,
    target: str | None = None,
    detail: Mapping[str, object] | None = None,
) -> AuditEntry:
    """A new entry; details without a value are left out, as in every response of the hub."""
    present = {k: v for k, v in (detail or {}).items() if v is not None}
    return AuditEntry(secrets.token_hex(8), ts, actor.name, action, actor.remote, vehicle_id, fleet, target, present)


def audit_insert(entry: AuditEntry, mark: str, *, jsonb: bool = False) -> tuple[str, tuple[Any, ...]]:
    """The INSERT of one entry and its arguments; `mark` is the placeholder ("?" or "%s").

    `detail` goes as JSON text; `jsonb` casts it for PostgreSQL's jsonb column.
    """
    e = entry
    detail = f"{mark}::jsonb" if jsonb else mark
    sql = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({', '.join([mark] * 8)}, {detail})"
    return sql, (e.id, e.ts, e.actor, e.action, e.remote, e.vehicle_id, e.fleet, e.target, _json(e.detail))


def audit_statement(entry: AuditEntry, dialect: Dialect) -> Statement:
    """The INSERT of one entry as a `kernel.Statement`, for a store that runs its SQL through `kernel.Sql`."""
    e = entry
    sql = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {dialect.json_mark})"
    return Statement(sql, (e.id, e.ts, e.actor, e.action, e.remote, e.vehicle_id, e.fleet, e.target, _json(e.detail)))


class ChangedTwin(Protocol):
    """What a twin write's audit entry needs of the changed twin (a `twin.TwinState`)."""

    vehicle_id: str
    fleet: str
    version: int


class TwinWriteAudit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The audit entry of an operator's twin write, kept as data until the changed twin makes it an entry.

    Data rather than a closure: a write forwarded to the vehicle's owner (cluster/) carries
    it, and the owner commits the entry with the change as the asking node would have.
    """

    actor: str
    remote: str
    action: str
    patch: dict[str, Any]

    def __call__(self, state: ChangedTwin) -> Callable[..., tuple[str, tuple[Any, ...]]]:
        detail = {"patch": self.patch, "version": state.version}
        entry = audit_entry(
            Actor(self.actor, self.remote),
            self.action,
            time.time(),
            vehicle_id=state.vehicle_id,
            fleet=state.fleet,
            detail=detail,
        )
        return functools.partial(audit_insert, entry)

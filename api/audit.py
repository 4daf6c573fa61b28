"""The audit log: who changed what, when and from where."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from api.auth import Caller, requires
from api.credentials import security_of
from api.deps import Deps
from api.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, page_size
from api.times import query_time, rfc3339
from security import AuditEntry, AuditQuery, Permission


class AuditView(msgspec.Struct, omit_defaults=True):
    id: str
    # RFC 3339.
    ts: str
    # The user name, `vehicle:<id>`, `cli` or `bootstrap`; `dev` when auth is off.
    actor: str
    action: str
    # The remote address of the HTTP or MQTT client; "local" for the CLI.
    remote: str
    vehicle_id: str | None = None
    fleet: str | None = None
    target: str | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class AuditPage(msgspec.Struct, omit_defaults=True):
    items: list[AuditView]
    next_cursor: str | None = None


def audit_view(e: AuditEntry) -> AuditView:
    return AuditView(e.id, rfc3339(e.ts), e.actor, e.action, e.remote, e.vehicle_id, e.fleet, e.target, e.detail)


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="Audit entries, newest first", opt=requires(Permission.AUDIT_READ))
    async def list_audit(
        self,
        deps: Deps,
        principal: Caller,
        from_: Annotated[str | None, QueryParameter(name="from", description="RFC 3339 or epoch seconds")] = None,
        to: Annotated[str | None, QueryParameter(description="RFC 3339 or epoch seconds, exclusive")] = None,
        actor: Annotated[str | None, QueryParameter(description="User name, vehicle:<id>, cli or dev")] = None,
        vehicle: Annotated[str | None, QueryParameter(description="Vehicle id")] = None,
        action: Annotated[str | None, QueryParameter(description="e.g. twin.desired, alert.ack")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> AuditPage:
        size = page_size(limit, deps.max_page_size)
        query = AuditQuery(
            start=query_time(from_, "from"),
            end=query_time(to, "to"),
            actor=actor,
            vehicle_id=vehicle,
            action=action,
            fleets=principal.fleet_filter(),
            limit=size + 1,
            before=decode_cursor(cursor, float, str) if cursor is not None else None,
        )
        found = await security_of(deps).query_audit(query)
        more = len(found) > size
        found = found[:size]
        next_cursor = encode_cursor(found[-1].ts, found[-1].id) if more else None
        return AuditPage([audit_view(e) for e in found], next_cursor)

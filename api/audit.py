"""The audit log: who changed what, when and from where."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from api.auth import Caller, requires
from api.credentials import security_of
from api.deps import Deps
from api.rules import parse_when
from security import AuditEntry, AuditQuery, Permission


class AuditPage(msgspec.Struct):
    items: list[AuditEntry]


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
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 100,
    ) -> AuditPage:
        query = AuditQuery(
            start=parse_when(from_, "from"),
            end=parse_when(to, "to"),
            actor=actor,
            vehicle_id=vehicle,
            action=action,
            fleets=principal.fleet_filter(),
            limit=min(limit, deps.max_page_size),
        )
        return AuditPage(await security_of(deps).query_audit(query))

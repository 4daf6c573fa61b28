"""Dead letters: vehicle messages the database refused, kept with their reason."""

from __future__ import annotations

import base64
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from api.auth import Caller, requires
from api.deps import Deps
from api.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, page_size
from api.times import rfc3339
from security import Permission
from twin import DeadLetter, DeadLetterQuery


class DeadLetterView(msgspec.Struct, omit_defaults=True):
    id: str
    vehicle_id: str
    # The topic below vehicles/{vehicle_id}/ the message came on.
    topic: str
    kind: str
    reason: str
    # What the database said.
    detail: str
    # RFC 3339.
    received_at: str
    quarantined_at: str
    # The payload as sent, base64.
    payload_base64: str
    fleet: str | None = None


class DeadLetterPage(msgspec.Struct, omit_defaults=True):
    items: list[DeadLetterView]
    next_cursor: str | None = None


def _view(d: DeadLetter) -> DeadLetterView:
    return DeadLetterView(
        d.id,
        d.vehicle_id,
        d.topic,
        d.kind,
        d.reason,
        d.detail,
        rfc3339(d.received_at),
        rfc3339(d.quarantined_at),
        base64.b64encode(d.payload).decode(),
        d.fleet,
    )


class DeadLetterController(Controller):
    path = "/api/v1/dead-letters"
    tags = ["operations"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="Messages the database refused, newest first", opt=requires(Permission.AUDIT_READ))
    async def list_dead_letters(
        self,
        deps: Deps,
        principal: Caller,
        vehicle: Annotated[str | None, QueryParameter(description="Vehicle id")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> DeadLetterPage:
        size = page_size(limit, deps.max_page_size)
        before = decode_cursor(cursor, float, str) if cursor is not None else None
        fleets = principal.fleet_filter()
        query = DeadLetterQuery(
            fleets=frozenset(fleets) if fleets is not None else None,
            vehicle_id=vehicle,
            limit=size + 1,
            before=(before[0], before[1]) if before is not None else None,
        )
        found = await deps.service.dead_letters.query(query)
        more = len(found) > size
        found = found[:size]
        next_cursor = encode_cursor(found[-1].quarantined_at, found[-1].id) if more else None
        return DeadLetterPage([_view(d) for d in found], next_cursor)

"""History of one vehicle's telemetry."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from api.deps import Deps
from api.vehicles import VehicleId
from twin import HistoryQuery, InvalidPayload, Order
from twin.telemetry import isoformat, parse_time


class HistoryPoint(msgspec.Struct):
    ts: str
    received_at: str
    seq: int | None
    data: dict[str, Any]


class HistoryPage(msgspec.Struct):
    vehicle_id: str
    items: list[HistoryPoint]


def _time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(float(value) if _is_number(value) else value, field=name)
    except InvalidPayload as exc:
        raise InvalidPayload("bad_query", exc.detail) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class HistoryController(Controller):
    path = "/api/v1/vehicles"
    tags = ["history"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/{vehicle_id:str}/history", summary="Telemetry history, one row per accepted message")
    async def history(
        self,
        deps: Deps,
        vehicle_id: VehicleId,
        from_: Annotated[str | None, QueryParameter(name="from", description="RFC 3339 or epoch seconds")] = None,
        to: Annotated[str | None, QueryParameter(description="RFC 3339 or epoch seconds, exclusive")] = None,
        fields: Annotated[
            str | None, QueryParameter(description="Comma-separated field paths, e.g. soc,gps.lat")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1)] = 1000,
        order: Annotated[Order, QueryParameter(description="asc (oldest first) or desc")] = Order.ASC,
    ) -> HistoryPage:
        wanted = tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None
        query = HistoryQuery(
            vehicle_id=vehicle_id,
            start=_time(from_, "from"),
            end=_time(to, "to"),
            fields=wanted,
            limit=min(limit, deps.max_history_rows),
            order=order,
        )
        rows = await deps.service.history(query)
        return HistoryPage(
            vehicle_id=vehicle_id,
            items=[
                HistoryPoint(
                    ts=isoformat(r.ts) or "", received_at=isoformat(r.received_at) or "", seq=r.seq, data=r.data
                )
                for r in rows
            ],
        )

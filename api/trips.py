"""Trips and stops of one vehicle, derived from its history on request."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from api.auth import requires
from api.deps import Deps
from api.history import From, To
from api.times import query_time
from api.vehicles import VehicleId
from kernel import InvalidPayload, isoformat
from security import Permission
from twin import TRIP_FIELDS, PointQuery, Position, Stop, Trip, TripDetector, TripSettings, VehicleSelector

# Rows read from the store per page while folding.
PAGE_ROWS = 5_000
DEFAULT_SPAN_S = 86_400.0
MAX_SPAN_S = 93 * 86_400.0


class TripOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A trip; what the history could not tell (no odometer and no GPS, say) is left out."""

    start: str
    end: str
    duration_s: float
    distance_km: float | None = None
    distance_source: str | None = None
    max_speed_kmh: float | None = None
    energy_used_pct: float | None = None
    start_position: Position | None = None
    end_position: Position | None = None
    ongoing: bool


class StopOut(msgspec.Struct, omit_defaults=True):
    start: str
    end: str
    duration_s: float
    position: Position | None = None


class TripsOut(msgspec.Struct):
    vehicle_id: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    trips: list[TripOut] = msgspec.field(default_factory=list)
    stops: list[StopOut] = msgspec.field(default_factory=list)


def _trip(t: Trip) -> TripOut:
    return TripOut(
        start=isoformat(t.start) or "",
        end=isoformat(t.end) or "",
        duration_s=t.duration_s,
        distance_km=t.distance_km,
        distance_source=t.distance_source,
        max_speed_kmh=t.max_speed_kmh,
        energy_used_pct=t.energy_used_pct,
        start_position=t.start_position,
        end_position=t.end_position,
        ongoing=t.ongoing,
    )


def _stop(s: Stop) -> StopOut:
    return StopOut(isoformat(s.start) or "", isoformat(s.end) or "", s.duration_s, s.position)


class TripController(Controller):
    path = "/api/v1/vehicles"
    tags = ["trips"]  # noqa: RUF012 - Litestar reads this class attribute

    @get(
        "/{vehicle_id:str}/trips",
        summary="Trips and stops between from and to (default: the last 24 hours, at most 93 days)",
        description=(
            "A trip starts when ignition turns on or speed exceeds speed_threshold_kmh and ends where the "
            "vehicle stopped, once it stayed stopped (or silent) for dwell_s. Distance comes from odometer_km "
            "when reported at both ends, else from gps.lat/gps.lon; energy_used_pct is the drop in soc."
        ),
        opt=requires(Permission.HISTORY_READ),
    )
    async def trips(
        self,
        deps: Deps,
        vehicle_id: VehicleId,
        from_: From = None,
        to: To = None,
        dwell_s: Annotated[float, QueryParameter(ge=0, description="Stopped this long ends a trip")] = 180.0,
        speed_threshold_kmh: Annotated[float, QueryParameter(ge=0, description="Faster is moving")] = 3.0,
    ) -> TripsOut:
        await deps.service.get_twin(vehicle_id)
        end = query_time(to, "to") or time.time()
        start = query_time(from_, "from")
        start = end - DEFAULT_SPAN_S if start is None else start
        if start > end:
            raise InvalidPayload("bad_query", "'from' must not be after 'to'")
        if end - start > MAX_SPAN_S:
            raise InvalidPayload("range_too_long", "trips cover at most 93 days per request; narrow from/to")
        detector = TripDetector(TripSettings(speed_threshold_kmh=speed_threshold_kmh, dwell_s=dwell_s))
        query = PointQuery(VehicleSelector.one(vehicle_id), start=start, end=end, fields=TRIP_FIELDS, limit=PAGE_ROWS)
        store = deps.history
        cursor = None
        while True:
            page = await store.history_page(msgspec.structs.replace(query, cursor=cursor))
            for row in page.rows:
                detector.feed(row.ts, row.data)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        report = detector.finish()
        return TripsOut(
            vehicle_id=vehicle_id,
            from_=isoformat(start) or "",
            to=isoformat(end) or "",
            trips=[_trip(t) for t in report.trips],
            stops=[_stop(s) for s in report.stops],
        )

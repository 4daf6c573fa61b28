"""Maintenance: schedules, which vehicles are due, service records, odometer and engine hours."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import ResponseSpec
from litestar.params import PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import Caller, actor_of, requires
from api.deps import ApiDeps, Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, page_of, page_size
from api.times import query_time, rfc3339
from api.vehicles import VehicleId
from kernel import InvalidPayload, isoformat
from maintenance import (
    Due,
    MaintenanceService,
    MeterCorrection,
    RecordQuery,
    Schedule,
    ScheduleBody,
    ServiceRecord,
    Stage,
)
from security import Permission, Principal, PrincipalKind

ScheduleId = Annotated[
    str, PathParameter(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="Schedule id (lower case, digits, _ -)")
]
Time = Annotated[str, msgspec.Meta(max_length=64)]
Reading = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Note = Annotated[str, msgspec.Meta(max_length=1024)]


def maintenance_of(deps: ApiDeps) -> MaintenanceService:
    if deps.maintenance is None:
        raise ServiceUnavailableException("maintenance is off (maintenance.enabled = false)")
    return deps.maintenance


class MaintenanceScheduleView(msgspec.Struct, omit_defaults=True):
    id: str
    # The schedule as written; a plain object so the request schema keeps its examples.
    schedule: dict[str, Any]
    created_at: str
    updated_at: str


def schedule_view(s: Schedule) -> MaintenanceScheduleView:
    return MaintenanceScheduleView(s.id, msgspec.to_builtins(s.body), rfc3339(s.created_at), rfc3339(s.updated_at))


class MaintenanceScheduleList(msgspec.Struct, omit_defaults=True):
    items: list[MaintenanceScheduleView]
    next_cursor: str | None = None


class DueView(msgspec.Struct, omit_defaults=True):
    schedule_id: str
    vehicle_id: str
    fleet: str
    status: str
    interval_started_at: str
    odometer_km: float | None = None
    engine_hours: float | None = None
    next_due_km: float | None = None
    next_due_engine_hours: float | None = None
    next_due_at: str | None = None
    remaining_km: float | None = None
    remaining_engine_hours: float | None = None
    remaining_days: float | None = None


def due_view(d: Due) -> DueView:
    return DueView(
        d.schedule_id,
        d.vehicle_id,
        d.fleet,
        d.status.value,
        rfc3339(d.interval_started_at),
        d.odometer_km,
        d.engine_hours,
        d.next_due_km,
        d.next_due_engine_hours,
        isoformat(d.next_due_at),
        d.remaining_km,
        d.remaining_engine_hours,
        d.remaining_days,
    )


class DueList(msgspec.Struct, omit_defaults=True):
    items: list[DueView]
    next_cursor: str | None = None


class ServiceIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A service done; odometer and engine hours default to the vehicle's current values, done_at to now."""

    schedule: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
    done_at: Time | None = None
    odometer_km: Reading | None = None
    engine_hours: Reading | None = None
    note: Note | None = None
    # Recorded as given only in development mode; otherwise the authenticated user's name is recorded.
    by: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class ServiceView(msgspec.Struct, omit_defaults=True):
    id: str
    vehicle_id: str
    fleet: str
    schedule_id: str
    done_at: str
    recorded_at: str
    by: str
    odometer_km: float | None = None
    engine_hours: float | None = None
    note: str | None = None


def service_view(r: ServiceRecord) -> ServiceView:
    return ServiceView(
        r.id,
        r.vehicle_id,
        r.fleet,
        r.schedule_id,
        rfc3339(r.done_at),
        rfc3339(r.recorded_at),
        r.by,
        r.odometer_km,
        r.engine_hours,
        r.note,
    )


class ServiceList(msgspec.Struct, omit_defaults=True):
    items: list[ServiceView]
    next_cursor: str | None = None


class CorrectionIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The vehicle's true odometer and/or engine hours, e.g. read off the dashboard at a service."""

    odometer_km: Reading | None = None
    engine_hours: Reading | None = None
    note: Note | None = None
    by: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class CorrectionView(msgspec.Struct, omit_defaults=True):
    id: str
    vehicle_id: str
    fleet: str
    at: str
    by: str
    odometer_km: float | None = None
    engine_hours: float | None = None
    previous_odometer_km: float | None = None
    previous_engine_hours: float | None = None
    note: str | None = None


def correction_view(c: MeterCorrection) -> CorrectionView:
    return CorrectionView(
        c.id,
        c.vehicle_id,
        c.fleet,
        rfc3339(c.at),
        c.by,
        c.odometer_km,
        c.engine_hours,
        c.previous_odometer_km,
        c.previous_engine_hours,
        c.note,
    )


class CorrectionList(msgspec.Struct, omit_defaults=True):
    items: list[CorrectionView]
    next_cursor: str | None = None


class MetersView(msgspec.Struct, omit_defaults=True):
    vehicle_id: str
    odometer_km: float | None = None
    engine_hours: float | None = None
    # The vehicle's standing against each schedule that selects it.
    due: list[DueView] = msgspec.field(default_factory=list)


_SCHEDULE_EXAMPLES = body(
    (
        "oil",
        "Every 15,000 km or 180 days, whichever comes first, for one fleet",
        {"name": "Oil and filter", "every_km": 15000, "every_days": 180, "selector": {"fleet": "north"}},
    ),
    (
        "engine",
        "Every 500 engine hours for vehicles tagged model=Van",
        {
            "name": "Engine check",
            "every_engine_hours": 500,
            "due_soon_engine_hours": 25,
            "selector": {"fleet": "north", "tags": {"model": "Van"}},
        },
    ),
)
_SERVICE_EXAMPLES = body(
    ("now", "Done now, at the vehicle's current odometer", {"schedule": "oil", "note": "oil 5W-30, filter"}),
    (
        "dated",
        "Done earlier, with the dashboard reading",
        {"schedule": "oil", "done_at": "2026-12-05T09:30:00Z", "odometer_km": 45210.5},
    ),
)
_CORRECTION_EXAMPLES = body(
    ("odometer", "Set the odometer to the dashboard reading", {"odometer_km": 45210.5, "note": "dashboard"}),
    ("both", "Set both", {"odometer_km": 45210.5, "engine_hours": 1320.25}),
)


def _by(principal: Principal, given: str | None) -> str:
    if principal.kind is PrincipalKind.DEV:
        return given or "dev"
    return principal.actor


class MaintenanceController(Controller):
    path = "/api/v1/maintenance"
    tags = ["maintenance"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/schedules", summary="List maintenance schedules by id", opt=requires(Permission.MAINTENANCE_READ))
    async def list_schedules(
        self, deps: Deps, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> MaintenanceScheduleList:
        views = [schedule_view(s) for s in maintenance_of(deps).list_schedules()]
        items, next_cursor = page_of(views, lambda v: v.id, page_size(limit, deps.max_page_size), cursor)
        return MaintenanceScheduleList(items, next_cursor)

    @get("/schedules/{schedule_id:str}", summary="Read a schedule", opt=requires(Permission.MAINTENANCE_READ))
    async def get_schedule(self, deps: Deps, schedule_id: ScheduleId) -> MaintenanceScheduleView:
        return schedule_view(maintenance_of(deps).get_schedule(schedule_id))

    @put(
        "/schedules/{schedule_id:str}",
        summary="Create or replace a schedule: every N km, N engine hours or N days, whichever comes first",
        responses={201: ResponseSpec(MaintenanceScheduleView, generate_examples=False, description="Created")},
        opt=requires(Permission.MAINTENANCE_WRITE),
    )
    async def put_schedule(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        schedule_id: ScheduleId,
        data: Annotated[ScheduleBody, _SCHEDULE_EXAMPLES],
    ) -> Response[MaintenanceScheduleView]:
        service = maintenance_of(deps)
        fleet = data.selector.fleet
        if fleet is None and not principal.all_fleets:
            raise InvalidPayload("bad_body", "name the fleet in the selector; you do not see every fleet")
        if fleet is not None and not principal.sees(fleet):
            raise InvalidPayload("bad_body", f"fleet {fleet!r} is not one of yours")
        existed = schedule_id in {s.id for s in service.list_schedules()}
        schedule = await service.put_schedule(schedule_id, data, actor=actor_of(request))
        return Response(schedule_view(schedule), status_code=HTTP_200_OK if existed else HTTP_201_CREATED)

    @delete(
        "/schedules/{schedule_id:str}",
        summary="Delete a schedule; its open alerts are cleared, its service records kept",
        opt=requires(Permission.MAINTENANCE_WRITE),
    )
    async def delete_schedule(self, request: Request[Any, Any, Any], deps: Deps, schedule_id: ScheduleId) -> None:
        await maintenance_of(deps).delete_schedule(schedule_id, actor=actor_of(request))

    @get(
        "/due",
        summary="Each vehicle's standing against each schedule: overdue first, then due soon, then the rest",
        opt=requires(Permission.MAINTENANCE_READ),
    )
    async def due(
        self,
        deps: Deps,
        principal: Caller,
        status: Annotated[str | None, QueryParameter(description="ok, due_soon, overdue, or due (both)")] = None,
        schedule: Annotated[str | None, QueryParameter(description="Schedule id")] = None,
        fleet: Annotated[str | None, QueryParameter()] = None,
        vehicle: Annotated[str | None, QueryParameter(description="Vehicle id")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> DueList:
        wanted: set[Stage] | None = None
        if status == "due":
            wanted = {Stage.DUE_SOON, Stage.OVERDUE}
        elif status is not None:
            try:
                wanted = {Stage(status)}
            except ValueError:
                detail = f"status must be ok, due_soon, overdue or due, got {status!r}"
                raise InvalidPayload("bad_query", detail) from None
        rows = [
            due
            for _, _, due in await maintenance_of(deps).standing_now(fleet=fleet, vehicle_id=vehicle)
            if principal.sees(due.fleet)
            and (wanted is None or due.status in wanted)
            and (schedule is None or due.schedule_id == schedule)
        ]
        rows.sort(key=lambda d: (-d.status.rank, d.vehicle_id, d.schedule_id))
        size = page_size(limit, deps.max_page_size)
        if cursor is not None:
            rank, vid, sid = decode_cursor(cursor, int, str, str)
            rows = [d for d in rows if (-d.status.rank, d.vehicle_id, d.schedule_id) > (-rank, vid, sid)]
        page = rows[:size]
        last = page[-1] if page else None
        more = len(rows) > size and last is not None
        next_cursor = encode_cursor(last.status.rank, last.vehicle_id, last.schedule_id) if more and last else None
        return DueList([due_view(d) for d in page], next_cursor)

    @get("/services", summary="Service records, newest first", opt=requires(Permission.MAINTENANCE_READ))
    async def services(
        self,
        deps: Deps,
        principal: Caller,
        vehicle: Annotated[str | None, QueryParameter(description="Vehicle id")] = None,
        schedule: Annotated[str | None, QueryParameter(description="Schedule id")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ServiceList:
        return await _services(deps, principal, vehicle, schedule, limit, cursor)


async def _services(
    deps: ApiDeps, principal: Principal, vehicle: str | None, schedule: str | None, limit: int, cursor: str | None
) -> ServiceList:
    size = page_size(limit, deps.max_page_size)
    query = RecordQuery(
        vehicle_id=vehicle,
        schedule_id=schedule,
        fleets=principal.fleet_filter(),
        before=decode_cursor(cursor, float, str) if cursor else None,
        limit=size + 1,
    )
    found = await maintenance_of(deps).list_services(query)
    more, found = len(found) > size, found[:size]
    return ServiceList(
        [service_view(r) for r in found], encode_cursor(found[-1].done_at, found[-1].id) if more else None
    )


class VehicleMaintenanceController(Controller):
    path = "/api/v1/vehicles"
    tags = ["maintenance"]  # noqa: RUF012 - Litestar reads this class attribute

    @get(
        "/{vehicle_id:str}/meters",
        summary="The vehicle's odometer and engine hours as the hub knows them, and its standing per schedule",
        opt=requires(Permission.MAINTENANCE_READ),
    )
    async def meters(self, deps: Deps, vehicle_id: VehicleId) -> MetersView:
        service = maintenance_of(deps)
        await service.look_up(vehicle_id)
        service.fleet_of(vehicle_id)
        odo, hours = service.meters(vehicle_id)
        due = [d for _, _, d in service.standing() if d.vehicle_id == vehicle_id]
        return MetersView(vehicle_id, odo, hours, [due_view(d) for d in due])

    @post(
        "/{vehicle_id:str}/meters/corrections",
        summary="Correct the odometer or engine hours (audited; in the twin from the vehicle's next message)",
        status_code=HTTP_201_CREATED,
        opt=requires(Permission.MAINTENANCE_WRITE),
    )
    async def correct(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        vehicle_id: VehicleId,
        data: Annotated[CorrectionIn, _CORRECTION_EXAMPLES],
    ) -> CorrectionView:
        correction = await maintenance_of(deps).correct_meters(
            vehicle_id,
            by=_by(principal, data.by),
            odometer_km=data.odometer_km,
            engine_hours=data.engine_hours,
            note=data.note,
            actor=actor_of(request),
        )
        return correction_view(correction)

    @get(
        "/{vehicle_id:str}/meters/corrections",
        summary="Corrections of the vehicle's meters, newest first",
        opt=requires(Permission.MAINTENANCE_READ),
    )
    async def corrections(
        self, deps: Deps, vehicle_id: VehicleId, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> CorrectionList:
        size = page_size(limit, deps.max_page_size)
        query = RecordQuery(
            vehicle_id=vehicle_id, before=decode_cursor(cursor, float, str) if cursor else None, limit=size + 1
        )
        found = await maintenance_of(deps).list_corrections(query)
        more, found = len(found) > size, found[:size]
        return CorrectionList(
            [correction_view(c) for c in found], encode_cursor(found[-1].at, found[-1].id) if more else None
        )

    @post(
        "/{vehicle_id:str}/services",
        summary="Record a service: closes the vehicle's interval of the schedule and starts the next",
        status_code=HTTP_201_CREATED,
        opt=requires(Permission.MAINTENANCE_WRITE),
    )
    async def record_service(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        vehicle_id: VehicleId,
        data: Annotated[ServiceIn, _SERVICE_EXAMPLES],
    ) -> ServiceView:
        record = await maintenance_of(deps).record_service(
            vehicle_id,
            data.schedule,
            by=_by(principal, data.by),
            done_at=query_time(data.done_at, "done_at"),
            odometer_km=data.odometer_km,
            engine_hours=data.engine_hours,
            note=data.note,
            actor=actor_of(request),
        )
        return service_view(record)

    @get(
        "/{vehicle_id:str}/services",
        summary="The vehicle's service records, newest first",
        opt=requires(Permission.MAINTENANCE_READ),
    )
    async def vehicle_services(
        self,
        deps: Deps,
        principal: Caller,
        vehicle_id: VehicleId,
        schedule: Annotated[str | None, QueryParameter(description="Schedule id")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ServiceList:
        return await _services(deps, principal, vehicle_id, schedule, limit, cursor)

"""Fleet reports: daily summaries, stops and zone visits as JSON or CSV, and their schedules."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import ResponseSpec
from litestar.params import PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import Caller, actor_of, ensure_fleet, requires
from api.deps import ApiDeps, Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, page_of, page_size
from api.times import query_time, rfc3339
from kernel import InvalidPayload
from reports import (
    DAILY_COLUMNS,
    FLEET_COLUMNS,
    STOP_COLUMNS,
    VISIT_COLUMNS,
    ReportSchedule,
    ReportScheduleBody,
    ReportService,
    fleet_row,
    parse_day,
    stop_row,
    to_csv,
    vehicle_row,
    visit_row,
    zone_of,
)
from security import Permission, Principal

ScheduleId = Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="Schedule id")]
Fleet = Annotated[str | None, QueryParameter(description="Fleet (required unless you see every fleet)")]
Vehicle = Annotated[str | None, QueryParameter(description="One vehicle id")]
Tz = Annotated[str, QueryParameter(max_length=64, description="IANA time zone of days and times, e.g. Europe/Madrid")]
Format = Annotated[str, QueryParameter(name="format", description="json (default) or csv")]
From = Annotated[str | None, QueryParameter(name="from", description="RFC 3339 or epoch seconds (default: 24 h ago)")]
To = Annotated[str | None, QueryParameter(description="RFC 3339 or epoch seconds, exclusive (default: now)")]

_MAX_SPAN_S = 31 * 86_400


def reports_of(deps: ApiDeps) -> ReportService:
    if deps.reports is None:
        raise ServiceUnavailableException("reports are off (reports.enabled = false)")
    return deps.reports


class DailyOut(msgspec.Struct, omit_defaults=True):
    tz: str
    days: list[str]
    from_: str = msgspec.field(name="from")
    to: str
    # One row per vehicle and day (with data), by date then vehicle; `fleets` holds each fleet's totals per day.
    items: list[dict[str, Any]]
    fleets: list[dict[str, Any]]
    next_cursor: str | None = None


class RowsOut(msgspec.Struct, omit_defaults=True):
    tz: str
    from_: str = msgspec.field(name="from")
    to: str
    items: list[dict[str, Any]]
    next_cursor: str | None = None


class ReportScheduleView(msgspec.Struct, omit_defaults=True):
    id: str
    # The schedule as written; a plain object so the request schema keeps its examples.
    schedule: dict[str, Any]
    created_at: str
    updated_at: str
    last_period: str | None = None


def schedule_view(s: ReportSchedule) -> ReportScheduleView:
    return ReportScheduleView(
        s.id, msgspec.to_builtins(s.body), rfc3339(s.created_at), rfc3339(s.updated_at), s.last_period
    )


class ReportScheduleList(msgspec.Struct, omit_defaults=True):
    items: list[ReportScheduleView]
    next_cursor: str | None = None


class SentOut(msgspec.Struct):
    schedule: str
    period: str
    queued: bool


_SCHEDULE_EXAMPLES = body(
    (
        "daily",
        "Yesterday's summary of fleet north, by email at 06:00 Madrid time",
        {"fleet": "north", "channel": "workshop", "period": "daily", "tz": "Europe/Madrid", "at_hour": 6},
    ),
    ("weekly", "Last week's summary to a webhook on Mondays", {"fleet": "north", "channel": "ops", "period": "weekly"}),
)


async def _scope(
    deps: ApiDeps, principal: Principal, fleet: str | None, vehicle: str | None
) -> tuple[str | None, tuple[str, ...] | None]:
    if vehicle is not None:
        twin = await deps.service.get_twin(vehicle)
        ensure_fleet(principal, twin.fleet, f"vehicle '{vehicle}'")
        return fleet, (vehicle,)
    if fleet is None:
        if not principal.all_fleets:
            raise InvalidPayload("bad_query", "name the fleet (?fleet=...) or a vehicle (?vehicle=...)")
        return None, None
    ensure_fleet(principal, fleet, f"fleet {fleet!r}")
    return fleet, None


def _format(fmt: str) -> str:
    if fmt not in {"json", "csv"}:
        raise InvalidPayload("bad_query", f"format must be json or csv, got {fmt!r}")
    return fmt


def _csv(text: str, name: str) -> Response[bytes]:
    return Response(
        text.encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _span(from_: str | None, to: str | None) -> tuple[float, float]:
    end = query_time(to, "to") or time.time()
    start = query_time(from_, "from")
    start = end - 86_400 if start is None else start
    if start > end:
        raise InvalidPayload("bad_query", "'from' must not be after 'to'")
    if end - start > _MAX_SPAN_S:
        raise InvalidPayload("range_too_long", "at most 31 days per request; narrow from/to")
    return start, end


class ReportsController(Controller):
    path = "/api/v1/reports"
    tags = ["reports"]  # noqa: RUF012 - Litestar reads this class attribute

    @get(
        "/daily",
        summary="Daily summary per vehicle and per fleet: distance, driving and idle time, speeds, energy, alerts",
        description=(
            "Days are local days of `tz` (default UTC); `date` defaults to yesterday there. Distance comes from "
            "the vehicle's odometer_km when present, else the hub's odometer (meters.odometer_km), else GPS. "
            "format=csv returns every vehicle row, a blank line, then the fleet totals."
        ),
        opt=requires(Permission.REPORTS_READ),
    )
    async def daily(
        self,
        deps: Deps,
        principal: Caller,
        fleet: Fleet = None,
        vehicle: Vehicle = None,
        date: Annotated[str | None, QueryParameter(description="First day, YYYY-MM-DD (default: yesterday)")] = None,
        days: Annotated[int, QueryParameter(ge=1, le=31, description="Days from `date`")] = 1,
        tz: Tz = "UTC",
        fmt: Format = "json",
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Any:
        fmt = _format(fmt)
        zone = zone_of(tz)
        fleet, vehicles = await _scope(deps, principal, fleet, vehicle)
        first = parse_day(date) if date else dt.datetime.now(zone).date() - dt.timedelta(days=1)
        report = await reports_of(deps).daily(fleet=fleet, first_day=first, days=days, tz=tz, vehicles=vehicles)
        report.vehicles = [d for d in report.vehicles if principal.sees(d.fleet)]
        report.fleets = [f for f in report.fleets if principal.sees(f.fleet)]
        if fmt == "csv":
            rows = to_csv(DAILY_COLUMNS, [vehicle_row(d, zone) for d in report.vehicles])
            totals = to_csv(FLEET_COLUMNS, [fleet_row(f) for f in report.fleets])
            return _csv(f"{rows}\n{totals}", f"daily-{fleet or 'all'}-{first.isoformat()}.csv")
        size = page_size(limit, deps.max_page_size)
        after = decode_cursor(cursor, str, str) if cursor else None
        rest = [d for d in report.vehicles if after is None or (d.date, d.vehicle_id) > after]
        page = rest[:size]
        next_cursor = encode_cursor(page[-1].date, page[-1].vehicle_id) if len(rest) > size else None
        return DailyOut(
            tz=tz,
            days=report.days,
            from_=rfc3339(report.start),
            to=rfc3339(report.end),
            items=[vehicle_row(d, zone) for d in page],
            fleets=[fleet_row(f) for f in report.fleets] if cursor is None else [],
            next_cursor=next_cursor,
        )

    @get("/stops", summary="Stops between trips: where, from when, how long", opt=requires(Permission.REPORTS_READ))
    async def stops(
        self,
        deps: Deps,
        principal: Caller,
        fleet: Fleet = None,
        vehicle: Vehicle = None,
        from_: From = None,
        to: To = None,
        tz: Tz = "UTC",
        fmt: Format = "json",
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Any:
        fmt, zone = _format(fmt), zone_of(tz)
        fleet, vehicles = await _scope(deps, principal, fleet, vehicle)
        start, end = _span(from_, to)
        rows = [
            stop_row(s, zone)
            for s in await reports_of(deps).stops(fleet=fleet, start=start, end=end, vehicles=vehicles)
        ]
        if fmt == "csv":
            return _csv(to_csv(STOP_COLUMNS, rows), "stops.csv")
        return _rows_page(rows, tz, start, end, limit, cursor, deps, ("vehicle_id", "start"))

    @get("/visits", summary="Zone visits: entered, left, dwell", opt=requires(Permission.REPORTS_READ))
    async def visits(
        self,
        deps: Deps,
        principal: Caller,
        fleet: Fleet = None,
        vehicle: Vehicle = None,
        from_: From = None,
        to: To = None,
        tz: Tz = "UTC",
        fmt: Format = "json",
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Any:
        fmt, zone = _format(fmt), zone_of(tz)
        fleet, vehicles = await _scope(deps, principal, fleet, vehicle)
        start, end = _span(from_, to)
        found = await reports_of(deps).visits(fleet=fleet, start=start, end=end, vehicles=vehicles)
        rows = [visit_row(v, zone) for v in found]
        if fmt == "csv":
            return _csv(to_csv(VISIT_COLUMNS, rows), "visits.csv")
        return _rows_page(rows, tz, start, end, limit, cursor, deps, ("vehicle_id", "zone", "entered"))

    @get("/schedules", summary="Report schedules", opt=requires(Permission.REPORTS_READ))
    async def list_schedules(
        self, deps: Deps, principal: Caller, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> ReportScheduleList:
        views = [schedule_view(s) for s in reports_of(deps).list_schedules() if principal.sees(s.body.fleet)]
        items, next_cursor = page_of(views, lambda v: v.id, page_size(limit, deps.max_page_size), cursor)
        return ReportScheduleList(items, next_cursor)

    @put(
        "/schedules/{schedule_id:str}",
        summary="Create or replace a schedule: a fleet's daily or weekly summary to a notification channel",
        responses={201: ResponseSpec(ReportScheduleView, generate_examples=False, description="Created")},
        opt=requires(Permission.NOTIFICATIONS_ADMIN),
    )
    async def put_schedule(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        schedule_id: ScheduleId,
        data: Annotated[ReportScheduleBody, _SCHEDULE_EXAMPLES],
    ) -> Response[ReportScheduleView]:
        ensure_fleet(principal, data.fleet, f"fleet {data.fleet!r}")
        if deps.notifications is not None:
            deps.notifications.get_channel(data.channel)
        schedule, created = await reports_of(deps).put_schedule(schedule_id, data, actor=actor_of(request))
        return Response(schedule_view(schedule), status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete(
        "/schedules/{schedule_id:str}", summary="Delete a report schedule", opt=requires(Permission.NOTIFICATIONS_ADMIN)
    )
    async def delete_schedule(self, request: Request[Any, Any, Any], deps: Deps, schedule_id: ScheduleId) -> None:
        await reports_of(deps).delete_schedule(schedule_id, actor=actor_of(request))

    @post(
        "/schedules/{schedule_id:str}/send",
        summary="Queue the last complete period's report of this schedule now (once per period)",
        status_code=HTTP_200_OK,
        opt=requires(Permission.NOTIFICATIONS_ADMIN),
    )
    async def send(self, deps: Deps, schedule_id: ScheduleId) -> SentOut:
        service = reports_of(deps)
        schedule = service.get_schedule(schedule_id)
        body_ = msgspec.structs.replace(schedule.body, at_hour=0)
        label, first, days = service.due_period(body_, time.time()) or ("", dt.date.today(), 1)
        payload = await service.schedule_payload(schedule, label, first, days)
        if deps.notifications is None:
            raise ServiceUnavailableException("notifications are off (notifications.enabled = false)")
        queued = await deps.notifications.report(schedule.body.channel, f"{schedule.id}:{label}", payload)
        return SentOut(schedule_id, label, queued > 0)


def _rows_page(
    rows: list[dict[str, Any]],
    tz: str,
    start: float,
    end: float,
    limit: int,
    cursor: str | None,
    deps: ApiDeps,
    key: tuple[str, ...],
) -> RowsOut:
    size = page_size(limit, deps.max_page_size)
    offset = int(decode_cursor(cursor, int)[0]) if cursor else 0
    page = rows[offset : offset + size]
    more = offset + size < len(rows)
    return RowsOut(tz, rfc3339(start), rfc3339(end), page, encode_cursor(offset + size) if more else None)

"""Telemetry history: raw points and bucketed aggregates, of one vehicle or a fleet, as JSON or CSV.

Pages are keyset-paged with an opaque `cursor`. With `Accept: text/csv` the whole
range is streamed with backpressure (`api.export`), so an export of a fleet's month
never sits in the hub's memory, not even for a client that stops reading.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from api import paging
from api.auth import Caller, ensure_fleet, requires, vehicle_fleet
from api.deps import ApiDeps, Deps
from api.export import aggregate_csv, bucket_time, csv_response, point_csv
from api.times import query_time, rfc3339
from api.vehicles import VehicleId
from kernel import InvalidPayload
from security import Permission
from twin import (
    AggregateQuery,
    AggregateRow,
    Bucket,
    ConnectionView,
    HistoryRow,
    Order,
    PointQuery,
    PresenceQuery,
    VehicleSelector,
    parse_aggs,
    time_zone,
)

_AGG_HELP = (
    "Comma-separated field:function pairs, functions avg|min|max|last|count, e.g. soc:avg,speed:max,soc:min. "
    "Only JSON numbers count; other values are skipped (null avg/min/max/last, count 0)."
)
_BUCKET_HELP = "1m, 5m or 1h (aligned to UTC) or 1d (midnight to midnight in tz)"
_CSV_NOTE = " Send Accept: text/csv to stream the whole range as CSV (limit, if given, caps it)."


def _ok(container: type[msgspec.Struct]) -> dict[int, ResponseSpec]:
    # The handlers return JSON or a CSV stream; the schema documents the JSON page.
    return {200: ResponseSpec(container, generate_examples=False, description="A page (JSON) or text/csv")}


class HistoryPoint(msgspec.Struct, omit_defaults=True):
    ts: str
    received_at: str
    data: dict[str, Any]
    # The device's sequence number, when it sent one.
    seq: int | None = None


class HistoryPage(msgspec.Struct, omit_defaults=True):
    vehicle_id: str
    items: list[HistoryPoint]
    next_cursor: str | None = None


class PresenceOut(msgspec.Struct, omit_defaults=True):
    ts: str
    connected: bool
    # Why the link dropped: clean, keepalive_timeout, taken_over, protocol_error, connection_lost, shutdown.
    reason: str | None = None


class PresencePage(msgspec.Struct, omit_defaults=True):
    vehicle_id: str
    # The twin's view now; a drop still inside the debounce window shows here before it is an event.
    connection: ConnectionView
    items: list[PresenceOut]
    next_cursor: str | None = None


class FleetPoint(msgspec.Struct, omit_defaults=True):
    vehicle_id: str
    ts: str
    received_at: str
    data: dict[str, Any]
    seq: int | None = None


class FleetHistoryPage(msgspec.Struct, omit_defaults=True):
    items: list[FleetPoint]
    next_cursor: str | None = None


class BucketOut(msgspec.Struct):
    vehicle_id: str
    # Bucket start, RFC 3339 in the requested time zone.
    bucket: str
    rows: int
    # Keyed like the request, e.g. {"soc:avg": 61.5, "speed:max": 88}.
    values: dict[str, Any]


class AggregateOut(msgspec.Struct, omit_defaults=True):
    bucket: str
    tz: str
    items: list[BucketOut]
    next_cursor: str | None = None


# -- parameters ------------------------------------------------------------------------

From = Annotated[str | None, QueryParameter(name="from", description="RFC 3339 or epoch seconds, inclusive")]
To = Annotated[str | None, QueryParameter(description="RFC 3339 or epoch seconds, exclusive")]
Fields = Annotated[str | None, QueryParameter(description="Comma-separated field paths, e.g. soc,gps.lat")]
Limit = Annotated[int | None, QueryParameter(ge=1, description="Items per page (JSON: 1000 unless given)")]
Cursor = paging.Cursor
Accept = Annotated[str | None, HeaderParameter(name="Accept")]
Fleet = Annotated[str | None, QueryParameter(description="Vehicles of this fleet")]
Tags = Annotated[
    list[str] | None, QueryParameter(name="tag", description="name:value, repeatable; vehicles with every tag")
]
Vehicles = Annotated[list[str] | None, QueryParameter(name="vehicle", description="Vehicle id, repeatable")]
Tz = Annotated[str, QueryParameter(description="IANA time zone for 1d buckets, e.g. Europe/Paris")]
Aggs = Annotated[str, QueryParameter(description=_AGG_HELP)]
BucketParam = Annotated[Bucket, QueryParameter(description=_BUCKET_HELP)]


def _fields(fields: str | None) -> tuple[str, ...] | None:
    return tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None


async def _scoped_selection(
    deps: ApiDeps, principal: Caller, fleet: str | None, tags: list[str] | None, vehicles: list[str] | None
) -> VehicleSelector:
    """`_selection`, limited to the caller's fleets: another fleet's vehicles are as if absent."""
    selection = _selection(fleet, tags, vehicles)
    scope = principal.fleet_filter()
    if scope is None:
        return selection
    if fleet is not None:
        ensure_fleet(principal, fleet, f"fleet '{fleet}'")
    for vid in selection.vehicle_ids or ():
        ensure_fleet(principal, await vehicle_fleet(deps, vid), f"vehicle '{vid}'")
    if fleet is None and selection.vehicle_ids is None:
        if len(scope) != 1:
            raise InvalidPayload("no_fleet", f"you see several fleets ({', '.join(scope)}); choose one with fleet=")
        selection = msgspec.structs.replace(selection, fleet=scope[0])
    return selection


def _selection(fleet: str | None, tags: list[str] | None, vehicles: list[str] | None) -> VehicleSelector:
    pairs: dict[str, str] = {}
    contradictory = False
    for tag in tags or ():
        name, sep, value = tag.partition(":")
        if not sep or not name:
            raise InvalidPayload("bad_tag", f"'tag' must be name:value, got {tag!r}")
        contradictory = contradictory or pairs.setdefault(name, value) != value
    if fleet is None and not pairs and not vehicles:
        raise InvalidPayload("no_selection", "give fleet, tag or vehicle to choose the vehicles")
    # Two values for one tag: no vehicle has both, so the selection is empty (not a refusal).
    ids = () if contradictory else tuple(vehicles) if vehicles else None
    return VehicleSelector(fleet=fleet, tags=pairs, vehicle_ids=ids)


def _wants_csv(accept: str | None) -> bool:
    return accept is not None and "text/csv" in accept.lower()


def _page_limit(limit: int | None, deps: ApiDeps) -> int:
    return min(limit or 1000, deps.max_history_rows)


# -- shared bodies -----------------------------------------------------------------------


async def _aggregate(
    deps: ApiDeps, query: AggregateQuery, limit: int | None, accept: str | None, filename: str
) -> Response[AggregateOut] | Stream:
    time_zone(query.tz)  # refuse a bad zone before streaming starts
    store = deps.history
    if _wants_csv(accept):
        body = aggregate_csv(store, query, limit, deps.export_rows_per_read, deps.export_chunk_bytes)
        return csv_response(body, filename)
    page = await store.aggregate(msgspec.structs.replace(query, limit=_page_limit(limit, deps)))
    items = [_bucket_out(r, query.tz) for r in page.rows]
    return Response(AggregateOut(query.bucket.value, query.tz, items, page.next_cursor))


def _bucket_out(row: AggregateRow, tz: str) -> BucketOut:
    return BucketOut(row.vehicle_id, bucket_time(row.bucket, tz), row.rows, row.values)


def _point(r: HistoryRow) -> HistoryPoint:
    return HistoryPoint(rfc3339(r.ts), rfc3339(r.received_at), r.data, r.seq)


def _fleet_point(r: HistoryRow) -> FleetPoint:
    return FleetPoint(r.vehicle_id, rfc3339(r.ts), rfc3339(r.received_at), r.data, r.seq)


class HistoryController(Controller):
    path = "/api/v1"
    tags = ["history"]  # noqa: RUF012 - Litestar reads this class attribute

    @get(
        "/vehicles/{vehicle_id:str}/history",
        summary="A vehicle's telemetry history, one row per accepted message",
        description="Oldest first unless order=desc; ties in device time keep arrival order." + _CSV_NOTE,
        responses=_ok(HistoryPage),
        opt=requires(Permission.HISTORY_READ),
    )
    async def vehicle_history(
        self,
        deps: Deps,
        vehicle_id: VehicleId,
        from_: From = None,
        to: To = None,
        fields: Fields = None,
        limit: Limit = None,
        order: Annotated[Order, QueryParameter(description="asc (oldest first) or desc")] = Order.ASC,
        cursor: Cursor = None,
        accept: Accept = None,
    ) -> Response[HistoryPage] | Stream:
        await deps.service.get_twin(vehicle_id)  # 404 for an unknown vehicle
        query = PointQuery(
            VehicleSelector.one(vehicle_id),
            start=query_time(from_, "from"),
            end=query_time(to, "to"),
            fields=_fields(fields),
            order=order,
            cursor=cursor,
        )
        store = deps.history
        if _wants_csv(accept):
            body = point_csv(store, query, limit, deps.export_rows_per_read, deps.export_chunk_bytes)
            return csv_response(body, f"history-{vehicle_id}.csv")
        page = await store.history_page(msgspec.structs.replace(query, limit=_page_limit(limit, deps)))
        items = [_point(r) for r in page.rows]
        return Response(HistoryPage(vehicle_id=vehicle_id, items=items, next_cursor=page.next_cursor))

    @get(
        "/vehicles/{vehicle_id:str}/presence",
        summary="A vehicle's connection events: online and offline changes, flaps debounced",
        opt=requires(Permission.HISTORY_READ),
        description=(
            "Each row is a real change: a vehicle back within ingest.presence_debounce_s of dropping off "
            "leaves no events. Oldest first unless order=desc."
        ),
    )
    async def vehicle_presence(
        self,
        deps: Deps,
        vehicle_id: VehicleId,
        from_: From = None,
        to: To = None,
        limit: Limit = None,
        order: Annotated[Order, QueryParameter(description="asc (oldest first) or desc")] = Order.ASC,
        cursor: Cursor = None,
    ) -> PresencePage:
        doc = await deps.service.get_twin(vehicle_id)
        start, end = query_time(from_, "from"), query_time(to, "to")
        size = _page_limit(limit, deps)
        # The cursor is the last event's time and how many events at that time were sent: the next
        # page starts at that time and skips them, so events sharing a timestamp are neither lost nor repeated.
        skip, at = 0, None
        if cursor is not None:
            at, skip = paging.decode_cursor(cursor, float, int)
            if order is Order.ASC:
                start = at
            else:
                end = math.nextafter(at, math.inf)
        query = PresenceQuery(vehicle_id, start=start, end=end, limit=size + skip + 1, order=order)
        events = (await deps.history.presence_history(query))[skip:]
        page = events[:size]
        next_cursor = None
        if len(events) > size:
            last = page[-1].ts
            same = sum(1 for e in page if e.ts == last)
            next_cursor = paging.encode_cursor(last, same + (skip if at == last else 0))
        items = [PresenceOut(rfc3339(e.ts), e.connected, e.reason) for e in page]
        return PresencePage(vehicle_id=vehicle_id, connection=doc.connection, items=items, next_cursor=next_cursor)

    @get(
        "/vehicles/{vehicle_id:str}/history/aggregate",
        summary="A vehicle's telemetry in time buckets: ?bucket=5m&agg=soc:avg,speed:max&tz=Europe/Paris",
        description="Buckets holding at least one row, oldest first." + _CSV_NOTE,
        responses=_ok(AggregateOut),
        opt=requires(Permission.HISTORY_READ),
    )
    async def vehicle_aggregate(
        self,
        deps: Deps,
        vehicle_id: VehicleId,
        bucket: BucketParam,
        agg: Aggs,
        from_: From = None,
        to: To = None,
        tz: Tz = "UTC",
        limit: Limit = None,
        cursor: Cursor = None,
        accept: Accept = None,
    ) -> Response[AggregateOut] | Stream:
        await deps.service.get_twin(vehicle_id)
        query = AggregateQuery(
            VehicleSelector.one(vehicle_id),
            bucket,
            parse_aggs(agg),
            start=query_time(from_, "from"),
            end=query_time(to, "to"),
            tz=tz,
            cursor=cursor,
        )
        return await _aggregate(deps, query, limit, accept, f"history-{vehicle_id}-{bucket.value}.csv")

    @get(
        "/history",
        summary="History of a set of vehicles: ?fleet=acme&tag=depot:north&vehicle=veh-1&from=...&to=...",
        description=(
            "Vehicles matching every given fleet, tag (name:value, repeatable) and vehicle (repeatable). "
            "Rows come vehicle by vehicle (id order), then by device time." + _CSV_NOTE
        ),
        responses=_ok(FleetHistoryPage),
        opt=requires(Permission.HISTORY_READ),
    )
    async def fleet_history(
        self,
        deps: Deps,
        principal: Caller,
        fleet: Fleet = None,
        tag: Tags = None,
        vehicle: Vehicles = None,
        from_: From = None,
        to: To = None,
        fields: Fields = None,
        limit: Limit = None,
        order: Annotated[Order, QueryParameter(description="asc or desc (vehicles and time)")] = Order.ASC,
        cursor: Cursor = None,
        accept: Accept = None,
    ) -> Response[FleetHistoryPage] | Stream:
        query = PointQuery(
            await _scoped_selection(deps, principal, fleet, tag, vehicle),
            start=query_time(from_, "from"),
            end=query_time(to, "to"),
            fields=_fields(fields),
            order=order,
            cursor=cursor,
        )
        store = deps.history
        if _wants_csv(accept):
            body = point_csv(store, query, limit, deps.export_rows_per_read, deps.export_chunk_bytes)
            return csv_response(body, "history.csv")
        page = await store.history_page(msgspec.structs.replace(query, limit=_page_limit(limit, deps)))
        items = [_fleet_point(r) for r in page.rows]
        return Response(FleetHistoryPage(items=items, next_cursor=page.next_cursor))

    @get(
        "/history/aggregate",
        summary="A set of vehicles in time buckets: ?fleet=acme&tag=depot:north&bucket=1d&agg=soc:min&tz=...",
        description="One series per vehicle (id order), buckets oldest first." + _CSV_NOTE,
        responses=_ok(AggregateOut),
        opt=requires(Permission.HISTORY_READ),
    )
    async def fleet_aggregate(
        self,
        deps: Deps,
        principal: Caller,
        bucket: BucketParam,
        agg: Aggs,
        fleet: Fleet = None,
        tag: Tags = None,
        vehicle: Vehicles = None,
        from_: From = None,
        to: To = None,
        tz: Tz = "UTC",
        limit: Limit = None,
        cursor: Cursor = None,
        accept: Accept = None,
    ) -> Response[AggregateOut] | Stream:
        query = AggregateQuery(
            await _scoped_selection(deps, principal, fleet, tag, vehicle),
            bucket,
            parse_aggs(agg),
            start=query_time(from_, "from"),
            end=query_time(to, "to"),
            tz=tz,
            cursor=cursor,
        )
        return await _aggregate(deps, query, limit, accept, f"history-{bucket.value}.csv")

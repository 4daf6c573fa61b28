"""Telemetry history: raw points and bucketed aggregates, of one vehicle or a fleet, as JSON or CSV.

Pages are keyset-paged with an opaque `cursor`. With `Accept: text/csv` the whole
range is streamed, read from the store a page at a time, so an export of a fleet's
month never sits in the hub's memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from api.auth import Caller, ensure_fleet, requires, vehicle_fleet
from api.deps import ApiDeps, Deps
from api.vehicles import VehicleId
from kernel import InvalidPayload, isoformat, parse_time
from security import Permission
from twin import (
    AggregateQuery,
    AggregateRow,
    Bucket,
    ConnectionView,
    HistoryReader,
    HistoryRow,
    Order,
    PointQuery,
    PresenceQuery,
    VehicleSet,
    parse_aggs,
    time_zone,
)

# Rows read from the store per page of a CSV export.
CSV_PAGE_ROWS = 5_000

_AGG_HELP = (
    "Comma-separated field:function pairs, functions avg|min|max|last|count, e.g. soc:avg,speed:max,soc:min. "
    "Only JSON numbers count; other values are skipped (null avg/min/max/last, count 0)."
)
_BUCKET_HELP = "1m, 5m or 1h (aligned to UTC) or 1d (midnight to midnight in tz)"
_CSV_NOTE = " Send Accept: text/csv to stream the whole range as CSV (limit, if given, caps it)."


def _ok(container: type[msgspec.Struct]) -> dict[int, ResponseSpec]:
    # The handlers return JSON or a CSV stream; the schema documents the JSON page.
    return {200: ResponseSpec(container, generate_examples=False, description="A page (JSON) or text/csv")}


class HistoryPoint(msgspec.Struct):
    ts: str
    received_at: str
    seq: int | None
    data: dict[str, Any]


class HistoryPage(msgspec.Struct):
    vehicle_id: str
    items: list[HistoryPoint]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None = None


class PresenceOut(msgspec.Struct):
    ts: str
    connected: bool
    # Why the link dropped: clean, keepalive_timeout, taken_over, protocol_error, connection_lost, shutdown.
    reason: str | None


class PresencePage(msgspec.Struct):
    vehicle_id: str
    # The twin's view now; a drop still inside the debounce window shows here before it is an event.
    connection: ConnectionView
    items: list[PresenceOut]


class FleetPoint(msgspec.Struct):
    vehicle_id: str
    ts: str
    received_at: str
    seq: int | None
    data: dict[str, Any]


class FleetHistoryPage(msgspec.Struct):
    items: list[FleetPoint]
    next_cursor: str | None


class BucketOut(msgspec.Struct):
    vehicle_id: str
    # Bucket start, RFC 3339 in the requested time zone.
    bucket: str
    rows: int
    # Keyed like the request, e.g. {"soc:avg": 61.5, "speed:max": 88}.
    values: dict[str, Any]


class AggregateOut(msgspec.Struct):
    bucket: str
    tz: str
    items: list[BucketOut]
    next_cursor: str | None


# -- parameters ------------------------------------------------------------------------

From = Annotated[str | None, QueryParameter(name="from", description="RFC 3339 or epoch seconds, inclusive")]
To = Annotated[str | None, QueryParameter(description="RFC 3339 or epoch seconds, exclusive")]
Fields = Annotated[str | None, QueryParameter(description="Comma-separated field paths, e.g. soc,gps.lat")]
Limit = Annotated[int | None, QueryParameter(ge=1, description="Items per page (JSON: 1000 unless given)")]
Cursor = Annotated[str | None, QueryParameter(description="next_cursor of the previous page")]
Accept = Annotated[str | None, HeaderParameter(name="Accept")]
Fleet = Annotated[str | None, QueryParameter(description="Vehicles of this fleet")]
Tags = Annotated[
    list[str] | None, QueryParameter(name="tag", description="name:value, repeatable; vehicles with every tag")
]
Vehicles = Annotated[list[str] | None, QueryParameter(name="vehicle", description="Vehicle id, repeatable")]
Tz = Annotated[str, QueryParameter(description="IANA time zone for 1d buckets, e.g. Europe/Paris")]
Aggs = Annotated[str, QueryParameter(description=_AGG_HELP)]
BucketParam = Annotated[Bucket, QueryParameter(description=_BUCKET_HELP)]


def query_time(value: str | None, name: str) -> float | None:
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


def _fields(fields: str | None) -> tuple[str, ...] | None:
    return tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None


async def _scoped_selection(
    deps: ApiDeps, principal: Caller, fleet: str | None, tags: list[str] | None, vehicles: list[str] | None
) -> VehicleSet:
    """`_selection`, limited to the caller's fleets: another fleet's vehicles are as if absent."""
    selection = _selection(fleet, tags, vehicles)
    scope = principal.fleet_filter()
    if scope is None:
        return selection
    if fleet is not None:
        ensure_fleet(principal, fleet, f"fleet '{fleet}'")
    for vid in selection.ids or ():
        ensure_fleet(principal, await vehicle_fleet(deps, vid), f"vehicle '{vid}'")
    if fleet is None and selection.ids is None:
        if len(scope) != 1:
            raise InvalidPayload("no_fleet", f"you see several fleets ({', '.join(scope)}); choose one with fleet=")
        selection = msgspec.structs.replace(selection, fleet=scope[0])
    return selection


def _selection(fleet: str | None, tags: list[str] | None, vehicles: list[str] | None) -> VehicleSet:
    pairs = []
    for tag in tags or ():
        name, sep, value = tag.partition(":")
        if not sep or not name:
            raise InvalidPayload("bad_tag", f"'tag' must be name:value, got {tag!r}")
        pairs.append((name, value))
    if fleet is None and not pairs and not vehicles:
        raise InvalidPayload("no_selection", "give fleet, tag or vehicle to choose the vehicles")
    return VehicleSet(ids=tuple(vehicles) if vehicles else None, fleet=fleet, tags=tuple(pairs))


def _wants_csv(accept: str | None) -> bool:
    return accept is not None and "text/csv" in accept.lower()


def _page_limit(limit: int | None, deps: ApiDeps) -> int:
    return min(limit or 1000, deps.max_history_rows)


def _bucket_time(ts: float, tz: str) -> str:
    text = datetime.fromtimestamp(ts, time_zone(tz)).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if tz == "UTC" else text


# -- CSV -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _csv(lines: Iterable[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(lines)
    return out.getvalue()


def _csv_response(body: AsyncIterator[str], filename: str) -> Stream:
    return Stream(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _point_csv(store: HistoryReader, query: PointQuery, cap: int | None) -> AsyncIterator[str]:
    columns = list(query.fields) if query.fields is not None else ["data"]
    yield _csv([["vehicle_id", "ts", "received_at", "seq", *columns]])
    sent, cursor = 0, None
    while cap is None or sent < cap:
        size = CSV_PAGE_ROWS if cap is None else min(CSV_PAGE_ROWS, cap - sent)
        page = await store.history_page(msgspec.structs.replace(query, cursor=cursor, limit=size))
        lines = []
        for r in page.rows:
            values = [r.data.get(c) for c in columns] if query.fields is not None else [r.data]
            lines.append([r.vehicle_id, isoformat(r.ts) or "", isoformat(r.received_at) or "", _cell(r.seq)])
            lines[-1].extend(_cell(v) for v in values)
        sent += len(page.rows)
        yield _csv(lines)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def _aggregate_csv(store: HistoryReader, query: AggregateQuery, cap: int | None) -> AsyncIterator[str]:
    keys = [a.key for a in query.aggs]
    yield _csv([["vehicle_id", "bucket", "rows", *keys]])
    sent, cursor = 0, None
    while cap is None or sent < cap:
        size = CSV_PAGE_ROWS if cap is None else min(CSV_PAGE_ROWS, cap - sent)
        page = await store.aggregate(msgspec.structs.replace(query, cursor=cursor, limit=size))
        lines = [
            [r.vehicle_id, _bucket_time(r.bucket, query.tz), str(r.rows), *(_cell(r.values[k]) for k in keys)]
            for r in page.rows
        ]
        sent += len(page.rows)
        yield _csv(lines)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# -- shared bodies -----------------------------------------------------------------------


async def _aggregate(
    deps: ApiDeps, query: AggregateQuery, limit: int | None, accept: str | None, filename: str
) -> Response[AggregateOut] | Stream:
    time_zone(query.tz)  # refuse a bad zone before streaming starts
    store = deps.history
    if _wants_csv(accept):
        return _csv_response(_aggregate_csv(store, query, limit), filename)
    page = await store.aggregate(msgspec.structs.replace(query, limit=_page_limit(limit, deps)))
    items = [_bucket_out(r, query.tz) for r in page.rows]
    return Response(AggregateOut(query.bucket.value, query.tz, items, page.next_cursor))


def _bucket_out(row: AggregateRow, tz: str) -> BucketOut:
    return BucketOut(row.vehicle_id, _bucket_time(row.bucket, tz), row.rows, row.values)


def _point(r: HistoryRow) -> HistoryPoint:
    return HistoryPoint(isoformat(r.ts) or "", isoformat(r.received_at) or "", r.seq, r.data)


def _fleet_point(r: HistoryRow) -> FleetPoint:
    return FleetPoint(r.vehicle_id, isoformat(r.ts) or "", isoformat(r.received_at) or "", r.seq, r.data)


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
            VehicleSet.one(vehicle_id),
            start=query_time(from_, "from"),
            end=query_time(to, "to"),
            fields=_fields(fields),
            order=order,
            cursor=cursor,
        )
        store = deps.history
        if _wants_csv(accept):
            return _csv_response(_point_csv(store, query, limit), f"history-{vehicle_id}.csv")
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
    ) -> PresencePage:
        doc = await deps.service.get_twin(vehicle_id)
        query = PresenceQuery(
            vehicle_id,
            start=query_time(from_, "from"),
            end=query_time(to, "to"),
            limit=_page_limit(limit, deps),
            order=order,
        )
        events = await deps.history.presence_history(query)
        items = [PresenceOut(isoformat(e.ts) or "", e.connected, e.reason) for e in events]
        return PresencePage(vehicle_id=vehicle_id, connection=doc.connection, items=items)

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
            VehicleSet.one(vehicle_id),
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
            return _csv_response(_point_csv(store, query, limit), "history.csv")
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

"""Vehicles and their twins: list, read, change desired state and tags, read history."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from api.auth import Caller, audit, requires
from api.credentials import NewVehicle, VehicleSecret, provision_one
from api.deps import Deps
from kernel import InvalidPayload, parse_time
from security import Permission
from twin import TwinAsOf, TwinDocument, TwinFilter

VehicleId = Annotated[
    str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Vehicle id (its MQTT username)")
]


class VehiclePage(msgspec.Struct):
    items: list[TwinDocument]
    # Pass as `cursor` to get the next page; null on the last page.
    next_cursor: str | None


def _time(value: str, name: str) -> float:
    try:
        return parse_time(float(value), field=name)
    except ValueError:
        pass
    try:
        return parse_time(value, field=name)
    except InvalidPayload as exc:
        raise InvalidPayload("bad_query", exc.detail) from None


def _etag(doc: TwinDocument) -> dict[str, str]:
    return {"ETag": f'"{doc.version}"'}


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    raw = value.strip().removeprefix("W/").strip('"')
    try:
        return int(raw)
    except ValueError:
        raise InvalidPayload("bad_if_match", f"If-Match must be a twin version number, got {value!r}") from None


class VehicleController(Controller):
    path = "/api/v1/vehicles"
    tags = ["vehicles"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List vehicles with their twins", opt=requires(Permission.TWINS_READ))
    async def list_vehicles(
        self,
        deps: Deps,
        principal: Caller,
        connected: Annotated[bool | None, QueryParameter(description="Only vehicles (not) connected now")] = None,
        fleet: Annotated[str | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 100,
        cursor: Annotated[str | None, QueryParameter(description="next_cursor of the previous page")] = None,
    ) -> VehiclePage:
        limit = min(limit, deps.max_page_size)
        scope = principal.fleet_filter()
        if fleet is not None:
            fleets: tuple[str | None, ...] = (fleet,) if scope is None or fleet in scope else ()
        else:
            fleets = (None,) if scope is None else scope
        docs = []
        # One keyset query per fleet the caller sees, merged by vehicle id.
        for one in fleets:
            query = TwinFilter(fleet=one, connected=connected, after=cursor, limit=limit + 1)
            docs.extend(await deps.service.list_twins(query))
        docs.sort(key=lambda d: d.vehicle_id)
        more = len(docs) > limit
        docs = docs[:limit]
        return VehiclePage(items=docs, next_cursor=docs[-1].vehicle_id if more else None)

    @post(
        "/",
        summary="Provision a vehicle; the response holds its MQTT secret, shown only this once",
        status_code=HTTP_201_CREATED,
        tags=["provisioning"],
        opt=requires(Permission.VEHICLES_PROVISION),
    )
    async def provision(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, data: JSONBody[NewVehicle]
    ) -> VehicleSecret:
        return await provision_one(request, deps, principal, data)

    @get(
        "/{vehicle_id:str}/twin",
        summary="Read a vehicle's twin document, now or as it was at a time",
        opt=requires(Permission.TWINS_READ),
    )
    async def get_twin(
        self,
        deps: Deps,
        vehicle_id: VehicleId,
        at: Annotated[
            str | None,
            QueryParameter(description="RFC 3339 or epoch seconds: the reported state at that time, from history"),
        ] = None,
    ) -> Response[TwinDocument | TwinAsOf]:
        if at is not None:
            when = _time(at, "at")
            return Response(await deps.service.twin_at(vehicle_id, when))
        doc = await deps.service.get_twin(vehicle_id)
        return Response(doc, headers=_etag(doc))

    @patch(
        "/{vehicle_id:str}/twin/desired",
        summary="Merge a patch into desired state",
        opt=requires(Permission.TWINS_WRITE),
    )
    async def patch_desired(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        vehicle_id: VehicleId,
        data: JSONBody[dict[str, Any]],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
        ttl_s: Annotated[
            float | None, QueryParameter(gt=0, description="Expire pending values after this long")
        ] = None,
    ) -> Response[TwinDocument]:
        doc = await deps.service.patch_desired(vehicle_id, data, if_match=_if_match(if_match), ttl_s=ttl_s)
        await audit(
            request, deps, "twin.desired", vehicle_id=vehicle_id, detail={"patch": data, "version": doc.version}
        )
        return Response(doc, headers=_etag(doc))

    @patch(
        "/{vehicle_id:str}/tags", summary="Merge a patch into the vehicle's tags", opt=requires(Permission.TWINS_WRITE)
    )
    async def patch_tags(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        vehicle_id: VehicleId,
        data: JSONBody[dict[str, Any]],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
    ) -> Response[TwinDocument]:
        doc = await deps.service.patch_tags(vehicle_id, data, if_match=_if_match(if_match))
        await audit(request, deps, "twin.tags", vehicle_id=vehicle_id, detail={"patch": data, "version": doc.version})
        return Response(doc, headers=_etag(doc))

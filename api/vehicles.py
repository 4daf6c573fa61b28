"""Vehicles and their twins: list, read, change desired state and tags, read history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from api.auth import Caller, actor_of, requires
from api.credentials import NewVehicle, VehicleSecret, provision_one
from api.deps import ApiDeps, Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, page_size
from api.times import query_time
from kernel import InvalidPayload
from security import Permission, TwinWriteAudit
from twin import TwinAsOf, TwinDocument, TwinFilter

VehicleId = Annotated[
    str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Vehicle id (its MQTT username)")
]


class VehiclePage(msgspec.Struct, omit_defaults=True):
    items: list[TwinDocument]
    next_cursor: str | None = None


_VEHICLE_EXAMPLES = body(
    ("one", "A vehicle of a fleet, with tags", {"vehicle_id": "veh-0042", "fleet": "acme", "tags": {"depot": "north"}}),
)
_DESIRED_EXAMPLES = body(
    ("charge-limit", "Ask for a charge limit", {"charge_limit": 70}),
    ("nested", "Merge into a nested object; null deletes a key", {"config": {"report_interval_s": 10, "debug": None}}),
)
_TAGS_EXAMPLES = body(("depot", "Move to another depot; null removes a tag", {"depot": "south", "driver": None}))


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
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> VehiclePage:
        limit = page_size(limit, deps.max_page_size)
        after = decode_cursor(cursor, str)[0] if cursor is not None else None
        scope = principal.fleet_filter()
        if fleet is not None:
            fleets: tuple[str | None, ...] = (fleet,) if scope is None or fleet in scope else ()
        else:
            fleets = (None,) if scope is None else scope
        docs = []
        # One keyset query per fleet the caller sees, merged by vehicle id.
        for one in fleets:
            query = TwinFilter(fleet=one, connected=connected, after=after, limit=limit + 1)
            docs.extend(await deps.service.list_twins(query))
        docs.sort(key=lambda d: d.vehicle_id)
        more = len(docs) > limit
        docs = docs[:limit]
        return VehiclePage(items=docs, next_cursor=encode_cursor(docs[-1].vehicle_id) if more else None)

    @post(
        "/",
        summary="Provision a vehicle; the response holds its MQTT secret, shown only this once",
        status_code=HTTP_201_CREATED,
        tags=["provisioning"],
        opt=requires(Permission.VEHICLES_PROVISION),
    )
    async def provision(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        data: Annotated[NewVehicle, _VEHICLE_EXAMPLES],
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
            when = query_time(at, "at") or 0.0
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
        data: Annotated[dict[str, Any], _DESIRED_EXAMPLES],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
        ttl_s: Annotated[
            float | None, QueryParameter(gt=0, description="Expire pending values after this long")
        ] = None,
    ) -> Response[TwinDocument]:
        doc = await deps.service.patch_desired(
            vehicle_id,
            data,
            if_match=_if_match(if_match),
            ttl_s=ttl_s,
            audit=_audited(request, deps, "twin.desired", data),
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
        data: Annotated[dict[str, Any], _TAGS_EXAMPLES],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
    ) -> Response[TwinDocument]:
        doc = await deps.service.patch_tags(
            vehicle_id, data, if_match=_if_match(if_match), audit=_audited(request, deps, "twin.tags", data)
        )
        return Response(doc, headers=_etag(doc))


def _audited(
    request: Request[Any, Any, Any], deps: ApiDeps, action: str, patch: Mapping[str, Any]
) -> TwinWriteAudit | None:
    """The audit entry of a twin write, made from the changed twin; the twin store commits it with the change."""
    if deps.security is None:
        return None
    actor = actor_of(request)
    return TwinWriteAudit(actor.name, actor.remote, action, dict(patch))

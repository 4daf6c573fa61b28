"""Zones that rules test with `inside`, `entered` and `left`: circles and polygons by name."""

from __future__ import annotations

from typing import Annotated, Any, cast

import msgspec
from litestar import Controller, Request, Response, delete, get, put
from litestar.openapi import ResponseSpec
from litestar.params import PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import actor_of, requires
from api.deps import Deps
from api.examples import body
from api.paging import DEFAULT_LIMIT, Cursor, Limit, page_of, page_size
from api.rules import engine_of
from rules import Circle, LatLon, Polygon, Zone
from security import Permission

ZoneName = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Zone name")]


class CircleView(msgspec.Struct, tag_field="kind", tag="circle"):
    name: str
    lat: float
    lon: float
    radius_m: float


class PolygonView(msgspec.Struct, tag_field="kind", tag="polygon"):
    name: str
    vertices: list[LatLon]


# A zone as every response shows it: its name beside its shape.
ZoneView = CircleView | PolygonView


class ZoneList(msgspec.Struct, omit_defaults=True):
    items: list[ZoneView]
    next_cursor: str | None = None


def zone_view(name: str, zone: Zone) -> ZoneView:
    if isinstance(zone, Circle):
        return CircleView(name, zone.lat, zone.lon, zone.radius_m)
    return PolygonView(name, list(zone.vertices))


_EXAMPLES = body(
    ("circle", "A depot: 500 m around a point", {"kind": "circle", "lat": 19.4326, "lon": -99.1332, "radius_m": 500}),
    (
        "polygon",
        "A yard: three or more vertices, implicitly closed",
        {
            "kind": "polygon",
            "vertices": [{"lat": 19.43, "lon": -99.14}, {"lat": 19.43, "lon": -99.13}, {"lat": 19.44, "lon": -99.13}],
        },
    ),
)


class ZonesController(Controller):
    path = "/api/v1/zones"
    tags = ["zones"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List zones by name", opt=requires(Permission.RULES_READ))
    async def list_zones(self, deps: Deps, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> ZoneList:
        views = [zone_view(name, zone) for name, zone in engine_of(deps).list_zones().items()]
        items, next_cursor = page_of(views, lambda z: z.name, page_size(limit, deps.max_page_size), cursor)
        return ZoneList(items, next_cursor)

    @get("/{name:str}", summary="Read a zone", opt=requires(Permission.RULES_READ))
    async def get_zone(self, deps: Deps, name: ZoneName) -> ZoneView:
        return zone_view(name, engine_of(deps).get_zone(name))

    @put(
        "/{name:str}",
        summary="Create or replace a zone",
        # A union is a valid response type; litestar's annotation does not say so once attrs is installed.
        responses={201: ResponseSpec(cast(Any, ZoneView), generate_examples=False, description="Created")},
        opt=requires(Permission.RULES_WRITE),
    )
    async def put_zone(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        name: ZoneName,
        data: Annotated[Circle | Polygon, _EXAMPLES],
    ) -> Response[ZoneView]:
        created = await engine_of(deps).put_zone(name, data, actor=actor_of(request))
        return Response(zone_view(name, data), status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete(
        "/{name:str}", summary="Delete a zone; rules naming it no longer hold", opt=requires(Permission.RULES_WRITE)
    )
    async def delete_zone(self, request: Request[Any, Any, Any], deps: Deps, name: ZoneName) -> None:
        await engine_of(deps).delete_zone(name, actor=actor_of(request))

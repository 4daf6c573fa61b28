"""Zones that rules test with `inside`, `entered` and `left`: circles and polygons by name."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, put
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import audit, requires
from api.deps import Deps
from api.rules import engine_of
from rules import Circle, Polygon, Zone
from security import Permission

ZoneName = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Zone name")]


class ZoneList(msgspec.Struct):
    items: dict[str, Zone]


class ZonesController(Controller):
    path = "/api/v1/zones"
    tags = ["zones"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List zones", opt=requires(Permission.RULES_READ))
    async def list_zones(self, deps: Deps) -> ZoneList:
        return ZoneList(items=engine_of(deps).list_zones())

    @get("/{name:str}", summary="Read a zone", opt=requires(Permission.RULES_READ))
    async def get_zone(self, deps: Deps, name: ZoneName) -> Zone:
        return engine_of(deps).get_zone(name)

    @put("/{name:str}", summary="Create or replace a zone", opt=requires(Permission.RULES_WRITE))
    async def put_zone(
        self, request: Request[Any, Any, Any], deps: Deps, name: ZoneName, data: JSONBody[Circle | Polygon]
    ) -> Response[Any]:
        created = await engine_of(deps).put_zone(name, data)
        await audit(
            request, deps, "zone.put", target=name, detail={"created": created, "zone": msgspec.to_builtins(data)}
        )
        return Response(data, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete(
        "/{name:str}", summary="Delete a zone; rules naming it no longer hold", opt=requires(Permission.RULES_WRITE)
    )
    async def delete_zone(self, request: Request[Any, Any, Any], deps: Deps, name: ZoneName) -> None:
        await engine_of(deps).delete_zone(name)
        await audit(request, deps, "zone.delete", target=name)

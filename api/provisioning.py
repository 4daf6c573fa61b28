"""Vehicle provisioning: create a vehicle with its MQTT secret, import a fleet from CSV, rotate and revoke.

A secret appears in exactly one response, the one that created it; only its argon2
hash is stored. Revoking disconnects the vehicle at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import Caller, ensure_fleet, remote_of, requires
from api.credentials import CredentialStatus, ImportResult, VehicleSecret, secret_view, security_of
from api.deps import Deps
from api.vehicles import VehicleId
from kernel import InvalidPayload
from security import DEFAULT_FLEET, Actor, Permission


def _actor(request: Request[Any, Any, Any], principal: Caller) -> Actor:
    return Actor.of(principal, remote_of(request))


class ProvisioningController(Controller):
    path = "/api/v1/vehicles"
    tags = ["provisioning"]  # noqa: RUF012 - Litestar reads this class attribute

    @post(
        "/import",
        summary="Provision every vehicle of a CSV (header: vehicle_id, then optional tag columns) into one fleet",
        status_code=HTTP_201_CREATED,
        opt=requires(Permission.VEHICLES_PROVISION),
    )
    async def import_csv(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        principal: Caller,
        fleet: Annotated[str, QueryParameter()] = DEFAULT_FLEET,
    ) -> ImportResult:
        ensure_fleet(principal, fleet, f"fleet '{fleet}'")
        try:
            text = (await request.body()).decode()
        except UnicodeDecodeError:
            raise InvalidPayload("bad_csv", "the CSV must be UTF-8 text") from None
        made = await security_of(deps).provision_csv(text, fleet, actor=_actor(request, principal))
        return ImportResult(fleet, [secret_view(p) for p in made])

    @get(
        "/{vehicle_id:str}/credentials",
        summary="Whether a vehicle's credentials are active (never the secret)",
        opt=requires(Permission.VEHICLES_PROVISION),
    )
    async def credential_status(self, deps: Deps, vehicle_id: VehicleId) -> CredentialStatus:
        c = await security_of(deps).credential(vehicle_id)
        return CredentialStatus(c.vehicle_id, c.fleet, c.created_at, c.rotated_at, c.revoked_at, c.active)

    @post(
        "/{vehicle_id:str}/credentials/rotate",
        summary="Issue a new secret (shown once); the old one stops working, a revoked vehicle is re-enabled",
        status_code=HTTP_200_OK,
        opt=requires(Permission.VEHICLES_PROVISION),
    )
    async def rotate(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, vehicle_id: VehicleId
    ) -> VehicleSecret:
        return secret_view(await security_of(deps).rotate(vehicle_id, actor=_actor(request, principal)))

    @post(
        "/{vehicle_id:str}/credentials/revoke",
        summary="Revoke a vehicle's credentials and disconnect it now",
        status_code=HTTP_200_OK,
        opt=requires(Permission.VEHICLES_PROVISION),
    )
    async def revoke(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, vehicle_id: VehicleId
    ) -> CredentialStatus:
        c = await security_of(deps).revoke(vehicle_id, actor=_actor(request, principal))
        return CredentialStatus(c.vehicle_id, c.fleet, c.created_at, c.rotated_at, c.revoked_at, c.active)

    @delete(
        "/{vehicle_id:str}/credentials",
        summary="Revoke a vehicle's credentials and disconnect it now",
        opt=requires(Permission.VEHICLES_PROVISION),
    )
    async def delete_credentials(
        self, request: Request[Any, Any, Any], deps: Deps, principal: Caller, vehicle_id: VehicleId
    ) -> None:
        await security_of(deps).revoke(vehicle_id, actor=_actor(request, principal))

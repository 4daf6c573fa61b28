"""Request and response shapes of vehicle provisioning, shared by the vehicles and provisioning routes."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from api.auth import ensure_fleet, remote_of
from api.deps import ApiDeps
from api.times import rfc3339
from kernel import StoreError, isoformat
from security import DEFAULT_FLEET, Actor, Principal, Provisioned, SecurityService, VehicleCredential


class NewVehicle(msgspec.Struct, forbid_unknown_fields=True):
    vehicle_id: str
    fleet: str = DEFAULT_FLEET
    tags: dict[str, str] = msgspec.field(default_factory=dict)


class VehicleSecret(msgspec.Struct):
    vehicle_id: str
    fleet: str
    # Shown only in this response: store it in the vehicle now.
    secret: str
    mqtt_username: str


class ImportResult(msgspec.Struct):
    fleet: str
    vehicles: list[VehicleSecret]


class CredentialStatus(msgspec.Struct, omit_defaults=True):
    vehicle_id: str
    fleet: str
    active: bool
    # RFC 3339; `rotated_at` and `revoked_at` only once that happened.
    created_at: str
    rotated_at: str | None = None
    revoked_at: str | None = None


def credential_status(c: VehicleCredential) -> CredentialStatus:
    return CredentialStatus(
        c.vehicle_id, c.fleet, c.active, rfc3339(c.created_at), isoformat(c.rotated_at), isoformat(c.revoked_at)
    )


def security_of(deps: ApiDeps) -> SecurityService:
    if deps.security is None:
        raise StoreError("no credential store is configured")
    return deps.security


def secret_view(p: Provisioned) -> VehicleSecret:
    return VehicleSecret(p.vehicle_id, p.fleet, p.secret, p.vehicle_id)


async def provision_one(
    request: Request[Any, Any, Any], deps: ApiDeps, principal: Principal, data: NewVehicle
) -> VehicleSecret:
    ensure_fleet(principal, data.fleet, f"fleet '{data.fleet}'")
    actor = Actor.of(principal, remote_of(request))
    made = await security_of(deps).provision(data.vehicle_id, data.fleet, actor=actor, tags=data.tags)
    return secret_view(made)

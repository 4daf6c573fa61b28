"""Request and response shapes of vehicle provisioning, shared by the vehicles and provisioning routes."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from api.auth import ensure_fleet, remote_of
from api.deps import ApiDeps
from kernel import StoreError
from security import DEFAULT_FLEET, Actor, Principal, Provisioned, SecurityService


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


class CredentialStatus(msgspec.Struct):
    vehicle_id: str
    fleet: str
    created_at: float
    rotated_at: float | None
    revoked_at: float | None
    active: bool


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

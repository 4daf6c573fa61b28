"""Roles, permissions and the principal a request or MQTT session acts as."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from security.model import ALL_FLEETS, Role


class Permission(enum.Enum):
    """What a route handler or operation needs. API handlers name one in `opt={"permission": ...}`."""

    PUBLIC = "public"
    TWINS_READ = "twins:read"
    TWINS_WRITE = "twins:write"
    HISTORY_READ = "history:read"
    COMMANDS_SEND = "commands:send"
    COMMANDS_READ = "commands:read"
    ALERTS_READ = "alerts:read"
    ALERTS_ACK = "alerts:ack"
    RULES_READ = "rules:read"
    RULES_WRITE = "rules:write"
    VEHICLES_PROVISION = "vehicles:provision"
    USERS_ADMIN = "users:admin"
    TOKENS_OWN = "tokens:own"
    AUDIT_READ = "audit:read"
    OPS_READ = "ops:read"
    MAINTENANCE_READ = "maintenance:read"
    # Schedules, service records and meter corrections.
    MAINTENANCE_WRITE = "maintenance:write"
    NOTIFICATIONS_READ = "notifications:read"
    # Channels (their secrets and addresses), dead-letter replay, report schedules.
    NOTIFICATIONS_ADMIN = "notifications:admin"
    REPORTS_READ = "reports:read"


_READ = frozenset(
    {
        Permission.TWINS_READ,
        Permission.HISTORY_READ,
        Permission.ALERTS_READ,
        Permission.RULES_READ,
        Permission.COMMANDS_READ,
        Permission.TOKENS_OWN,
        Permission.OPS_READ,
        Permission.MAINTENANCE_READ,
        Permission.NOTIFICATIONS_READ,
        Permission.REPORTS_READ,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _READ,
    Role.MAINTENANCE: _READ | {Permission.ALERTS_ACK, Permission.MAINTENANCE_WRITE},
    Role.OPERATOR: _READ | {Permission.TWINS_WRITE, Permission.COMMANDS_SEND, Permission.MAINTENANCE_WRITE},
    Role.ADMIN: frozenset(Permission),
}


class PrincipalKind(enum.Enum):
    USER = "user"
    VEHICLE = "vehicle"
    # Development mode: authentication is off and everything is allowed.
    DEV = "dev"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a user (by token or password), a vehicle, or the development-mode stand-in."""

    name: str
    kind: PrincipalKind
    role: Role
    fleets: frozenset[str]
    # The API token a user authenticated with, so revoking it can end their MQTT session too.
    token_id: str | None = None
    permissions: frozenset[Permission] = field(default=frozenset())

    @classmethod
    def user(
        cls, name: str, role: Role, fleets: tuple[str, ...] | frozenset[str], token_id: str | None = None
    ) -> Principal:
        return cls(name, PrincipalKind.USER, role, frozenset(fleets), token_id, ROLE_PERMISSIONS[role])

    @classmethod
    def vehicle(cls, vehicle_id: str, fleet: str) -> Principal:
        return cls(vehicle_id, PrincipalKind.VEHICLE, Role.VIEWER, frozenset({fleet}), None, frozenset())

    @classmethod
    def dev(cls) -> Principal:
        return cls("dev", PrincipalKind.DEV, Role.ADMIN, frozenset({ALL_FLEETS}), None, frozenset(Permission))

    @property
    def all_fleets(self) -> bool:
        return ALL_FLEETS in self.fleets

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"vehicle:{self.name}" if self.kind is PrincipalKind.VEHICLE else self.name

    def can(self, permission: Permission) -> bool:
        return permission is Permission.PUBLIC or permission in self.permissions

    def sees(self, fleet: str | None) -> bool:
        return self.all_fleets or (fleet is not None and fleet in self.fleets)

    def fleet_filter(self) -> tuple[str, ...] | None:
        """The fleets a list query must be limited to; None when this principal sees every fleet."""
        return None if self.all_fleets else tuple(sorted(self.fleets))

"""What the security store keeps: vehicle credentials, users, API tokens and the audit log.

Secrets never appear here in the clear: a vehicle secret or user password is an argon2
hash, an API token a SHA-256 digest (tokens are 256 random bits, so a fast hash is
enough and keeps every API request cheap).
"""

from __future__ import annotations

import enum

import msgspec

# Stands for "every fleet" in a user's fleet list; only such users may use wildcards
# across fleets (`alerts/#`) or see vehicles of any fleet.
ALL_FLEETS = "*"
DEFAULT_FLEET = "default"


class Role(enum.Enum):
    ADMIN = "admin"
    OPERATOR = "operator"
    MAINTENANCE = "maintenance"
    VIEWER = "viewer"


class VehicleCredential(msgspec.Struct, frozen=True):
    vehicle_id: str
    fleet: str
    secret_hash: str
    created_at: float
    rotated_at: float | None = None
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class User(msgspec.Struct, frozen=True):
    name: str
    role: Role
    fleets: tuple[str, ...]
    created_at: float
    # argon2; None for users who only ever use API tokens.
    password_hash: str | None = None
    disabled: bool = False


class ApiToken(msgspec.Struct, frozen=True):
    id: str
    user: str
    token_hash: str
    created_at: float
    expires_at: float
    label: str = ""
    revoked_at: float | None = None

    def valid_at(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at


class AuditEntry(msgspec.Struct, frozen=True):
    id: str
    ts: float
    # The user name, `vehicle:<id>`, `cli` or `bootstrap`; `dev` when auth is off.
    actor: str
    action: str
    # The remote address of the HTTP or MQTT client; "local" for the CLI.
    remote: str
    vehicle_id: str | None = None
    fleet: str | None = None
    target: str | None = None
    detail: dict[str, object] = msgspec.field(default_factory=dict)


class AuditQuery(msgspec.Struct, frozen=True):
    start: float | None = None
    end: float | None = None
    actor: str | None = None
    vehicle_id: str | None = None
    action: str | None = None
    # Entries of these fleets (or with no fleet) only; None: every fleet.
    fleets: tuple[str, ...] | None = None
    limit: int = 100
    # Entries strictly older than this id's timestamp order (keyset paging, newest first).
    before: tuple[float, str] | None = None

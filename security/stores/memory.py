"""The security store in memory, for unit tests."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from security.model import ApiToken, AuditEntry, AuditQuery, User, VehicleCredential
from security.stores.protocol import AlreadyExists


def audit_matches(entry: AuditEntry, query: AuditQuery) -> bool:
    if query.start is not None and entry.ts < query.start:
        return False
    if query.end is not None and entry.ts >= query.end:
        return False
    if query.actor is not None and entry.actor != query.actor:
        return False
    if query.vehicle_id is not None and entry.vehicle_id != query.vehicle_id:
        return False
    if query.action is not None and entry.action != query.action:
        return False
    if query.fleets is not None and entry.fleet is not None and entry.fleet not in query.fleets:
        return False
    return query.before is None or (entry.ts, entry.id) < query.before


class MemorySecurityStore:
    def __init__(self) -> None:
        self.credentials: dict[str, VehicleCredential] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, ApiToken] = {}
        self.audit: list[AuditEntry] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def add_credential(self, credential: VehicleCredential) -> None:
        if credential.vehicle_id in self.credentials:
            raise AlreadyExists(f"vehicle '{credential.vehicle_id}' is already provisioned")
        self.credentials[credential.vehicle_id] = credential

    async def put_credential(self, credential: VehicleCredential) -> None:
        self.credentials[credential.vehicle_id] = credential

    async def get_credential(self, vehicle_id: str) -> VehicleCredential | None:
        return self.credentials.get(vehicle_id)

    async def list_credentials(self, fleet: str | None = None) -> list[VehicleCredential]:
        return sorted(
            (c for c in self.credentials.values() if fleet is None or c.fleet == fleet), key=lambda c: c.vehicle_id
        )

    async def add_user(self, user: User) -> None:
        if user.name in self.users:
            raise AlreadyExists(f"user '{user.name}' already exists")
        self.users[user.name] = user

    async def put_user(self, user: User) -> None:
        self.users[user.name] = user

    async def get_user(self, name: str) -> User | None:
        return self.users.get(name)

    async def list_users(self) -> list[User]:
        return sorted(self.users.values(), key=lambda u: u.name)

    async def delete_user(self, name: str) -> bool:
        return self.users.pop(name, None) is not None

    async def add_token(self, token: ApiToken) -> None:
        if token.id in self.tokens or any(t.token_hash == token.token_hash for t in self.tokens.values()):
            raise AlreadyExists(f"token '{token.id}' already exists")
        self.tokens[token.id] = token

    async def put_token(self, token: ApiToken) -> None:
        self.tokens[token.id] = token

    async def token_by_hash(self, token_hash: str) -> ApiToken | None:
        return next((t for t in self.tokens.values() if t.token_hash == token_hash), None)

    async def get_token(self, token_id: str) -> ApiToken | None:
        return self.tokens.get(token_id)

    async def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        found = [t for t in self.tokens.values() if user is None or t.user == user]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    async def append_audit(self, entry: AuditEntry) -> None:
        self.audit.append(entry)

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        found = [e for e in self.audit if audit_matches(e, query)]
        found.sort(key=lambda e: (e.ts, e.id), reverse=True)
        return found[: query.limit]

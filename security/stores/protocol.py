"""The security store seam: credentials, users, tokens and the audit log."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from kernel import FleethubError
from security.model import ApiToken, AuditEntry, AuditQuery, User, VehicleCredential


class AlreadyExists(FleethubError):
    """A vehicle, user or token with this name or id is already stored."""


class SecurityStore(Protocol):
    """Credentials, users, tokens and the audit log; every implementation passes the contract suite."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def add_credential(self, credential: VehicleCredential) -> None:
        """Insert; raises AlreadyExists for a stored vehicle id (revoked or not)."""
        ...

    async def put_credential(self, credential: VehicleCredential) -> None:
        """Insert or replace (rotation, revocation)."""
        ...

    async def get_credential(self, vehicle_id: str) -> VehicleCredential | None: ...

    async def list_credentials(self, fleet: str | None = None) -> list[VehicleCredential]: ...

    async def add_user(self, user: User) -> None: ...

    async def put_user(self, user: User) -> None: ...

    async def get_user(self, name: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def delete_user(self, name: str) -> bool: ...

    async def add_token(self, token: ApiToken) -> None: ...

    async def put_token(self, token: ApiToken) -> None: ...

    async def token_by_hash(self, token_hash: str) -> ApiToken | None: ...

    async def get_token(self, token_id: str) -> ApiToken | None: ...

    async def list_tokens(self, user: str | None = None) -> list[ApiToken]: ...

    async def append_audit(self, entry: AuditEntry) -> None: ...

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Newest first."""
        ...

"""The security store on PostgreSQL: the hub's database, through its one connection pool.

The tables come from `migrations/postgres/0030_security.sql`, applied when the database opens.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.types.json import Jsonb

from kernel import PostgresDatabase
from security.model import ApiToken, AuditEntry, AuditQuery, Role, User, VehicleCredential
from security.stores.protocol import AlreadyExists
from security.stores.sql import AUDIT, CRED, TOK, USER, audit_where


def _cred(row: Any) -> VehicleCredential:
    return VehicleCredential(row[0], row[1], row[2], row[3], row[4], row[5])


def _user(row: Any) -> User:
    return User(row[0], Role(row[1]), tuple(row[2]), row[5], row[3], bool(row[4]))


def _token(row: Any) -> ApiToken:
    return ApiToken(row[0], row[1], row[2], row[4], row[5], row[3], row[6])


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], dict(row[8]))


class PostgresSecurityStore:
    """Credentials, users, tokens and the audit log in the hub's PostgreSQL database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _exec(self, sql: str, args: tuple[Any, ...] | list[Any] = (), what: str = "") -> int:
        async with self.db.connection() as conn:
            try:
                cur = await conn.execute(sql.encode(), args)
            except psycopg.errors.UniqueViolation:
                raise AlreadyExists(f"{what} already exists") from None
            return cur.rowcount

    async def _all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        async with self.db.connection() as conn:
            cur = await conn.execute(sql.encode(), args)
            return list(await cur.fetchall())

    async def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        rows = await self._all(sql, args)
        return rows[0] if rows else None

    # -- vehicle credentials ---------------------------------------------------------

    @staticmethod
    def _cred_args(c: VehicleCredential) -> tuple[Any, ...]:
        return (c.vehicle_id, c.fleet, c.secret_hash, c.created_at, c.rotated_at, c.revoked_at)

    async def add_credential(self, credential: VehicleCredential) -> None:
        sql = f"INSERT INTO vehicle_credentials ({CRED}) VALUES (%s, %s, %s, %s, %s, %s)"
        await self._exec(sql, self._cred_args(credential), f"vehicle '{credential.vehicle_id}'")

    async def put_credential(self, credential: VehicleCredential) -> None:
        sql = (
            f"INSERT INTO vehicle_credentials ({CRED}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (vehicle_id) "
            "DO UPDATE SET fleet = excluded.fleet, secret_hash = excluded.secret_hash, "
            "created_at = excluded.created_at, rotated_at = excluded.rotated_at, revoked_at = excluded.revoked_at"
        )
        await self._exec(sql, self._cred_args(credential))

    async def get_credential(self, vehicle_id: str) -> VehicleCredential | None:
        row = await self._one(f"SELECT {CRED} FROM vehicle_credentials WHERE vehicle_id = %s", (vehicle_id,))
        return None if row is None else _cred(row)

    async def list_credentials(self, fleet: str | None = None) -> list[VehicleCredential]:
        if fleet is None:
            rows = await self._all(f"SELECT {CRED} FROM vehicle_credentials ORDER BY vehicle_id")
        else:
            sql = f"SELECT {CRED} FROM vehicle_credentials WHERE fleet = %s ORDER BY vehicle_id"
            rows = await self._all(sql, (fleet,))
        return [_cred(r) for r in rows]

    # -- users -----------------------------------------------------------------------

    @staticmethod
    def _user_args(u: User) -> tuple[Any, ...]:
        return (u.name, u.role.value, Jsonb(list(u.fleets)), u.password_hash, u.disabled, u.created_at)

    async def add_user(self, user: User) -> None:
        sql = f"INSERT INTO users ({USER}) VALUES (%s, %s, %s, %s, %s, %s)"
        await self._exec(sql, self._user_args(user), f"user '{user.name}'")

    async def put_user(self, user: User) -> None:
        sql = (
            f"INSERT INTO users ({USER}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            "role = excluded.role, fleets = excluded.fleets, password_hash = excluded.password_hash, "
            "disabled = excluded.disabled, created_at = excluded.created_at"
        )
        await self._exec(sql, self._user_args(user))

    async def get_user(self, name: str) -> User | None:
        row = await self._one(f"SELECT {USER} FROM users WHERE name = %s", (name,))
        return None if row is None else _user(row)

    async def list_users(self) -> list[User]:
        return [_user(r) for r in await self._all(f"SELECT {USER} FROM users ORDER BY name")]

    async def delete_user(self, name: str) -> bool:
        return bool(await self._exec("DELETE FROM users WHERE name = %s", (name,)))

    # -- tokens ----------------------------------------------------------------------

    @staticmethod
    def _token_args(t: ApiToken) -> tuple[Any, ...]:
        return (t.id, t.user, t.token_hash, t.label, t.created_at, t.expires_at, t.revoked_at)

    async def add_token(self, token: ApiToken) -> None:
        sql = f"INSERT INTO api_tokens ({TOK}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        await self._exec(sql, self._token_args(token), f"token '{token.id}'")

    async def put_token(self, token: ApiToken) -> None:
        sql = (
            f"INSERT INTO api_tokens ({TOK}) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "label = excluded.label, expires_at = excluded.expires_at, revoked_at = excluded.revoked_at"
        )
        await self._exec(sql, self._token_args(token))

    async def token_by_hash(self, token_hash: str) -> ApiToken | None:
        row = await self._one(f"SELECT {TOK} FROM api_tokens WHERE token_hash = %s", (token_hash,))
        return None if row is None else _token(row)

    async def get_token(self, token_id: str) -> ApiToken | None:
        row = await self._one(f"SELECT {TOK} FROM api_tokens WHERE id = %s", (token_id,))
        return None if row is None else _token(row)

    async def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        if user is None:
            rows = await self._all(f"SELECT {TOK} FROM api_tokens ORDER BY created_at, id")
        else:
            sql = f"SELECT {TOK} FROM api_tokens WHERE user_name = %s ORDER BY created_at, id"
            rows = await self._all(sql, (user,))
        return [_token(r) for r in rows]

    # -- audit -----------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> None:
        e = entry
        args = (e.id, e.ts, e.actor, e.action, e.remote, e.vehicle_id, e.fleet, e.target, Jsonb(e.detail))
        await self._exec(f"INSERT INTO audit_log ({AUDIT}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", args)

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        where, args = audit_where(query, "%s")
        sql = f"SELECT {AUDIT} FROM audit_log{where} ORDER BY ts DESC, id DESC LIMIT %s"
        return [_audit(r) for r in await self._all(sql, [*args, query.limit])]

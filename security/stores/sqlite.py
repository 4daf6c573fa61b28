"""The security store on SQLite: the hub's database file, through its one writer and its readers.

The tables come from `migrations/sqlite/0030_security.sql`, applied when the database opens.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType
from typing import Any, Self

import msgspec

from kernel import SqliteDatabase, StoreRejected, rollback
from security.audit import audit_insert
from security.model import ApiToken, AuditEntry, AuditQuery, Role, User, VehicleCredential
from security.stores.protocol import AlreadyExists
from security.stores.sql import AUDIT, CRED, TOK, USER, audit_where

_encode = msgspec.json.encode
_decode_fleets = msgspec.json.Decoder(tuple[str, ...]).decode
_decode_detail = msgspec.json.Decoder(dict[str, object]).decode


def _cred(row: Any) -> VehicleCredential:
    return VehicleCredential(row[0], row[1], row[2], row[3], row[4], row[5])


def _user(row: Any) -> User:
    return User(row[0], Role(row[1]), _decode_fleets(row[2]), row[5], row[3], bool(row[4]))


def _token(row: Any) -> ApiToken:
    return ApiToken(row[0], row[1], row[2], row[4], row[5], row[3], row[6])


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], _decode_detail(row[8]))


class SqliteSecurityStore:
    """Credentials, users, tokens and the audit log in the hub's SQLite database (see `kernel.SqliteDatabase`)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _exec(self, sql: str, args: tuple[Any, ...], what: str = "", audit: AuditEntry | None = None) -> int:
        """One change and the audit entry recording it, in one transaction on the writer; the rows it changed."""
        statements = [(sql, args)]
        if audit is not None:
            statements.append(audit_insert(audit, "?"))
        try:
            return await self.db.write(_transaction, statements)
        except StoreRejected as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise AlreadyExists(f"{what or 'the row'} already exists") from None
            raise

    async def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        rows = await self.db.fetch(sql, args)
        return rows[0] if rows else None

    async def _all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        return await self.db.fetch(sql, args)

    # -- vehicle credentials ---------------------------------------------------------

    def _cred_args(self, c: VehicleCredential) -> tuple[Any, ...]:
        return (c.vehicle_id, c.fleet, c.secret_hash, c.created_at, c.rotated_at, c.revoked_at)

    async def add_credential(self, credential: VehicleCredential, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO vehicle_credentials ({CRED}) VALUES (?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._cred_args(credential), f"vehicle '{credential.vehicle_id}'", audit)

    async def put_credential(self, credential: VehicleCredential, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT OR REPLACE INTO vehicle_credentials ({CRED}) VALUES (?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._cred_args(credential), audit=audit)

    async def get_credential(self, vehicle_id: str) -> VehicleCredential | None:
        row = await self._one(f"SELECT {CRED} FROM vehicle_credentials WHERE vehicle_id = ?", (vehicle_id,))
        return None if row is None else _cred(row)

    async def list_credentials(self, fleet: str | None = None) -> list[VehicleCredential]:
        if fleet is None:
            rows = await self._all(f"SELECT {CRED} FROM vehicle_credentials ORDER BY vehicle_id")
        else:
            sql = f"SELECT {CRED} FROM vehicle_credentials WHERE fleet = ? ORDER BY vehicle_id"
            rows = await self._all(sql, (fleet,))
        return [_cred(r) for r in rows]

    # -- users -----------------------------------------------------------------------

    def _user_args(self, u: User) -> tuple[Any, ...]:
        return (u.name, u.role.value, _encode(u.fleets).decode(), u.password_hash, int(u.disabled), u.created_at)

    async def add_user(self, user: User, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO users ({USER}) VALUES (?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._user_args(user), f"user '{user.name}'", audit)

    async def put_user(self, user: User, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT OR REPLACE INTO users ({USER}) VALUES (?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._user_args(user), audit=audit)

    async def get_user(self, name: str) -> User | None:
        row = await self._one(f"SELECT {USER} FROM users WHERE name = ?", (name,))
        return None if row is None else _user(row)

    async def list_users(self) -> list[User]:
        return [_user(r) for r in await self._all(f"SELECT {USER} FROM users ORDER BY name")]

    async def delete_user(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        return bool(await self._exec("DELETE FROM users WHERE name = ?", (name,), audit=audit))

    # -- tokens ----------------------------------------------------------------------

    def _token_args(self, t: ApiToken) -> tuple[Any, ...]:
        return (t.id, t.user, t.token_hash, t.label, t.created_at, t.expires_at, t.revoked_at)

    async def add_token(self, token: ApiToken, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO api_tokens ({TOK}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._token_args(token), f"token '{token.id}'", audit)

    async def put_token(self, token: ApiToken, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT OR REPLACE INTO api_tokens ({TOK}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._token_args(token), audit=audit)

    async def token_by_hash(self, token_hash: str) -> ApiToken | None:
        row = await self._one(f"SELECT {TOK} FROM api_tokens WHERE token_hash = ?", (token_hash,))
        return None if row is None else _token(row)

    async def get_token(self, token_id: str) -> ApiToken | None:
        row = await self._one(f"SELECT {TOK} FROM api_tokens WHERE id = ?", (token_id,))
        return None if row is None else _token(row)

    async def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        if user is None:
            rows = await self._all(f"SELECT {TOK} FROM api_tokens ORDER BY created_at, id")
        else:
            rows = await self._all(f"SELECT {TOK} FROM api_tokens WHERE user_name = ? ORDER BY created_at, id", (user,))
        return [_token(r) for r in rows]

    # -- audit -----------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> None:
        await self._exec(*audit_insert(entry, "?"), what=f"audit entry '{entry.id}'")

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        where, args = audit_where(query, "?")
        sql = f"SELECT {AUDIT} FROM audit_log{where} ORDER BY ts DESC, id DESC LIMIT ?"
        return [_audit(r) for r in await self._all(sql, [*args, query.limit])]


def _transaction(conn: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> int:
    """Every statement or none; the rows the first one changed."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        changed = conn.execute(*statements[0]).rowcount
        for sql, args in statements[1:]:
            conn.execute(sql, args)
    except BaseException:
        rollback(conn)
        raise
    conn.execute("COMMIT")
    return changed

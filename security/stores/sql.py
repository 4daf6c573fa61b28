"""The security store on SQLite or PostgreSQL: the same tables (migration 0030), the same SQL.

Statements go through `kernel.Sql`; what the two backends must say differently (JSON
columns are jsonb in PostgreSQL, `disabled` is a boolean there) comes from its dialect.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kernel import Database, Duplicate, SqlStore, Statement
from security.audit import audit_statement
from security.model import ApiToken, AuditEntry, AuditQuery, Role, User, VehicleCredential
from security.stores.protocol import AlreadyExists

CRED = "vehicle_id, fleet, secret_hash, created_at, rotated_at, revoked_at"
USER = "name, role, fleets, password_hash, disabled, created_at"
TOK = "id, user_name, token_hash, label, created_at, expires_at, revoked_at"

_encode = msgspec.json.encode
_decode_fleets = msgspec.json.Decoder(tuple[str, ...]).decode
_decode_detail = msgspec.json.Decoder(dict[str, object]).decode

_UPSERT_CREDENTIAL = (
    f"INSERT INTO vehicle_credentials ({CRED}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (vehicle_id) "
    "DO UPDATE SET fleet = excluded.fleet, secret_hash = excluded.secret_hash, "
    "created_at = excluded.created_at, rotated_at = excluded.rotated_at, revoked_at = excluded.revoked_at"
)
_UPSERT_TOKEN = (
    f"INSERT INTO api_tokens ({TOK}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "label = excluded.label, expires_at = excluded.expires_at, revoked_at = excluded.revoked_at"
)


def _cred(row: Any) -> VehicleCredential:
    return VehicleCredential(row[0], row[1], row[2], row[3], row[4], row[5])


def _user(row: Any) -> User:
    return User(row[0], Role(row[1]), _decode_fleets(row[2]), row[5], row[3], bool(row[4]))


def _token(row: Any) -> ApiToken:
    return ApiToken(row[0], row[1], row[2], row[4], row[5], row[3], row[6])


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], _decode_detail(row[8]))


def _audit_where(query: AuditQuery) -> tuple[str, list[Any]]:
    """WHERE clause and arguments of an audit query."""
    where: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("ts", ">=", query.start),
        ("ts", "<", query.end),
        ("actor", "=", query.actor),
        ("vehicle_id", "=", query.vehicle_id),
        ("action", "=", query.action),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    if query.fleets is not None:
        marks = ", ".join(["?"] * len(query.fleets)) or "NULL"
        where.append(f"(fleet IS NULL OR fleet IN ({marks}))")
        args.extend(query.fleets)
    if query.before is not None:
        where.append("(ts < ? OR (ts = ? AND id < ?))")
        args.extend((query.before[0], query.before[0], query.before[1]))
    return (" WHERE " + " AND ".join(where)) if where else "", args


class SqlSecurityStore(SqlStore):
    """Credentials, users, tokens and the audit log in the hub's database, SQLite or PostgreSQL."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._dialect = d = self._sql.dialect
        # JSON columns are read as text, so one msgspec decoder reads both backends.
        self._users = f"SELECT name, role, fleets{d.as_text}, password_hash, disabled, created_at FROM users"
        self._audit = (
            f"SELECT id, ts, actor, action, remote, vehicle_id, fleet, target, detail{d.as_text} FROM audit_log"
        )
        self._user_values = f"(?, ?, {d.json_mark}, ?, ?, ?)"

    async def _exec(self, sql: str, args: tuple[Any, ...], what: str = "", audit: AuditEntry | None = None) -> int:
        """One change and the audit entry recording it, in one transaction; the rows the change touched."""
        statements = [Statement(sql, args)]
        if audit is not None:
            statements.append(audit_statement(audit, self._dialect))
        try:
            changed = await self._sql.transaction(statements)
        except Duplicate:
            raise AlreadyExists(f"{what or 'the row'} already exists") from None
        return changed[0]

    async def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        rows = await self._sql.fetch(sql, args)
        return rows[0] if rows else None

    # -- vehicle credentials ---------------------------------------------------------

    @staticmethod
    def _cred_args(c: VehicleCredential) -> tuple[Any, ...]:
        return (c.vehicle_id, c.fleet, c.secret_hash, c.created_at, c.rotated_at, c.revoked_at)

    async def add_credential(self, credential: VehicleCredential, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO vehicle_credentials ({CRED}) VALUES (?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._cred_args(credential), f"vehicle '{credential.vehicle_id}'", audit)

    async def put_credential(self, credential: VehicleCredential, *, audit: AuditEntry | None = None) -> None:
        await self._exec(_UPSERT_CREDENTIAL, self._cred_args(credential), audit=audit)

    async def get_credential(self, vehicle_id: str) -> VehicleCredential | None:
        row = await self._one(f"SELECT {CRED} FROM vehicle_credentials WHERE vehicle_id = ?", (vehicle_id,))
        return None if row is None else _cred(row)

    async def list_credentials(self, fleet: str | None = None) -> list[VehicleCredential]:
        if fleet is None:
            rows = await self._sql.fetch(f"SELECT {CRED} FROM vehicle_credentials ORDER BY vehicle_id")
        else:
            sql = f"SELECT {CRED} FROM vehicle_credentials WHERE fleet = ? ORDER BY vehicle_id"
            rows = await self._sql.fetch(sql, (fleet,))
        return [_cred(r) for r in rows]

    # -- users -----------------------------------------------------------------------

    def _user_args(self, u: User) -> tuple[Any, ...]:
        fleets = _encode(u.fleets).decode()
        return (u.name, u.role.value, fleets, u.password_hash, self._dialect.flag(u.disabled), u.created_at)

    async def add_user(self, user: User, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO users ({USER}) VALUES {self._user_values}"
        await self._exec(sql, self._user_args(user), f"user '{user.name}'", audit)

    async def put_user(self, user: User, *, audit: AuditEntry | None = None) -> None:
        sql = (
            f"INSERT INTO users ({USER}) VALUES {self._user_values} ON CONFLICT (name) DO UPDATE SET "
            "role = excluded.role, fleets = excluded.fleets, password_hash = excluded.password_hash, "
            "disabled = excluded.disabled, created_at = excluded.created_at"
        )
        await self._exec(sql, self._user_args(user), audit=audit)

    async def get_user(self, name: str) -> User | None:
        row = await self._one(f"{self._users} WHERE name = ?", (name,))
        return None if row is None else _user(row)

    async def list_users(self) -> list[User]:
        return [_user(r) for r in await self._sql.fetch(f"{self._users} ORDER BY name")]

    async def delete_user(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        return bool(await self._exec("DELETE FROM users WHERE name = ?", (name,), audit=audit))

    # -- tokens ----------------------------------------------------------------------

    @staticmethod
    def _token_args(t: ApiToken) -> tuple[Any, ...]:
        return (t.id, t.user, t.token_hash, t.label, t.created_at, t.expires_at, t.revoked_at)

    async def add_token(self, token: ApiToken, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO api_tokens ({TOK}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        await self._exec(sql, self._token_args(token), f"token '{token.id}'", audit)

    async def put_token(self, token: ApiToken, *, audit: AuditEntry | None = None) -> None:
        await self._exec(_UPSERT_TOKEN, self._token_args(token), audit=audit)

    async def token_by_hash(self, token_hash: str) -> ApiToken | None:
        row = await self._one(f"SELECT {TOK} FROM api_tokens WHERE token_hash = ?", (token_hash,))
        return None if row is None else _token(row)

    async def get_token(self, token_id: str) -> ApiToken | None:
        row = await self._one(f"SELECT {TOK} FROM api_tokens WHERE id = ?", (token_id,))
        return None if row is None else _token(row)

    async def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        if user is None:
            rows = await self._sql.fetch(f"SELECT {TOK} FROM api_tokens ORDER BY created_at, id")
        else:
            sql = f"SELECT {TOK} FROM api_tokens WHERE user_name = ? ORDER BY created_at, id"
            rows = await self._sql.fetch(sql, (user,))
        return [_token(r) for r in rows]

    # -- audit -----------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> None:
        statement = audit_statement(entry, self._dialect)
        await self._exec(statement.sql, tuple(statement.args), f"audit entry '{entry.id}'")

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        where, args = _audit_where(query)
        sql = f"{self._audit}{where} ORDER BY ts DESC, id DESC LIMIT ?"
        return [_audit(r) for r in await self._sql.fetch(sql, [*args, query.limit])]

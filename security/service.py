"""The security service: provisioning, logins, users, tokens and the audit log, over a `SecurityStore`.

Everything that changes credentials or users is audited here, so the CLI and the API
record the same entries. Password and secret checks run argon2 in a worker thread
(`asyncio.to_thread`) behind a short-lived cache of successful checks.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from kernel import InvalidPayload, NotFound, isoformat
from security import secrets as sec
from security.audit import Actor, audit_entry
from security.model import (
    ALL_FLEETS,
    DEFAULT_FLEET,
    ApiToken,
    AuditEntry,
    AuditQuery,
    Role,
    User,
    VehicleCredential,
)
from security.roles import Principal
from security.stores.protocol import AlreadyExists, SecurityStore

log = structlog.get_logger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Called after a vehicle is provisioned (the hub creates its twin in the fleet).
OnProvision = Callable[[str, str, Mapping[str, str]], Awaitable[None]]
# Called when a vehicle's credential or a user's token stops being valid (the broker disconnects it).
OnRevoke = Callable[[str], Awaitable[object]]


def check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidPayload(f"bad_{what}", f"a {what} is 1-64 of A-Z a-z 0-9 _ . -, got {value!r}")
    return value


CLI = Actor("cli", "local")


@dataclass(frozen=True, slots=True)
class Provisioned:
    vehicle_id: str
    fleet: str
    # Shown once: only its argon2 hash is stored.
    secret: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: ApiToken
    # Shown once: only its SHA-256 digest is stored.
    secret: str


class SecurityService:
    def __init__(
        self,
        store: SecurityStore,
        *,
        verify_cache_s: float = 60.0,
        token_ttl_s: float = 90 * 86400,
        max_token_ttl_s: float = 365 * 86400,
        bootstrap_token: str = "",
        max_parallel_hashes: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.cache = sec.VerifyCache(verify_cache_s)
        # argon2 runs in worker threads, at most this many at once: memory and CPU stay bounded
        # during a reconnect storm, and the event loop never runs a hash itself.
        self._argon2_slots = asyncio.Semaphore(max_parallel_hashes)
        self.token_ttl_s = token_ttl_s
        self.max_token_ttl_s = max_token_ttl_s
        # An argon2 hash of a random secret nobody knows: logins of unknown users verify against it,
        # so a refusal takes as long whether or not the name exists. Made on first use.
        self._dummy_hash: str | None = None
        self._bootstrap = bootstrap_token
        self.clock = clock
        self.on_provision: list[OnProvision] = []
        self.on_vehicle_revoked: list[OnRevoke] = []
        self.on_token_revoked: list[OnRevoke] = []
        # Called with the user name after a user is removed (the broker closes its connections and sessions).
        self.on_user_removed: list[OnRevoke] = []

    # -- audit -------------------------------------------------------------------------

    async def audit(
        self,
        actor: Actor,
        action: str,
        *,
        vehicle_id: str | None = None,
        fleet: str | None = None,
        target: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> None:
        """Record an action that changes nothing in this process's stores (a console login, say).

        A change records its entry in its own transaction instead (see `security.audit`).
        """
        entry = audit_entry(
            actor, action, self.clock(), vehicle_id=vehicle_id, fleet=fleet, target=target, detail=detail
        )
        await self.store.append_audit(entry)

    def _entry(self, actor: Actor, action: str, **about: Any) -> AuditEntry:
        return audit_entry(actor, action, self.clock(), **about)

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        return await self.store.query_audit(query)

    # -- vehicles ----------------------------------------------------------------------

    async def provision(
        self, vehicle_id: str, fleet: str = DEFAULT_FLEET, *, actor: Actor, tags: Mapping[str, str] | None = None
    ) -> Provisioned:
        check_name(vehicle_id, "vehicle id")
        check_name(fleet, "fleet")
        if await self.store.get_user(vehicle_id) is not None:
            raise AlreadyExists(f"'{vehicle_id}' is a user name; vehicle ids and user names must differ")
        secret = sec.new_secret()
        digest = await asyncio.to_thread(sec.hash_password, secret)
        entry = self._entry(actor, "vehicle.provision", vehicle_id=vehicle_id, fleet=fleet)
        await self.store.add_credential(VehicleCredential(vehicle_id, fleet, digest, self.clock()), audit=entry)
        for hook in self.on_provision:
            await hook(vehicle_id, fleet, dict(tags or {}))
        log.info("vehicle provisioned", vehicle_id=vehicle_id, fleet=fleet, actor=actor.name)
        return Provisioned(vehicle_id, fleet, secret)

    async def provision_csv(self, text: str, fleet: str, *, actor: Actor) -> list[Provisioned]:
        """Provision every row of a CSV with a `vehicle_id` column; other columns become tags.

        Rows are checked first, so a bad file provisions nothing; a vehicle already
        provisioned stops the import there (those before it stay provisioned).
        """
        # Strict: a stray quote is refused with its line rather than read as part of a vehicle id.
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        try:
            if reader.fieldnames is None or "vehicle_id" not in reader.fieldnames:
                raise InvalidPayload("bad_csv", "the CSV needs a header row with a vehicle_id column")
            rows = list(reader)
        except csv.Error as exc:
            raise InvalidPayload("bad_csv", f"line {reader.line_num}: not CSV: {exc}") from None
        seen: set[str] = set()
        for number, row in enumerate(rows, start=2):
            vid = (row.get("vehicle_id") or "").strip()
            if not _NAME.fullmatch(vid):
                raise InvalidPayload("bad_csv", f"line {number}: vehicle_id {vid!r} is not a vehicle id")
            if vid in seen:
                raise InvalidPayload("bad_csv", f"line {number}: vehicle {vid!r} appears twice")
            seen.add(vid)
        done: list[Provisioned] = []
        for row in rows:
            vid = row["vehicle_id"].strip()
            tags = {k: (v or "").strip() for k, v in row.items() if k and k != "vehicle_id" and v}
            done.append(await self.provision(vid, fleet, actor=actor, tags=tags))
        return done

    async def credential(self, vehicle_id: str) -> VehicleCredential:
        found = await self.store.get_credential(vehicle_id)
        if found is None:
            raise NotFound(f"vehicle '{vehicle_id}' is not provisioned")
        return found

    async def rotate(self, vehicle_id: str, *, actor: Actor) -> Provisioned:
        """A new secret; the old one stops working at once (connections already in keep their session)."""
        current = await self.credential(vehicle_id)
        secret = sec.new_secret()
        digest = await asyncio.to_thread(sec.hash_password, secret)
        now = self.clock()
        entry = self._entry(actor, "vehicle.credentials.rotate", vehicle_id=vehicle_id, fleet=current.fleet)
        await self.store.put_credential(
            VehicleCredential(vehicle_id, current.fleet, digest, current.created_at, now, None), audit=entry
        )
        return Provisioned(vehicle_id, current.fleet, secret)

    async def revoke(self, vehicle_id: str, *, actor: Actor) -> VehicleCredential:
        """Revoke the vehicle's secret and disconnect it now; it cannot log in until rotated."""
        current = await self.credential(vehicle_id)
        revoked = VehicleCredential(
            vehicle_id, current.fleet, current.secret_hash, current.created_at, current.rotated_at, self.clock()
        )
        entry = self._entry(actor, "vehicle.credentials.revoke", vehicle_id=vehicle_id, fleet=current.fleet)
        await self.store.put_credential(revoked, audit=entry)
        for hook in self.on_vehicle_revoked:
            await hook(vehicle_id)
        log.warning("vehicle credentials revoked", vehicle_id=vehicle_id, actor=actor.name)
        return revoked

    async def credentials(self, fleet: str | None = None) -> list[VehicleCredential]:
        """Provisioned vehicles (of one fleet, or all), revoked ones included, by vehicle id."""
        return await self.store.list_credentials(fleet)

    async def fleet_of(self, vehicle_id: str) -> str | None:
        found = await self.store.get_credential(vehicle_id)
        return None if found is None else found.fleet

    # -- logins ------------------------------------------------------------------------

    async def _verify_nobody(self, secret: str) -> None:
        """Spend what a real check costs, for a name that has no hash to check against."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(sec.hash_password, sec.new_secret())
        async with self._argon2_slots:
            await asyncio.to_thread(sec.verify_password, self._dummy_hash, secret)

    async def _verify(self, name: str, stored_hash: str, secret: str) -> bool:
        if self.cache.hit(name, stored_hash, secret):
            return True
        async with self._argon2_slots:
            ok = await asyncio.to_thread(sec.verify_password, stored_hash, secret)
        if ok:
            self.cache.remember(name, stored_hash, secret)
        return ok

    async def login_vehicle(self, vehicle_id: str, secret: str) -> Principal | None:
        credential = await self.store.get_credential(vehicle_id)
        if credential is None or not credential.active:
            # As slow as a real check, so a refusal does not tell a revoked vehicle from a wrong secret.
            await self._verify_nobody(secret)
            return None
        if not await self._verify(vehicle_id, credential.secret_hash, secret):
            return None
        return Principal.vehicle(vehicle_id, credential.fleet)

    async def principal_named(self, name: str) -> Principal | None:
        """Who an already logged-in MQTT username acts as now: an active vehicle, else an enabled user.

        For brokers that ask about each publish or subscription separately (see
        docs/external-brokers.md); a revoked vehicle or a removed user is nobody.
        """
        credential = await self.store.get_credential(name)
        if credential is not None:
            return Principal.vehicle(name, credential.fleet) if credential.active else None
        user = await self.store.get_user(name)
        if user is None or user.disabled:
            return None
        return Principal.user(user.name, user.role, user.fleets)

    async def vehicle_by_certificate(self, vehicle_id: str) -> Principal | None:
        """A vehicle whose client certificate the TLS layer verified: known and not revoked."""
        credential = await self.store.get_credential(vehicle_id)
        if credential is None or not credential.active:
            return None
        return Principal.vehicle(vehicle_id, credential.fleet)

    async def login_user(self, name: str, secret: str) -> Principal | None:
        """A user by API token or password (MQTT subscribers: dashboards, maintenance teams)."""
        if secret.startswith(sec.TOKEN_PREFIX):
            principal = await self.authenticate_token(secret)
            return principal if principal is not None and principal.name == name else None
        user = await self.store.get_user(name)
        if user is None or user.disabled or user.password_hash is None:
            await self._verify_nobody(secret)
            return None
        if not await self._verify(name, user.password_hash, secret):
            return None
        return Principal.user(user.name, user.role, user.fleets)

    async def login(self, username: str, secret: str) -> Principal | None:
        """An MQTT login: a provisioned vehicle, else a user."""
        if await self.store.get_credential(username) is not None:
            return await self.login_vehicle(username, secret)
        return await self.login_user(username, secret)

    async def authenticate_token(self, token: str) -> Principal | None:
        if self._bootstrap and hmac.compare_digest(token.encode(), self._bootstrap.encode()):
            return Principal.user("bootstrap", Role.ADMIN, (ALL_FLEETS,))
        if not token.startswith(sec.TOKEN_PREFIX):
            return None
        found = await self.store.token_by_hash(sec.token_digest(token))
        if found is None or not found.valid_at(self.clock()):
            return None
        user = await self.store.get_user(found.user)
        if user is None or user.disabled:
            return None
        return Principal.user(user.name, user.role, user.fleets, token_id=found.id)

    # -- users and tokens --------------------------------------------------------------

    async def add_user(
        self,
        name: str,
        role: Role,
        fleets: tuple[str, ...],
        *,
        actor: Actor,
        password: str | None = None,
    ) -> User:
        check_name(name, "user name")
        if not fleets:
            raise InvalidPayload("no_fleets", f"user '{name}' needs at least one fleet (or '*' for every fleet)")
        for fleet in fleets:
            if fleet != ALL_FLEETS:
                check_name(fleet, "fleet")
        if await self.store.get_credential(name) is not None:
            raise AlreadyExists(f"'{name}' is a vehicle id; vehicle ids and user names must differ")
        digest = None if password is None else await asyncio.to_thread(sec.hash_password, password)
        user = User(name, role, tuple(sorted(set(fleets))), self.clock(), digest)
        entry = self._entry(actor, "user.add", target=name, detail={"role": role.value, "fleets": list(user.fleets)})
        await self.store.add_user(user, audit=entry)
        return user

    async def user(self, name: str) -> User:
        found = await self.find_user(name)
        if found is None:
            raise NotFound(f"user '{name}' not found")
        return found

    async def find_user(self, name: str) -> User | None:
        return await self.store.get_user(name)

    async def users(self) -> list[User]:
        """Every user, by name."""
        return await self.store.list_users()

    async def remove_user(self, name: str, *, actor: Actor) -> None:
        await self.user(name)
        for token in await self.store.list_tokens(name):
            if token.revoked_at is None:
                await self.revoke_token(token.id, actor=actor)
        await self.store.delete_user(name, audit=self._entry(actor, "user.remove", target=name))
        for hook in self.on_user_removed:
            await hook(name)

    async def issue_token(self, user: str, *, actor: Actor, ttl_s: float | None = None, label: str = "") -> IssuedToken:
        await self.user(user)
        ttl = self.token_ttl_s if ttl_s is None else ttl_s
        if not ttl > 0:
            raise InvalidPayload("bad_ttl", f"a token lifetime must be positive (seconds), got {ttl}")
        if ttl > self.max_token_ttl_s:
            raise InvalidPayload(
                "ttl_too_long",
                f"a token lives at most {self.max_token_ttl_s:g} s (auth.max_token_ttl_days), asked for {ttl:g} s",
            )
        secret = sec.new_token()
        now = self.clock()
        token = ApiToken(sec.new_id(), user, sec.token_digest(secret), now, now + ttl, label)
        detail = {"token_id": token.id, "expires_at": isoformat(token.expires_at)}
        await self.store.add_token(token, audit=self._entry(actor, "token.create", target=user, detail=detail))
        return IssuedToken(token, secret)

    async def tokens(self, user: str) -> list[ApiToken]:
        """A user's tokens, revoked and expired ones included, oldest first."""
        return await self.store.list_tokens(user)

    async def token(self, token_id: str) -> ApiToken | None:
        return await self.store.get_token(token_id)

    async def revoke_token(self, token_id: str, *, actor: Actor) -> ApiToken:
        found = await self.store.get_token(token_id)
        if found is None:
            raise NotFound(f"token '{token_id}' not found")
        if found.revoked_at is not None:
            return found
        revoked = ApiToken(
            found.id, found.user, found.token_hash, found.created_at, found.expires_at, found.label, self.clock()
        )
        entry = self._entry(actor, "token.revoke", target=found.user, detail={"token_id": token_id})
        await self.store.put_token(revoked, audit=entry)
        for hook in self.on_token_revoked:
            await hook(token_id)
        return revoked

    async def has_users(self) -> bool:
        return bool(await self.store.list_users())

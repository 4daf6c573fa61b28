"""Logins and topic decisions for an external MQTT broker, by the embedded broker's rules.

EMQX and RabbitMQ ask over HTTP (`api.broker_auth` speaks their formats); this module
decides. A login goes through the same checks as a CONNECT to the embedded broker:
connection-rate buckets per address and per address+name, the failed-login back-off
(`security.LoginBackoff`, keyed by the address and by the address with the name, with
the `[abuse]` settings), `SecurityService.login` (vehicle secret, user password or API
token; an unknown name costs the same argon2 check as a known one, so the answer time
does not say whether a name exists), and the client-id rule: a vehicle connects with
its own id as client id, and a user may not use a vehicle's id. Publishes and
subscriptions are decided by `broker.acl`, with a vehicle's fleet looked up where the
rule depends on it.

The limiter state is this process's: an external broker should call one hub (or
accept that N hubs behind a load balancer give a guesser N times the budget). The
embedded broker's `BrokerAuth` is not reused because it keys every limit by an address,
and RabbitMQ gives none at login: one shared key for all its clients would let a single
guesser lock everyone out. Refusals are logged through `QuietLog`, so a flood of bad
logins is a line per reason and address per window, not a line each.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from broker import acl, topics
from broker.grants import Grants, grants_of
from broker.quiet_log import QuietLog
from security import AbuseLimits, LoginBackoff, Principal, PrincipalKind, SecurityService, TokenBuckets

_LOGIN_OUTCOMES = (
    "allowed",
    "busy",
    "connect_rate_ip",
    "connect_rate_client",
    "backoff",
    "anonymous",
    "bad_credentials",
    "client_id",
)


class ExternalAuthMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        logins = Counter(
            "fleethub_broker_auth_logins",
            "Logins an external broker asked about (EMQX, RabbitMQ), by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.logins = {o: logins.labels(outcome=o) for o in _LOGIN_OUTCOMES}
        checks = Counter(
            "fleethub_broker_auth_checks",
            "Publishes and subscriptions an external broker asked about, by action and result.",
            ["action", "result"],
            registry=registry,
        )
        self.checks = {
            (a, r): checks.labels(action=a, result=r) for a in ("publish", "subscribe") for r in ("allow", "deny")
        }


class ExternalAuth:
    def __init__(
        self,
        security: SecurityService,
        *,
        limits: AbuseLimits | None = None,
        registry: CollectorRegistry,
        max_pending_logins: int = 256,
    ) -> None:
        self.security = security
        # Logins waiting for an argon2 check are held by the broker's open requests: bounded, so a
        # reconnect storm is refused early (the clients retry) instead of queueing without end.
        self._max_pending = max_pending_logins
        self._pending = 0
        lim = limits or AbuseLimits()
        self._per_ip = TokenBuckets(lim.connect_rate_per_ip_per_s, lim.connect_burst_per_ip)
        self._per_client = TokenBuckets(lim.connect_rate_per_client_per_s, lim.connect_burst_per_client)
        self._backoff = LoginBackoff(
            lim.login_failures_before_backoff, lim.login_backoff_base_s, lim.login_backoff_max_s
        )
        self._metrics = ExternalAuthMetrics(registry)
        self._log = QuietLog()
        self._flushed_at = time.monotonic()

    async def login(self, username: str, password: str, client_id: str, peer: str) -> Principal | None:
        """A CONNECT the broker received; `peer` is the client's address, "" when the broker does not say."""
        name = username or client_id
        # Without the client's address (RabbitMQ's user_path) the limits count by name only:
        # one shared bucket for every client would let a guesser lock everybody out.
        keys = [f"ip:{peer}"] if peer else []
        if name:
            keys.append(f"user:{peer}|{name}")
        if peer and not self._per_ip.take(peer):
            return self._refused("connect_rate_ip", username, peer)
        if name and not self._per_client.take(f"{peer}|{name}"):
            return self._refused("connect_rate_client", username, peer)
        wait = max((self._backoff.blocked_for(k) for k in keys), default=0.0)
        if wait > 0:
            return self._refused("backoff", username, peer, retry_after_s=round(wait, 1))
        if not username or not password:
            return self._failed(keys, "anonymous", username, peer)
        if self._pending >= self._max_pending:
            return self._refused("busy", username, peer)
        self._pending += 1
        try:
            principal = await self.security.login(username, password)
        finally:
            self._pending -= 1
        if principal is None:
            return self._failed(keys, "bad_credentials", username, peer)
        if not await self._owns_client_id(principal, client_id):
            return self._failed(keys, "client_id", username, peer)
        for key in keys:
            self._backoff.succeeded(key)
        self._metrics.logins["allowed"].inc()
        return principal

    async def _owns_client_id(self, principal: Principal, client_id: str) -> bool:
        # As the embedded broker: a client id names the session a connection takes over.
        if principal.kind is PrincipalKind.VEHICLE:
            return client_id == principal.name
        return not client_id or await self.security.fleet_of(client_id) is None

    def _failed(self, keys: list[str], reason: str, username: str, peer: str) -> Principal | None:
        wait = max((self._backoff.failed(k) for k in keys), default=0.0)
        return self._refused(reason, username, peer, backoff_s=wait)

    def _refused(self, reason: str, username: str, peer: str, **extra: float) -> Principal | None:
        """Count and log a refused login; the refusal itself (None)."""
        self._metrics.logins[reason].inc()
        now = time.monotonic()
        if now - self._flushed_at >= 1.0:
            # Closes the windows that ended, with how many lines each left out.
            self._log.flush(now)
            self._flushed_at = now
        key = f"{reason}|{peer or username}"
        self._log.warning("broker login refused", key, username=username, peer=peer or None, reason=reason, **extra)
        return None

    async def principal(self, username: str) -> Principal | None:
        """Who a logged-in username acts as now (None once revoked or removed)."""
        if not username:
            return None
        return await self.security.principal_named(username)

    async def may(self, principal: Principal, action: Literal["publish", "subscribe"], topic: str) -> bool:
        """Whether `principal` may publish on `topic` or subscribe to the filter `topic`."""
        if action == "publish":
            allowed = acl.may_publish(principal, topics.parse(topic))
        else:
            decision = acl.may_subscribe(principal, topic)
            if decision.verdict is acl.Verdict.VEHICLE_FLEET:
                allowed = principal.sees(await self.security.fleet_of(decision.vehicle_id))
            else:
                allowed = decision.verdict is acl.Verdict.ALLOW
        self._metrics.checks[(action, "allow" if allowed else "deny")].inc()
        return allowed

    async def grants(self, principal: Principal, vehicle_fleets: Mapping[str, str] | None = None) -> Grants:
        return grants_of(principal, vehicle_fleets)

    async def expires_at(self, principal: Principal) -> float | None:
        """When the login stops being valid by itself: the expiry of the API token it used, if any."""
        if principal.token_id is None:
            return None
        token = await self.security.token(principal.token_id)
        return None if token is None else token.expires_at

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
accept that N hubs behind a load balancer give a guesser N times the budget).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import structlog
from prometheus_client import CollectorRegistry, Counter

from broker import acl, topics
from broker.grants import Grants, grants_of
from security import AbuseLimits, LoginBackoff, Principal, PrincipalKind, SecurityService, TokenBuckets

log = structlog.get_logger(__name__)

_LOGIN_OUTCOMES = (
    "allowed",
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
        self, security: SecurityService, *, limits: AbuseLimits | None = None, registry: CollectorRegistry
    ) -> None:
        self.security = security
        lim = limits or AbuseLimits()
        self._per_ip = TokenBuckets(lim.connect_rate_per_ip_per_s, lim.connect_burst_per_ip)
        self._per_client = TokenBuckets(lim.connect_rate_per_client_per_s, lim.connect_burst_per_client)
        self._backoff = LoginBackoff(
            lim.login_failures_before_backoff, lim.login_backoff_base_s, lim.login_backoff_max_s
        )
        self._metrics = ExternalAuthMetrics(registry)

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
        principal = await self.security.login(username, password)
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
        log.warning("broker login refused", username=username, peer=peer or None, reason=reason, **extra)
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

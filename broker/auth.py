"""Who may connect to the embedded broker, and as whom.

`BrokerAuth` decides each CONNECT: a provisioned vehicle (username = vehicle id,
password = its secret, or a TLS client certificate whose CN is the vehicle id), a user
(username and an API token or password), or, only when `allow_anonymous` is on, an
anonymous development client that may do anything. Before any secret is checked the
attempt must pass the connection-rate buckets (per IP, per username) and the failed
login back-off, so guessing costs the guesser time and the hub no CPU.

The broker calls `BrokerAuth.authenticate` itself (`HubBroker._authenticate`) rather
than through amqtt's plugin manager: amqtt ignores a plugin that answers None and runs
its plugins concurrently, and the decision here must carry a principal, not a bool.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Final

import structlog
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from broker.metrics import SecurityMetrics
from security import AbuseLimits, LoginBackoff, Principal, PrincipalKind, SecurityService, TokenBuckets

log = structlog.get_logger(__name__)

# Session attribute holding the `Principal` a connection authenticated as.
PRINCIPAL: Final = "fleethub.principal"


def principal_of(session: Session) -> Principal | None:
    found = session.attributes.get(PRINCIPAL)
    return found if isinstance(found, Principal) else None


class VehicleAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Listed in amqtt's configuration so that amqtt adds no allow-everyone default.

    fleethub's broker never asks it (see `BrokerAuth`); anyone who does is refused
    unless anonymous clients are allowed.
    """

    @dataclass
    class Config:
        allow_anonymous: bool = False

    async def authenticate(self, *, session: Session) -> bool:
        return bool(self.config.allow_anonymous)


def certificate_cn(ssl_object: Any) -> str | None:
    """The subject CN of a client certificate the TLS layer verified, else None."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    cert: Any = ssl_object.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class BrokerAuth:
    def __init__(
        self,
        security: SecurityService | None,
        *,
        allow_anonymous: bool,
        metrics: SecurityMetrics,
        limits: AbuseLimits | None = None,
        client_cert_auth: bool = False,
    ) -> None:
        self.security = security
        self.allow_anonymous = allow_anonymous
        self.client_cert_auth = client_cert_auth
        self._metrics = metrics
        lim = limits or AbuseLimits()
        self.limits = lim
        self._per_ip = TokenBuckets(lim.connect_rate_per_ip_per_s, lim.connect_burst_per_ip)
        self._per_client = TokenBuckets(lim.connect_rate_per_client_per_s, lim.connect_burst_per_client)
        self._backoff = LoginBackoff(
            lim.login_failures_before_backoff, lim.login_backoff_base_s, lim.login_backoff_max_s
        )

    def _refuse(self, session: Session, reason: str, *, limit: bool = False, **extra: Any) -> None:
        """Log a refused login; count it as an abuse-limit violation (`limit`) or a refusal."""
        (self._metrics.limit_violations if limit else self._metrics.logins_refused)[reason].inc()
        log.warning(
            "mqtt connection refused",
            client_id=session.client_id,
            username=session.username,
            peer=session.remote_address,
            reason=reason,
            **extra,
        )

    async def authenticate(self, session: Session) -> Principal | None:
        ip, who = _keys(session)
        if not self._per_ip.take(ip):
            self._refuse(session, "connect_rate_ip", limit=True)
            return None
        if who and not self._per_client.take(who):
            self._refuse(session, "connect_rate_client", limit=True)
            return None
        wait = max(self._backoff.blocked_for(f"ip:{ip}"), self._backoff.blocked_for(f"user:{who}") if who else 0.0)
        if wait > 0:
            self._refuse(session, "backoff", retry_after_s=round(wait, 1))
            return None
        principal = await self._decide(session)
        if principal is None:
            return None
        if not await self._owns_client_id(session, principal):
            self._failed(session, "client_id")
            return None
        self._backoff.succeeded(f"ip:{ip}")
        if who:
            self._backoff.succeeded(f"user:{who}")
        return principal

    async def _owns_client_id(self, session: Session, principal: Principal) -> bool:
        """A vehicle connects with its own id as client id, and nobody else may use it.

        A client id names the session a connection takes over, so using another
        vehicle's would evict it and inherit its subscriptions.
        """
        if principal.kind is PrincipalKind.VEHICLE:
            return bool(session.client_id == principal.name)
        if principal.kind is PrincipalKind.USER and self.security is not None:
            return await self.security.fleet_of(str(session.client_id)) is None
        return True

    def _failed(self, session: Session, reason: str) -> None:
        ip, who = _keys(session)
        wait = self._backoff.failed(f"ip:{ip}")
        if who:
            wait = max(wait, self._backoff.failed(f"user:{who}"))
        self._refuse(session, reason, backoff_s=wait)

    async def _decide(self, session: Session) -> Principal | None:
        username: str | None = session.username or None
        password: str | None = session.password or None
        security = self.security
        if security is not None and self.client_cert_auth:
            cn = certificate_cn(session.ssl_object)
            if cn is not None:
                if username is not None and username != cn:
                    self._failed(session, "certificate")
                    return None
                principal = await security.vehicle_by_certificate(cn)
                if principal is None:
                    self._failed(session, "revoked")
                return principal
        if security is not None and username is not None and password is not None:
            principal = await security.login(username, password)
            if principal is None:
                self._failed(session, "bad_credentials")
            return principal
        if self.allow_anonymous:
            # Development mode: a client without a password may do anything.
            return Principal.dev()
        self._failed(session, "anonymous")
        return None


def _keys(session: Session) -> tuple[str, str]:
    """What connection limits and login backoff count by: the peer address, and who it claims to be."""
    return str(session.remote_address or ""), str(session.username or session.client_id or "")

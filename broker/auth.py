"""Who may connect to the embedded broker, and as whom.

`BrokerAuth` decides each CONNECT: a provisioned vehicle (username = vehicle id,
password = its secret, or a TLS client certificate whose CN is the vehicle id), a user
(username and an API token or password), or, only when `allow_anonymous` is on, an
anonymous development client that may do anything. Before any secret is checked the
attempt must pass the connection-rate buckets and the failed-login back-off, so
guessing costs the guesser time and the hub no CPU.

The per-name bucket and the per-name back-off are keyed by the address and the name
together: someone at another address cannot spend a vehicle's (or a user's) connection
budget, or lock it out with wrong passwords. The trade-off: clients behind one carrier
NAT address share the per-address bucket (`abuse.connect_rate_per_ip_per_s`), and a
guesser who changes address starts a fresh per-name back-off (the per-address back-off
still applies to each address it uses).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import structlog

from broker.metrics import SecurityMetrics
from broker.quiet_log import QuietLog
from security import AbuseLimits, LoginBackoff, Principal, PrincipalKind, SecurityService, TokenBuckets

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Login:
    """A CONNECT's outcome: the principal it logged in as, or why it was refused."""

    principal: Principal | None
    refusal: str = ""


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """What a CONNECT claims, and where it comes from."""

    client_id: str
    username: str | None
    password: bytes | None
    remote_address: str
    ssl_object: Any = None


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
        self._log = QuietLog()

    def flush_log(self) -> None:
        self._log.flush()

    def _refuse(self, session: LoginAttempt, reason: str, *, limit: bool = False, **extra: Any) -> Login:
        """Log a refused login (aggregated per reason and address); count it as a limit violation or a refusal."""
        (self._metrics.limit_violations if limit else self._metrics.logins_refused)[reason].inc()
        self._log.warning(
            "mqtt connection refused",
            f"{reason}|{session.remote_address}",
            client_id=session.client_id,
            username=session.username,
            peer=session.remote_address,
            reason=reason,
            **extra,
        )
        return Login(None, reason)

    async def authenticate(self, session: LoginAttempt) -> Login:
        ip, who = _keys(session)
        if not self._per_ip.take(ip):
            return self._refuse(session, "connect_rate_ip", limit=True)
        if who and not self._per_client.take(who):
            return self._refuse(session, "connect_rate_client", limit=True)
        wait = max(self._backoff.blocked_for(f"ip:{ip}"), self._backoff.blocked_for(f"user:{who}") if who else 0.0)
        if wait > 0:
            return self._refuse(session, "backoff", retry_after_s=round(wait, 1))
        decided = await self._decide(session)
        if isinstance(decided, Login):
            return decided
        if not await self._owns_client_id(session, decided):
            return self._failed(session, "client_id")
        self._backoff.succeeded(f"ip:{ip}")
        if who:
            self._backoff.succeeded(f"user:{who}")
        return Login(decided)

    async def _owns_client_id(self, session: LoginAttempt, principal: Principal) -> bool:
        """A vehicle connects with its own id as client id, and nobody else may use it.

        A client id names the session a connection takes over, so using another
        vehicle's would evict it and inherit its subscriptions.
        """
        if principal.kind is PrincipalKind.VEHICLE:
            return bool(session.client_id == principal.name)
        if principal.kind is PrincipalKind.USER and self.security is not None:
            return await self.security.fleet_of(str(session.client_id)) is None
        return True

    def _failed(self, session: LoginAttempt, reason: str) -> Login:
        ip, who = _keys(session)
        wait = self._backoff.failed(f"ip:{ip}")
        if who:
            wait = max(wait, self._backoff.failed(f"user:{who}"))
        return self._refuse(session, reason, backoff_s=wait)

    async def _decide(self, session: LoginAttempt) -> Principal | Login:
        username: str | None = session.username or None
        password: str | None = session.password.decode("utf-8", "replace") if session.password else None
        security = self.security
        if security is not None and self.client_cert_auth:
            cn = certificate_cn(session.ssl_object)
            if cn is not None:
                if username is not None and username != cn:
                    return self._failed(session, "certificate")
                principal = await security.vehicle_by_certificate(cn)
                return self._failed(session, "revoked") if principal is None else principal
        if security is not None and username is not None and password is not None:
            principal = await security.login(username, password)
            return self._failed(session, "bad_credentials") if principal is None else principal
        if self.allow_anonymous:
            # Development mode: a client without a password may do anything.
            return Principal.dev()
        return self._failed(session, "anonymous")


def _keys(session: LoginAttempt) -> tuple[str, str]:
    """What connection limits and login back-off count by: the peer address, and the address with the name it claims."""
    ip = str(session.remote_address or "")
    name = session.username or session.client_id or ""
    return ip, f"{ip}|{name}" if name else ""

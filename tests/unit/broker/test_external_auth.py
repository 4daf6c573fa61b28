"""ExternalAuth's own bookkeeping: pending logins bounded, limits without a client address."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from broker import ExternalAuth
from security import CLI, AbuseLimits, MemorySecurityStore, Principal, SecurityService


class HeldLogins(SecurityService):
    """Logins wait until released: stands in for argon2 checks that take a while."""

    def __init__(self) -> None:
        super().__init__(MemorySecurityStore(), verify_cache_s=0)
        self.release = asyncio.Event()
        self.two_waiting = asyncio.Event()
        self.waiting = 0

    async def login(self, username: str, secret: str) -> Principal | None:
        self.waiting += 1
        if self.waiting == 2:
            self.two_waiting.set()
        await self.release.wait()
        return await super().login(username, secret)


def _count(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("fleethub_broker_auth_logins_total", {"outcome": outcome}) or 0.0


async def test_logins_beyond_the_pending_bound_are_refused_at_once() -> None:
    security = HeldLogins()
    made = await security.provision("car-1", "a", actor=CLI)
    registry = CollectorRegistry()
    limits = AbuseLimits(connect_rate_per_client_per_s=0, connect_rate_per_ip_per_s=0)
    auth = ExternalAuth(security, limits=limits, registry=registry, max_pending_logins=2)
    held = [asyncio.create_task(auth.login("car-1", made.secret, "car-1", "10.0.0.1")) for _ in range(2)]
    await asyncio.wait_for(security.two_waiting.wait(), 10)
    # The third finds both places taken: refused without waiting.
    assert await auth.login("car-1", made.secret, "car-1", "10.0.0.2") is None
    assert _count(registry, "busy") == 1
    security.release.set()
    assert all(p is not None for p in await asyncio.gather(*held))
    # Places free again: the same login goes through.
    assert await auth.login("car-1", made.secret, "car-1", "10.0.0.2") is not None
    assert _count(registry, "allowed") == 3


async def test_without_an_address_the_back_off_counts_by_name_only() -> None:
    """RabbitMQ gives no address at login: one guessed name backs off, another name is not affected."""
    security = SecurityService(MemorySecurityStore(), verify_cache_s=0)
    one = await security.provision("car-1", "a", actor=CLI)
    two = await security.provision("car-2", "a", actor=CLI)
    limits = AbuseLimits(login_failures_before_backoff=1, login_backoff_base_s=60)
    auth = ExternalAuth(security, limits=limits, registry=CollectorRegistry())
    for _ in range(2):
        assert await auth.login("car-1", "wrong", "car-1", "") is None
    assert await auth.login("car-1", one.secret, "car-1", "") is None
    assert await auth.login("car-2", two.secret, "car-2", "") is not None

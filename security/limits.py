"""Abuse limits: token buckets for message and connection rates, exponential back-off for failed logins."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

import msgspec
from msgspec import Meta


class TokenBuckets:
    """One token bucket per key (vehicle id, IP): `rate` per second, bursts of `burst`.

    Keys idle long enough to have refilled are forgotten, so memory follows the active
    keys, bounded by `max_keys` (the least recently used go first).
    """

    def __init__(
        self, rate: float, burst: float, max_keys: int = 1_000_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_keys
        self._clock = clock
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> bool:
        """Spend `cost` tokens of `key`'s bucket; False (nothing spent) when it holds too few."""
        if self.rate <= 0:
            return True
        now = self._clock()
        tokens, at = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._state[key] = (tokens, now)
        self._state.move_to_end(key)
        while len(self._state) > self._max:
            self._state.popitem(last=False)
        return allowed

    def forget(self, key: str) -> None:
        self._state.pop(key, None)


class LoginBackoff:
    """After `free` failed logins for a key, refuse further attempts for base * 2^(n - free) seconds.

    The window is capped at `max_s`; a success clears the key. Attempts refused during a
    window are not checked at all, so guessing costs the attacker time and the hub no CPU.
    """

    def __init__(
        self,
        free: int,
        base_s: float,
        max_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.base_s = base_s
        self.max_s = max_s
        self._max_keys = max_keys
        self._clock = clock
        # key -> (failures, blocked until)
        self._state: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def blocked_for(self, key: str) -> float:
        """Seconds this key must still wait; 0 when it may try."""
        state = self._state.get(key)
        if state is None:
            return 0.0
        return max(0.0, state[1] - self._clock())

    def failed(self, key: str) -> float:
        """Record a failure; returns the back-off now in force (0 while failures are free)."""
        failures = self._state.get(key, (0, 0.0))[0] + 1
        wait = 0.0
        if failures > self.free:
            wait = min(self.max_s, self.base_s * 2 ** (failures - self.free - 1))
        self._state[key] = (failures, self._clock() + wait)
        self._state.move_to_end(key)
        while len(self._state) > self._max_keys:
            self._state.popitem(last=False)
        return wait

    def succeeded(self, key: str) -> None:
        self._state.pop(key, None)


class AbuseLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[abuse]` settings: what one client may cost the hub. A rate of 0 turns that limit off."""

    message_rate_per_s: Annotated[
        float, Meta(ge=0, description="PUBLISHes per second per vehicle (token bucket); 0 turns the limit off.")
    ] = 20.0
    message_burst: Annotated[int, Meta(ge=1, description="PUBLISHes a vehicle may send above its rate at once.")] = 200
    connect_rate_per_ip_per_s: Annotated[
        float, Meta(ge=0, description="CONNECT attempts per second from one IP address; 0 turns the limit off.")
    ] = 50.0
    connect_burst_per_ip: Annotated[
        int, Meta(ge=1, description="CONNECT attempts one IP address may make above its rate at once.")
    ] = 500
    connect_rate_per_client_per_s: Annotated[
        float,
        Meta(ge=0, description="CONNECT attempts per second for one username or client id; 0 turns the limit off."),
    ] = 0.5
    connect_burst_per_client: Annotated[
        int, Meta(ge=1, description="CONNECT attempts one username or client id may make above its rate at once.")
    ] = 10
    login_failures_before_backoff: Annotated[
        int,
        Meta(
            ge=0,
            description="Failed logins allowed per IP and per username before back-off, then 1 s, 2 s, 4 s ... "
            "up to login_backoff_max_s.",
        ),
    ] = 3
    login_backoff_base_s: Annotated[float, Meta(ge=0, description="The first back-off after too many failures.")] = 1.0
    login_backoff_max_s: Annotated[
        float, Meta(ge=0, description="The longest back-off; at least login_backoff_base_s.")
    ] = 300.0
    max_subscriptions_per_client: Annotated[
        int, Meta(ge=1, description="Topic filters one MQTT client may hold at once.")
    ] = 100

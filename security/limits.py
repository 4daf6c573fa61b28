"""Abuse limits: token buckets for message and connection rates, exponential back-off for failed logins."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec


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

    # PUBLISHes per second per vehicle (token bucket), and the burst allowed above it.
    message_rate_per_s: float = 20.0
    message_burst: int = 200
    # CONNECT attempts per second from one IP address, and the burst.
    connect_rate_per_ip_per_s: float = 50.0
    connect_burst_per_ip: int = 500
    # CONNECT attempts per second for one username or client id, and the burst.
    connect_rate_per_client_per_s: float = 0.5
    connect_burst_per_client: int = 10
    # Failed logins allowed per IP and per username before back-off, then 1 s, 2 s, 4 s ... up to the maximum.
    login_failures_before_backoff: int = 3
    login_backoff_base_s: float = 1.0
    login_backoff_max_s: float = 300.0
    # Topic filters one MQTT client may hold at once.
    max_subscriptions_per_client: int = 100

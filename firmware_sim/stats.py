"""Counters a fleet keeps about itself, for progress lines and the demo."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import msgspec


class FleetStats(msgspec.Struct, frozen=True):
    vehicles: int
    # Vehicles whose MQTT session is up right now.
    connected: int
    # Messages handed to the MQTT client since the fleet started (telemetry and answers to the hub).
    messages_sent: int
    # Over the last few seconds.
    messages_per_s: float
    # Desired values applied and rejected, counted per key.
    desired_applied: int
    desired_rejected: int


def progress_line(stats: FleetStats) -> str:
    """A line like `42/50 connected, 9.8 msg/s, 3 desired applied`, plus rejections if any."""
    line = (
        f"{stats.connected}/{stats.vehicles} connected, {stats.messages_per_s:.1f} msg/s, "
        f"{stats.desired_applied} desired applied"
    )
    if stats.desired_rejected:
        line += f", {stats.desired_rejected} rejected"
    return line


class RateMeter:
    """Events per second over the last `window_s` whole seconds, in constant memory."""

    def __init__(self, window_s: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window_s
        self._clock = clock
        # The first partial second would read as a slow start, so it is left out.
        self._first = math.ceil(clock())
        self._buckets: deque[list[int]] = deque()

    def add(self, n: int = 1) -> None:
        second = int(self._clock())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
            return
        self._buckets.append([second, n])
        while self._buckets[0][0] < second - self._window:
            self._buckets.popleft()

    def rate(self) -> float:
        now = int(self._clock())
        start = max(self._first, now - self._window)
        if now <= start:
            return 0.0
        total = sum(count for second, count in self._buckets if start <= second < now)
        return total / (now - start)

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
    """Events per second over the last `window_s` seconds, in constant memory.

    Counts are kept in buckets of `resolution_s`; until the fleet has run for a whole
    window the rate is taken over the time it has run, so it is right from the start.
    """

    def __init__(
        self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic, resolution_s: float = 0.25
    ) -> None:
        self._window = window_s
        self._clock = clock
        self._resolution = resolution_s
        self._started = clock()
        self._buckets: deque[list[int]] = deque()

    def add(self, n: int = 1) -> None:
        slot = int(self._clock() / self._resolution)
        if self._buckets and self._buckets[-1][0] == slot:
            self._buckets[-1][1] += n
            return
        self._buckets.append([slot, n])
        oldest = slot - math.ceil(self._window / self._resolution)
        while self._buckets[0][0] < oldest:
            self._buckets.popleft()

    def rate(self) -> float:
        now = self._clock()
        span = min(self._window, now - self._started)
        if span <= 0:
            return 0.0
        first = int((now - span) / self._resolution)
        total = sum(count for slot, count in self._buckets if slot >= first)
        return total / max(span, self._resolution)

"""Fleet counters and the progress line."""

from __future__ import annotations

import pytest

from firmware_sim import FleetStats, progress_line
from firmware_sim.stats import RateMeter


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_covers_the_last_window() -> None:
    """The rate counts what was added over the last window, per second."""
    clock = FakeClock(100.0)
    meter = RateMeter(window_s=5, clock=clock)
    for tenth in range(1, 101):
        clock.now = 100.0 + tenth / 10
        meter.add(1)
    assert meter.rate() == pytest.approx(10.0, rel=0.06)
    clock.now = 116.0
    assert meter.rate() == 0.0


def test_rate_at_start_is_not_diluted_by_the_window() -> None:
    """Half a second in, the rate divides by half a second, not by the whole window."""
    clock = FakeClock(100.0)
    meter = RateMeter(window_s=5, clock=clock)
    assert meter.rate() == 0.0
    for tenth in range(1, 6):
        clock.now = 100.0 + tenth / 10
        meter.add(2)
    assert meter.rate() == pytest.approx(20.0, rel=0.06)


def test_memory_stays_bounded() -> None:
    """Old buckets are dropped as new ones arrive."""
    clock = FakeClock(0.0)
    meter = RateMeter(window_s=5, clock=clock)
    for i in range(10_000):
        clock.now = i * 0.1
        meter.add()
    assert len(meter._buckets) <= 5 / 0.25 + 2


def test_progress_line() -> None:
    """The progress line reads like '42/50 connected, 9.8 msg/s, 3 desired applied'."""
    stats = FleetStats(
        vehicles=50, connected=42, messages_sent=1000, messages_per_s=9.8, desired_applied=3, desired_rejected=0
    )
    assert progress_line(stats) == "42/50 connected, 9.8 msg/s, 3 desired applied"
    rejected = FleetStats(
        vehicles=5, connected=5, messages_sent=10, messages_per_s=1.0, desired_applied=1, desired_rejected=2
    )
    assert progress_line(rejected) == "5/5 connected, 1.0 msg/s, 1 desired applied, 2 rejected"

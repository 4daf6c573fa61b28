"""Fleet counters and the progress line."""

from __future__ import annotations

from firmware_sim import FleetStats, progress_line
from firmware_sim.stats import RateMeter


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_covers_the_last_whole_seconds() -> None:
    """The rate is the count over the last complete seconds of the window, per second."""
    clock = FakeClock(100.0)
    meter = RateMeter(window_s=5, clock=clock)
    for second in range(100, 110):
        clock.now = second + 0.5
        meter.add(10)
    clock.now = 110.2
    assert meter.rate() == 10.0
    clock.now = 120.0
    assert meter.rate() == 0.0


def test_rate_at_start_is_not_diluted_by_the_window() -> None:
    """Two seconds in, the rate divides by two seconds, not by the whole window."""
    clock = FakeClock(100.0)
    meter = RateMeter(window_s=5, clock=clock)
    assert meter.rate() == 0.0
    clock.now = 100.5
    meter.add(4)
    clock.now = 101.5
    meter.add(4)
    clock.now = 102.0
    assert meter.rate() == 4.0


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

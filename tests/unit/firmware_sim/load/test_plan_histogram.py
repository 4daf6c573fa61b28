"""Load plans validate their settings; latency histograms merge and report percentiles."""

from __future__ import annotations

import pytest

from firmware_sim import ConfigError
from firmware_sim.load import Histogram, LoadPlan, Mode


def test_saturating_needs_qos1() -> None:
    """A plan paced by PUBACKs refuses QoS 0 and says which setting to change."""
    with pytest.raises(ConfigError, match="set qos to 1"):
        LoadPlan(mode=Mode.SATURATE, qos=0)


def test_workers_share_the_fleet_without_overlap() -> None:
    """Every vehicle index belongs to exactly one worker."""
    plan = LoadPlan(vehicles=10, workers=3)
    seen = sorted(i for w in range(3) for i in plan.slice_for(w))
    assert seen == list(range(10))


def test_timeline_orders_measurement_storm_and_end() -> None:
    """The storm follows the measured window, and the run ends after it has settled."""
    plan = LoadPlan(ramp_s=5, warmup_s=2, measure_s=10, storm=True, storm_window_s=3, storm_settle_s=4)
    assert plan.measure_from == 7
    assert plan.storm_at == 17
    assert plan.publish_until == 24
    assert plan.end > plan.publish_until


def test_histogram_percentiles_within_bucket_error_and_merge() -> None:
    """Percentiles of 1..1000 ms land within 2% of the true value, also after a merge."""
    a, b = Histogram(), Histogram()
    for ms in range(1, 1001):
        (a if ms % 2 else b).add(ms / 1000)
    merged = Histogram.from_dict(a.to_dict())
    merged.merge(Histogram.from_dict(b.to_dict()))
    assert merged.count == 1000
    p50, p99 = merged.percentile(50), merged.percentile(99)
    assert p50 is not None
    assert p99 is not None
    assert abs(p50 - 0.5) / 0.5 < 0.03
    assert abs(p99 - 0.99) / 0.99 < 0.03
    assert Histogram().percentile(50) is None

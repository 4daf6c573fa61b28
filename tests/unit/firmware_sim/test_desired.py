"""Which desired values a vehicle applies, and the reasons it gives for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_sim import Settings, apply_desired

BASE = Settings(charge_limit=80, report_interval_s=10.0, doors_locked=True)


def test_applies_every_known_setting() -> None:
    """charge_limit, config.report_interval_s and doors.locked are applied and listed by dotted path."""
    result = apply_desired(BASE, {"charge_limit": 65, "config": {"report_interval_s": 30}, "doors": {"locked": False}})
    assert result.settings == Settings(charge_limit=65, report_interval_s=30, doors_locked=False)
    assert result.applied == {"charge_limit": 65, "config.report_interval_s": 30, "doors.locked": False}
    assert result.rejected == {}


@pytest.mark.parametrize(
    ("delta", "path", "reason_part"),
    [
        ({"charge_limit": 49}, "charge_limit", "from 50 to 100, got 49"),
        ({"charge_limit": 101}, "charge_limit", "got 101"),
        ({"charge_limit": 70.5}, "charge_limit", "integer"),
        ({"charge_limit": True}, "charge_limit", "got true"),
        ({"charge_limit": "80"}, "charge_limit", 'got "80"'),
        ({"charge_limit": {"value": 80}}, "charge_limit", "got an object"),
        ({"config": {"report_interval_s": 0}}, "config.report_interval_s", "from 1 to 3600, got 0"),
        ({"config": {"report_interval_s": 3601}}, "config.report_interval_s", "got 3601"),
        ({"config": {"report_interval_s": [5]}}, "config.report_interval_s", "got an array"),
        ({"doors": {"locked": "yes"}}, "doors.locked", "true or false"),
        ({"doors": True}, "doors", "must be an object"),
        ({"config": 5}, "config", "must be an object"),
        ({"color": "red"}, "color", "unknown setting"),
        ({"config": {"mode": "eco"}}, "config.mode", "unknown setting"),
        ({"soc": 50}, "soc", "read-only"),
        ({"gps": {"lat": 1.0}}, "gps.lat", "read-only"),
    ],
)
def test_rejects_what_it_cannot_apply(delta: dict[str, Any], path: str, reason_part: str) -> None:
    """Out-of-range, mistyped, unknown and read-only values are rejected under their dotted path."""
    result = apply_desired(BASE, delta)
    assert list(result.rejected) == [path]
    assert reason_part in result.rejected[path]
    assert result.applied == {}
    assert result.settings == BASE


def test_applies_the_good_values_and_rejects_the_bad_in_one_delta() -> None:
    """A delta with valid and invalid keys applies the valid ones only."""
    result = apply_desired(BASE, {"charge_limit": 90, "config": {"report_interval_s": -1}, "x": 1})
    assert result.applied == {"charge_limit": 90}
    assert set(result.rejected) == {"config.report_interval_s", "x"}
    assert result.settings.charge_limit == 90
    assert result.settings.report_interval_s == 10.0


def test_bounds_are_inclusive_and_whole_floats_count_as_integers() -> None:
    """50, 100, 1 s and 3600 s are accepted; 80.0 is taken as the integer 80."""
    assert apply_desired(BASE, {"charge_limit": 50}).settings.charge_limit == 50
    assert apply_desired(BASE, {"charge_limit": 100}).settings.charge_limit == 100
    limit = apply_desired(BASE, {"charge_limit": 80.0}).settings.charge_limit
    assert limit == 80
    assert isinstance(limit, int)
    assert apply_desired(BASE, {"config": {"report_interval_s": 1}}).applied
    assert apply_desired(BASE, {"config": {"report_interval_s": 3600}}).applied
    assert apply_desired(BASE, {"config": {"report_interval_s": 2.5}}).settings.report_interval_s == 2.5


def test_null_and_empty_objects_are_neither_applied_nor_rejected() -> None:
    """A null leaf means no desired value; the vehicle keeps what it has and says nothing."""
    result = apply_desired(BASE, {"charge_limit": None, "doors": {}, "config": {"report_interval_s": None}})
    assert result.applied == {}
    assert result.rejected == {}
    assert result.settings is BASE

"""The firmware's side of the MQTT contract: telemetry out, deltas in, answers out."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from firmware_sim import Firmware, InvalidDelta, Vehicle, get_city

T0 = 1_800_000_000.0


def _firmware(qos: int = 1) -> Firmware:
    vehicle = Vehicle(get_city("mexico-city"), random.Random(1), T0, report_interval_s=5.0)
    return Firmware("veh-0042", vehicle, telemetry_qos=qos)


def _delta(version: int, delta: dict[str, Any]) -> bytes:
    return msgspec.json.encode({"version": version, "delta": delta})


def test_report_is_telemetry_on_the_vehicle_topic() -> None:
    """A report is a JSON object on vehicles/{vid}/telemetry at the configured QoS, seq rising."""
    firmware = _firmware(qos=0)
    first, second = firmware.report(T0 + 5), firmware.report(T0 + 10)
    assert first.topic == "vehicles/veh-0042/telemetry"
    assert first.qos == 0
    a, b = msgspec.json.decode(first.payload), msgspec.json.decode(second.payload)
    assert (a["seq"], b["seq"]) == (1, 2)
    assert b["ts"] == T0 + 10


def test_subscribes_to_its_own_delta_topic() -> None:
    """The vehicle listens on vehicles/{vid}/twin/delta with QoS 1."""
    assert _firmware().subscriptions == [("vehicles/veh-0042/twin/delta", 1), ("vehicles/veh-0042/commands/+", 1)]


def test_applied_values_are_reported_at_once() -> None:
    """Applying a delta publishes telemetry right away, carrying the new values."""
    firmware = _firmware()
    handled = firmware.on_delta(
        _delta(3, {"charge_limit": 60, "config": {"report_interval_s": 20}, "doors": {"locked": False}}), T0 + 1
    )
    assert handled.applied == {"charge_limit": 60, "config.report_interval_s": 20, "doors.locked": False}
    assert handled.rejected == {}
    [message] = handled.messages
    assert message.topic == "vehicles/veh-0042/telemetry"
    report = msgspec.json.decode(message.payload)
    assert report["charge_limit"] == 60
    assert report["config"] == {"report_interval_s": 20}
    assert report["doors"] == {"locked": False}
    assert firmware.vehicle.report_interval_s == 20


def test_rejected_values_go_back_on_twin_rejected() -> None:
    """Values the vehicle cannot apply are answered on twin/rejected as {dotted path: reason}, QoS 1."""
    firmware = _firmware(qos=0)
    handled = firmware.on_delta(_delta(4, {"charge_limit": 120, "seats": {"heated": True}}), T0 + 1)
    [message] = handled.messages
    assert message.topic == "vehicles/veh-0042/twin/rejected"
    assert message.qos == 1
    reasons = msgspec.json.decode(message.payload)
    assert set(reasons) == {"charge_limit", "seats.heated"}
    assert "120" in reasons["charge_limit"]
    assert firmware.vehicle.settings.charge_limit != 120


def test_a_mixed_delta_rejects_and_reports() -> None:
    """One delta with good and bad values yields a rejection and a telemetry message."""
    handled = _firmware().on_delta(_delta(5, {"charge_limit": 70, "config": {"report_interval_s": 0}}), T0)
    topics = [message.topic for message in handled.messages]
    assert topics == ["vehicles/veh-0042/twin/rejected", "vehicles/veh-0042/telemetry"]
    assert msgspec.json.decode(handled.messages[1].payload)["charge_limit"] == 70


def test_an_older_delta_is_ignored() -> None:
    """A delta with a lower version than one already handled would undo newer values, so it is ignored."""
    firmware = _firmware()
    firmware.on_delta(_delta(7, {"charge_limit": 75}), T0)
    stale = firmware.on_delta(_delta(6, {"charge_limit": 95}), T0 + 1)
    assert stale.stale
    assert stale.messages == []
    assert firmware.vehicle.settings.charge_limit == 75
    again = firmware.on_delta(_delta(7, {"charge_limit": 75}), T0 + 2)
    assert not again.stale
    assert again.applied == {"charge_limit": 75}


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"delta": {}}', b'{"version": 1, "delta": 5}'])
def test_a_malformed_delta_raises(payload: bytes) -> None:
    """A payload that is not {"version": n, "delta": {...}} raises InvalidDelta and changes nothing."""
    firmware = _firmware()
    before = firmware.vehicle.settings
    with pytest.raises(InvalidDelta):
        firmware.on_delta(payload, T0)
    assert firmware.vehicle.settings == before


def test_unknown_fields_next_to_the_delta_are_tolerated() -> None:
    """Newer hubs may add fields to the delta message; older firmware ignores them."""
    payload = msgspec.json.encode({"version": 2, "delta": {"charge_limit": 85}, "ts": "2026-01-01T00:00:00Z"})
    assert _firmware().on_delta(payload, T0).applied == {"charge_limit": 85}

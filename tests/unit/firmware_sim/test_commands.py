"""The simulated vehicle's commands: what it does, refuses, fails and answers again."""

import random

import msgspec

from firmware_sim import Firmware, Vehicle, get_city
from firmware_sim.commands import CommandHandler


def _vehicle() -> Vehicle:
    return Vehicle(get_city("mexico-city"), random.Random(1), 1_000.0)


def _payload(name: str, **args) -> bytes:
    return msgspec.json.encode({"id": "c1", "name": name, "args": args, "expires_at": None, "attempt": 1})


def test_unlock_is_rejected_while_driving_and_done_when_parked():
    """Unlocking a moving car is refused with the reason; parked, the doors unlock."""
    vehicle = _vehicle()
    handler = CommandHandler(vehicle, random.Random(1))
    vehicle.ignition, vehicle.speed_kmh = True, 37.0
    refused = handler.handle("c1", _payload("unlock"))
    assert refused.status == "rejected"
    assert "driving" in (refused.detail or "")
    vehicle.ignition, vehicle.speed_kmh = False, 0.0
    assert handler.handle("c2", _payload("unlock")).status == "succeeded"
    assert vehicle.settings.doors_locked is False
    assert handler.handle("c3", _payload("lock")).status == "succeeded"
    assert vehicle.settings.doors_locked is True


def test_a_resent_command_gets_the_same_answer_without_running_twice():
    """Commands are at least once; the vehicle answers a repeat from memory."""
    handler = CommandHandler(_vehicle(), random.Random(1))
    first = handler.handle("c1", _payload("honk", times=2))
    assert handler.handle("c1", _payload("honk", times=2)) == first
    assert handler.executed == 1


def test_arguments_are_checked():
    """Bad arguments and unknown commands are rejected with a reason; good ones change the vehicle."""
    vehicle = _vehicle()
    handler = CommandHandler(vehicle, random.Random(1))
    assert handler.handle("a", _payload("set_charge_limit", limit=120)).status == "rejected"
    assert handler.handle("b", _payload("honk", times=9)).status == "rejected"
    assert handler.handle("c", _payload("self_destruct")).status == "rejected"
    assert handler.handle("d", b"not json").status == "rejected"
    assert handler.handle("e", _payload("set_charge_limit", limit=70)).result == {"charge_limit": 70}
    assert vehicle.settings.charge_limit == 70
    assert handler.handle("f", _payload("immobilize")).status == "succeeded"
    assert vehicle.immobilized is True
    located = handler.handle("g", _payload("locate")).result
    assert located is not None
    assert set(located) == {"lat", "lon", "speed"}


def test_failures_come_at_the_configured_rate():
    """With a failure rate of 1 every command fails; with 0 none does."""
    always = CommandHandler(_vehicle(), random.Random(1), failure_rate=1.0)
    assert {always.handle(str(i), _payload("lock")).status for i in range(5)} == {"failed"}
    never = CommandHandler(_vehicle(), random.Random(1), failure_rate=0.0)
    assert {never.handle(str(i), _payload("lock")).status for i in range(5)} == {"succeeded"}


def test_firmware_answers_on_the_result_topic_and_reports_changes():
    """The answer goes to `.../commands/{id}/result`; a command that changed reported state adds telemetry."""
    firmware = Firmware("veh-0042", _vehicle())
    handled = firmware.on_command("vehicles/veh-0042/commands/c9", _payload("lock"), 1_001.0)
    assert handled is not None
    assert [m.topic for m in handled.messages] == [
        "vehicles/veh-0042/commands/c9/result",
        "vehicles/veh-0042/telemetry",
    ]
    assert msgspec.json.decode(handled.messages[0].payload)["status"] == "succeeded"
    assert firmware.on_command("vehicles/veh-0042/twin/delta", b"{}", 1_001.0) is None
    assert firmware.on_command("vehicles/other/commands/c9", _payload("lock"), 1_001.0) is None

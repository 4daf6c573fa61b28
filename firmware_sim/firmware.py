"""What a vehicle's firmware says and how it answers the hub, without the network.

`Firmware` turns the vehicle model into MQTT messages (topic, payload, QoS) and turns
messages from the hub into changes to the model plus the messages that answer them.
A transport only has to move `Outbound` messages, so the same firmware runs over the
paho links of `Fleet` or any leaner transport.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from firmware_sim import topics
from firmware_sim.commands import SUCCEEDED, Answer, CommandHandler
from firmware_sim.errors import InvalidDelta
from firmware_sim.faults import FaultInjector
from firmware_sim.vehicle import Vehicle

# Answers to the hub are rare and matter to an operator waiting on them.
CONTROL_QOS = 1


class Outbound(msgspec.Struct, frozen=True):
    topic: str
    payload: bytes
    qos: int


class DeltaMessage(msgspec.Struct):
    """Payload of `vehicles/{vid}/twin/delta`; unknown fields are ignored."""

    version: int
    delta: dict[str, Any]


class CommandHandled(msgspec.Struct, frozen=True):
    command_id: str
    name: str
    answer: Answer
    messages: list[Outbound]


class DeltaHandled(msgspec.Struct, frozen=True):
    """What became of one delta, and the messages that report it."""

    version: int
    # Dotted path to the value now in effect / to why it cannot be applied.
    applied: dict[str, Any]
    rejected: dict[str, str]
    messages: list[Outbound]
    # An older version than one already handled: a redelivery that would undo newer values.
    stale: bool = False


_decode_delta = msgspec.json.Decoder(DeltaMessage).decode
_encode = msgspec.json.Encoder().encode


class Firmware:
    """One vehicle's side of the MQTT contract."""

    def __init__(
        self,
        vehicle_id: str,
        vehicle: Vehicle,
        *,
        telemetry_qos: int = 1,
        faults: FaultInjector | None = None,
        command_failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.vehicle_id = vehicle_id
        self.vehicle = vehicle
        self.faults = faults
        self.telemetry_qos = telemetry_qos
        self.telemetry_topic = topics.telemetry(vehicle_id)
        self.delta_topic = topics.twin_delta(vehicle_id)
        self.rejected_topic = topics.twin_rejected(vehicle_id)
        self._delta_version: int | None = None
        self.commands_filter = topics.commands(vehicle_id)
        self.commands = CommandHandler(vehicle, rng or random.Random(vehicle_id), command_failure_rate)

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.delta_topic, CONTROL_QOS), (self.commands_filter, CONTROL_QOS)]

    def report(self, now: float) -> Outbound:
        """Advance the vehicle to `now` and encode its telemetry."""
        self.vehicle.step(now)
        telemetry = self.vehicle.telemetry(now)
        if self.faults is not None:
            telemetry = self.faults.apply(telemetry, now)
        payload = _encode(telemetry)
        return Outbound(self.telemetry_topic, payload, self.telemetry_qos)

    def silent(self, now: float) -> bool:
        """Whether a fault keeps the tracker from reporting."""
        return self.faults is not None and self.faults.silent(now)

    def on_delta(self, payload: bytes, now: float) -> DeltaHandled:
        """Apply a `twin/delta` payload.

        Applied values are reported at once in a fresh telemetry message; values the
        vehicle cannot apply go back on `twin/rejected`, one reason per dotted path.
        Raises `InvalidDelta` when the payload is not a delta at all.
        """
        try:
            message = _decode_delta(payload)
        except msgspec.DecodeError as exc:
            raise InvalidDelta(f"twin/delta payload is not {{'version': n, 'delta': {{...}}}}: {exc}") from None
        if self._delta_version is not None and message.version < self._delta_version:
            return DeltaHandled(message.version, applied={}, rejected={}, messages=[], stale=True)
        self._delta_version = message.version

        result = self.vehicle.apply_desired(message.delta)
        messages: list[Outbound] = []
        if result.rejected:
            messages.append(Outbound(self.rejected_topic, _encode(result.rejected), CONTROL_QOS))
        if result.applied:
            messages.append(self.report(now))
        return DeltaHandled(message.version, result.applied, result.rejected, messages)

    def on_command(self, topic: str, payload: bytes, now: float) -> CommandHandled | None:
        """Carry out a command from `vehicles/{vid}/commands/{id}` and answer it on `.../result`.

        A command that changed what the vehicle reports (doors, charge limit) is followed
        by fresh telemetry. None when `topic` is not one of this vehicle's command topics.
        """
        command_id = topics.command_id_of(self.vehicle_id, topic)
        if command_id is None:
            return None
        executed = self.commands.executed
        answer = self.commands.handle(command_id, payload)
        name = self.commands.last_name
        messages = [Outbound(topics.command_result(self.vehicle_id, command_id), _encode(answer), CONTROL_QOS)]
        if answer.status == SUCCEEDED and self.commands.executed > executed:
            messages.append(self.report(now))
        return CommandHandled(command_id, name, answer, messages)

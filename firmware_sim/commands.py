"""Remote commands a simulated vehicle understands, and how it answers them.

`lock`, `unlock` (refused while driving), `immobilize` (`{"enabled": true|false}`;
an immobilised vehicle stays parked), `locate`, `honk` (`{"times": 1-5}`) and
`set_charge_limit` (`{"limit": 50-100}`). Any command may fail at random, as
actuators do, at the configured rate. A command seen again (a resend) gets the same
answer without being carried out twice.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from firmware_sim.desired import CHARGE_LIMIT_MAX, CHARGE_LIMIT_MIN
from firmware_sim.vehicle import Vehicle

SUCCEEDED, FAILED, REJECTED = "succeeded", "failed", "rejected"
# Answers remembered for resends; older command ids are forgotten.
REMEMBERED: Final = 256
MAX_HONKS: Final = 5


class Answer(msgspec.Struct, frozen=True, omit_defaults=True):
    """Payload of `vehicles/{vid}/commands/{id}/result`."""

    status: str
    detail: str | None = None
    result: dict[str, Any] | None = None


class IncomingCommand(msgspec.Struct, frozen=True):
    """Payload of `vehicles/{vid}/commands/{id}`; unknown fields are ignored."""

    name: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)


def _moving(vehicle: Vehicle) -> bool:
    return vehicle.ignition or vehicle.speed_kmh > 0


def _lock(vehicle: Vehicle, args: Mapping[str, Any]) -> Answer:
    vehicle.set_locked(True)
    return Answer(SUCCEEDED, "doors locked", {"doors": {"locked": True}})


def _unlock(vehicle: Vehicle, args: Mapping[str, Any]) -> Answer:
    if _moving(vehicle):
        return Answer(REJECTED, f"vehicle is driving ({vehicle.speed_kmh:.0f} km/h, ignition on)")
    vehicle.set_locked(False)
    return Answer(SUCCEEDED, "doors unlocked", {"doors": {"locked": False}})


def _immobilize(vehicle: Vehicle, args: Mapping[str, Any]) -> Answer:
    enabled = args.get("enabled", True)
    if not isinstance(enabled, bool):
        return Answer(REJECTED, "'enabled' must be true or false")
    vehicle.immobilized = enabled
    detail = "immobilised: will not start" if enabled else "immobiliser released"
    return Answer(SUCCEEDED, detail, {"immobilized": enabled})


def _locate(vehicle: Vehicle, args: Mapping[str, Any]) -> Answer:
    where = {"lat": round(vehicle.lat, 6), "lon": round(vehicle.lon, 6), "speed": round(vehicle.speed_kmh, 1)}
    return Answer(SUCCEEDED, "located", where)


def _honk(vehicle: Vehicle, args: Mapping[str, Any]) -> Answer:
    times = args.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_HONKS:
        return Answer(REJECTED, f"'times' must be an integer from 1 to {MAX_HONKS}")
    return Answer(SUCCEEDED, f"honked {times} time(s)", {"times": times})


def _set_charge_limit(vehicle: Vehicle, args: Mapping[str, Any]) -> Answer:
    limit = args.get("limit")
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not CHARGE_LIMIT_MIN <= limit <= CHARGE_LIMIT_MAX:
        return Answer(REJECTED, f"'limit' must be an integer from {CHARGE_LIMIT_MIN} to {CHARGE_LIMIT_MAX}")
    vehicle.apply_desired({"charge_limit": limit})
    return Answer(SUCCEEDED, f"charge limit {limit}%", {"charge_limit": limit})


HANDLERS: Final[dict[str, Callable[[Vehicle, Mapping[str, Any]], Answer]]] = {
    "lock": _lock,
    "unlock": _unlock,
    "immobilize": _immobilize,
    "locate": _locate,
    "honk": _honk,
    "set_charge_limit": _set_charge_limit,
}

_decode = msgspec.json.Decoder(IncomingCommand).decode


class CommandHandler:
    """One vehicle's command executor, with its memory of recent answers."""

    def __init__(self, vehicle: Vehicle, rng: random.Random, failure_rate: float = 0.0) -> None:
        self.vehicle = vehicle
        self.rng = rng
        self.failure_rate = failure_rate
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self.executed = 0
        self.last_name = ""

    def handle(self, command_id: str, payload: bytes) -> Answer:
        seen = self._answers.get(command_id)
        if seen is not None:
            return seen
        self.last_name = ""
        try:
            command = _decode(payload)
        except msgspec.DecodeError as exc:
            answer = Answer(REJECTED, f"not a command: {exc}")
        else:
            self.last_name = command.name
            answer = self._execute(command)
        self._answers[command_id] = answer
        if len(self._answers) > REMEMBERED:
            self._answers.popitem(last=False)
        return answer

    def _execute(self, command: IncomingCommand) -> Answer:
        handler = HANDLERS.get(command.name)
        if handler is None:
            return Answer(REJECTED, f"unknown command {command.name!r}; this vehicle knows {', '.join(HANDLERS)}")
        if self.failure_rate and self.rng.random() < self.failure_rate:
            return Answer(FAILED, "actuator did not respond")
        self.executed += 1
        return handler(self.vehicle, command.args)

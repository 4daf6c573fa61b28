"""The device-facing topic contract (v1): topics in, message kinds out, and back.

Pure functions only; the broker calls them on every PUBLISH, so they avoid regexes
except where an id must be validated.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from twin import Channel, MessageKind

PREFIX = "vehicles/"

_VEHICLE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Everything after `vehicles/{vid}/` that a vehicle may publish, except command results,
# whose middle level is the command id.
_UPLINK: dict[str, MessageKind] = {
    "telemetry": MessageKind.TELEMETRY,
    "twin/get": MessageKind.TWIN_GET,
    "twin/rejected": MessageKind.TWIN_REJECTED,
}

# Topics the hub publishes to a vehicle: a client publishing here would speak for the hub.
_DOWNLINK = frozenset({"twin/delta", "twin/doc", "errors"})


class Refusal(enum.Enum):
    """Why the broker dropped a PUBLISH instead of routing it."""

    UNKNOWN_TOPIC = "unknown_topic"
    TOPIC_NOT_ALLOWED = "topic_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    # The topic ACL: a client publishing where its identity may not (another vehicle's topics).
    NOT_AUTHORIZED = "not_authorized"
    # Over the per-vehicle message rate (`abuse.message_rate_per_s`).
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class VehicleTopic:
    """A topic under `vehicles/`: either a kind to ingest or a refusal.

    `vehicle_id` is empty when the id level is not a valid vehicle id; such a sender
    has no errors topic to be told on.
    """

    vehicle_id: str
    kind: MessageKind | None = None
    subtopic: str = ""
    refusal: Refusal | None = None


def is_vehicle_id(candidate: str | None) -> bool:
    return candidate is not None and _VEHICLE_ID.fullmatch(candidate) is not None


def vehicle_id_of(username: str | None, client_id: str | None) -> str | None:
    """The vehicle a connection speaks for: its username, else its client id, else none."""
    if is_vehicle_id(username):
        return username
    if is_vehicle_id(client_id):
        return client_id
    return None


def parse(topic: str) -> VehicleTopic | None:
    """Classify a published topic; None when it is outside `vehicles/` (plain routing)."""
    if not topic.startswith(PREFIX):
        return None
    vehicle_id, _, rest = topic[len(PREFIX) :].partition("/")
    if not is_vehicle_id(vehicle_id):
        return VehicleTopic("", refusal=Refusal.UNKNOWN_TOPIC)
    kind = _UPLINK.get(rest)
    if kind is not None:
        return VehicleTopic(vehicle_id, kind)
    if rest in _DOWNLINK:
        return VehicleTopic(vehicle_id, refusal=Refusal.TOPIC_NOT_ALLOWED)
    levels = rest.split("/")
    if levels[0] == "commands" and len(levels) >= 2 and levels[1]:
        if len(levels) == 3 and levels[2] == "result":
            return VehicleTopic(vehicle_id, MessageKind.COMMAND_RESULT, subtopic=levels[1])
        if len(levels) == 2:
            return VehicleTopic(vehicle_id, refusal=Refusal.TOPIC_NOT_ALLOWED)
    return VehicleTopic(vehicle_id, refusal=Refusal.UNKNOWN_TOPIC)


def downlink(vehicle_id: str, channel: Channel, subtopic: str = "") -> str:
    """The topic on which the hub talks to one vehicle on one channel."""
    if not is_vehicle_id(vehicle_id):
        msg = f"not a vehicle id: {vehicle_id!r} (expected 1-64 of A-Z a-z 0-9 _ . -)"
        raise ValueError(msg)
    if channel is Channel.COMMAND:
        if not subtopic or "/" in subtopic or "+" in subtopic or "#" in subtopic:
            msg = f"a command needs a single-level command id, got {subtopic!r}"
            raise ValueError(msg)
        return f"{PREFIX}{vehicle_id}/commands/{subtopic}"
    return f"{PREFIX}{vehicle_id}/{channel.value}"

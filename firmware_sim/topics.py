"""Topic names of the device-facing MQTT contract (DESIGN.md, "Device-facing MQTT contract")."""

from __future__ import annotations

import re

VEHICLE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def vehicle_id(prefix: str, index: int) -> str:
    """`veh-0001` style ids: the prefix and an index padded to at least four digits."""
    return f"{prefix}{index:04d}"


def telemetry(vid: str) -> str:
    return f"vehicles/{vid}/telemetry"


def twin_delta(vid: str) -> str:
    return f"vehicles/{vid}/twin/delta"


def twin_rejected(vid: str) -> str:
    return f"vehicles/{vid}/twin/rejected"


def commands(vid: str) -> str:
    """The filter a vehicle subscribes to for its commands (one level per command id)."""
    return f"vehicles/{vid}/commands/+"


def command_result(vid: str, command_id: str) -> str:
    return f"vehicles/{vid}/commands/{command_id}/result"


def command_id_of(vid: str, topic: str) -> str | None:
    """The command id of a `vehicles/{vid}/commands/{id}` topic, else None."""
    prefix = f"vehicles/{vid}/commands/"
    if not topic.startswith(prefix):
        return None
    rest = topic[len(prefix) :]
    return rest if rest and "/" not in rest else None

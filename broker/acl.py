"""Topic ACLs: what a vehicle or a user may publish and subscribe to. Pure functions.

Vehicle `{vid}`: publishes only its own up topics (`vehicles/{vid}/telemetry`,
`twin/get`, `twin/rejected`, `commands/{id}/result`); subscribes only to its own down
topics (`vehicles/{vid}/twin/delta`, `twin/doc`, `errors`, `commands/{id}`, or
wildcards below `vehicles/{vid}/`).

User of fleets F: publishes nothing; subscribes to `alerts/{f}/...` for f in F, and
`events/{kind}/{vid}/...` and `vehicles/{vid}/...` for vehicles of F. A user of every
fleet (`*`) may also use wildcards at those levels (`alerts/#`, `events/#`,
`vehicles/+/telemetry`).

Anonymous (only with `mqtt.allow_anonymous`): anything the routing rules allow.

`$SYS/...` (broker statistics): only an administrator of every fleet (and anonymous
development clients).

Subscriptions are checked when made; a message is then delivered to every matching
subscriber without a second check (the filter could only have matched topics the
subscriber may see).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from broker import topics
from security import Permission, Principal, PrincipalKind

_WILDCARDS = frozenset({"+", "#"})

# What a vehicle may subscribe to below `vehicles/{vid}/`, wildcards aside.
_VEHICLE_DOWN = frozenset({"twin/delta", "twin/doc", "errors"})


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    # Allowed if the named vehicle belongs to one of the principal's fleets.
    VEHICLE_FLEET = "vehicle_fleet"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    vehicle_id: str = ""


ALLOW = Decision(Verdict.ALLOW)
DENY = Decision(Verdict.DENY)


def may_publish(principal: Principal, route: topics.VehicleTopic | None) -> bool:
    """Whether `principal` may publish on a topic, given as the router parsed it (`topics.parse`)."""
    if principal.kind is PrincipalKind.DEV:
        return True
    if principal.kind is PrincipalKind.VEHICLE:
        return route is not None and route.vehicle_id == principal.name and route.kind is not None
    # Users listen; the hub publishes alerts and events itself.
    return False


def may_subscribe(principal: Principal, topic_filter: str) -> Decision:
    if principal.kind is PrincipalKind.DEV:
        return ALLOW
    levels = topic_filter.split("/")
    if levels[0] == "$SYS":
        return ALLOW if principal.all_fleets and principal.can(Permission.USERS_ADMIN) else DENY
    if principal.kind is PrincipalKind.VEHICLE:
        return ALLOW if _vehicle_filter(principal.name, levels) else DENY
    return _user_filter(principal, levels)


def _vehicle_filter(vehicle_id: str, levels: list[str]) -> bool:
    if len(levels) < 3 or levels[0] != "vehicles" or levels[1] != vehicle_id:
        return False
    rest = levels[2:]
    if any(level in _WILDCARDS for level in rest):
        # Below its own prefix a wildcard can only match topics the hub routes to it.
        return True
    if "/".join(rest) in _VEHICLE_DOWN:
        return True
    return len(rest) == 2 and rest[0] == "commands"


def _user_filter(principal: Principal, levels: list[str]) -> Decision:
    if len(levels) < 2:
        return DENY
    head, scope = levels[0], levels[1]
    if head == "alerts":
        if not principal.can(Permission.ALERTS_READ):
            return DENY
        if scope in _WILDCARDS:
            return ALLOW if principal.all_fleets else DENY
        return ALLOW if principal.sees(scope) else DENY
    if head == "events":
        # events/{kind}/{vid}/...: the vehicle decides the fleet.
        if principal.all_fleets:
            return ALLOW
        if len(levels) < 3 or scope in _WILDCARDS or levels[2] in _WILDCARDS:
            return DENY
        return Decision(Verdict.VEHICLE_FLEET, levels[2])
    if head == "vehicles":
        if not principal.can(Permission.TWINS_READ):
            return DENY
        if principal.all_fleets:
            return ALLOW
        if scope in _WILDCARDS or not topics.is_vehicle_id(scope):
            return DENY
        return Decision(Verdict.VEHICLE_FLEET, scope)
    return DENY

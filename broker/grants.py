"""The topic ACL written out as lists of topic filters, for brokers that take lists.

EMQX (an `acl` in the authentication answer) and Mosquitto (`acl_file`) want what a
client may publish and subscribe to as filters, not a function. The filters here are
not a second copy of the rules: each one is a candidate taken from the topic contract
(`broker.contract`) and kept only if `broker.acl` allows it, so a change to the rules
changes the lists.

A vehicle's list is complete: its own uplink topics to publish, everything below
`vehicles/{vid}/` to subscribe to (the embedded broker allows any wildcard filter there,
and an exact subscription below its own prefix shows it nothing a wildcard would not).
A user of every fleet gets whole trees (`alerts/#`, `events/#`, `vehicles/#`). A user of
some fleets gets `alerts/{fleet}/#` for each; what they may see of vehicles depends on
each vehicle's fleet, so their list is complete only when given the vehicles
(`vehicle_fleets`), else a broker must ask (`broker.external_auth`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from broker import acl, topics
from broker.contract import CONTRACT
from security import ALL_FLEETS, Principal, PrincipalKind

Action = Literal["publish", "subscribe"]

# Stands in for a command id when a contract row is checked against the rules.
_SAMPLE_ID = "cmd-1"


@dataclass(frozen=True, slots=True)
class Grant:
    action: Action
    topic_filter: str


@dataclass(frozen=True, slots=True)
class Grants:
    grants: tuple[Grant, ...]
    # True when the grants are all the principal may do, so a broker may deny everything else.
    complete: bool


def grants_of(principal: Principal, vehicle_fleets: Mapping[str, str] | None = None) -> Grants:
    """What `principal` may do as filters; `vehicle_fleets` (vehicle id -> fleet) completes a user's list."""
    if principal.kind is PrincipalKind.VEHICLE:
        return Grants(_vehicle(principal), complete=True)
    if principal.kind is PrincipalKind.USER:
        return _user(principal, vehicle_fleets)
    return Grants((Grant("publish", "#"), Grant("subscribe", "#")), complete=True)


def _rows(direction: str) -> list[str]:
    return [spec.pattern for spec in CONTRACT if spec.direction == direction]


def _vehicle(principal: Principal) -> tuple[Grant, ...]:
    vid = principal.name
    out: list[Grant] = []
    for pattern in _rows("vehicle → hub"):
        sample = pattern.format(vid=vid, command_id=_SAMPLE_ID)
        if acl.may_publish(principal, topics.parse(sample)):
            out.append(Grant("publish", pattern.format(vid=vid, command_id="+")))
    below = f"vehicles/{vid}/#"
    if acl.may_subscribe(principal, below).verdict is acl.Verdict.ALLOW:
        out.append(Grant("subscribe", below))
    return tuple(out)


def _user(principal: Principal, vehicle_fleets: Mapping[str, str] | None) -> Grants:
    out: list[Grant] = []

    def offer(topic_filter: str, fleet_of_vehicle: str | None = None) -> None:
        decision = acl.may_subscribe(principal, topic_filter)
        allowed = decision.verdict is acl.Verdict.ALLOW or (
            decision.verdict is acl.Verdict.VEHICLE_FLEET and principal.sees(fleet_of_vehicle)
        )
        if allowed:
            out.append(Grant("subscribe", topic_filter))

    for tree in ("alerts/#", "events/#", "vehicles/#"):
        offer(tree)
    if principal.all_fleets:
        return Grants(tuple(out), complete=True)
    for fleet in sorted(principal.fleets - {ALL_FLEETS}):
        offer(f"alerts/{fleet}/#")
    if vehicle_fleets is None:
        return Grants(tuple(out), complete=False)
    # Per vehicle of the user's fleets: its own topics, and each kind of event about it.
    event_rows = [p.split("/{vid}/")[0] for p in _rows("hub → subscribers")]
    for vid, fleet in sorted(vehicle_fleets.items()):
        if not principal.sees(fleet):
            continue
        offer(f"vehicles/{vid}/#", fleet)
        for prefix in event_rows:
            offer(f"{prefix}/{vid}/#", fleet)
    return Grants(tuple(out), complete=True)

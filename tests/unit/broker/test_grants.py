"""The grant lists (EMQX's `acl`, Mosquitto's acl_file) decide as the embedded broker's rules do.

A list is read the way EMQX and Mosquitto read theirs: a publish is allowed when a publish
grant's filter matches the topic, a subscription when a subscribe grant's filter matches
the subscribed filter (its wildcards taken literally).
"""

from __future__ import annotations

import itertools

import pytest

from broker import acl, grants_of, topics
from security import Principal, Role

FLEETS = {"car-a": "a", "car-b": "b"}

PRINCIPALS = [
    Principal.vehicle("car-a", "a"),
    Principal.user("viewer-a", Role.VIEWER, ("a",)),
    Principal.user("maint-ab", Role.MAINTENANCE, ("a", "b")),
    Principal.user("root", Role.ADMIN, ("*",)),
]

_VEHICLE_RESTS = [
    "telemetry",
    "twin/get",
    "twin/rejected",
    "commands/c1/result",
    "twin/delta",
    "twin/doc",
    "errors",
    "commands/c1",
    "other",
]
TOPICS = [
    *(f"vehicles/{v}/{rest}" for v, rest in itertools.product(FLEETS, _VEHICLE_RESTS)),
    *(f"alerts/{f}/high/r1/car" for f in ("a", "b")),
    *(f"events/commands/{v}/c1" for v in FLEETS),
    "elsewhere/x",
]
FILTERS = [
    *TOPICS,
    *(
        pattern.format(v=v)
        for v in FLEETS
        for pattern in (
            "vehicles/{v}/#",
            "vehicles/{v}/+/delta",
            "vehicles/{v}/commands/+",
            "events/commands/{v}/#",
            "events/+/{v}/#",
            "vehicles/{v}",
        )
    ),
    "vehicles/+/telemetry",
    "vehicles/#",
    "alerts/#",
    "alerts/a/#",
    "alerts/b",
    "events/#",
    "#",
]


def matches(rule: str, topic: str) -> bool:
    """MQTT filter matching; `#` also matches its parent level."""
    rule_levels, levels = rule.split("/"), topic.split("/")
    for i, word in enumerate(rule_levels):
        if word == "#":
            return True
        if i >= len(levels) or (word != "+" and word != levels[i]):
            return False
    return len(rule_levels) == len(levels)


def embedded_subscribe(principal: Principal, topic_filter: str) -> bool:
    decision = acl.may_subscribe(principal, topic_filter)
    if decision.verdict is acl.Verdict.VEHICLE_FLEET:
        return principal.sees(FLEETS.get(decision.vehicle_id))
    return decision.verdict is acl.Verdict.ALLOW


def own_exact_topic(principal: Principal, topic_filter: str) -> bool:
    """The one intended difference: a vehicle's list lets it subscribe to any topic at or below its own
    prefix (the embedded broker takes only wildcards and its downlink topics there), which shows it
    nothing a wildcard it may use would not."""
    own = f"vehicles/{principal.name}"
    return principal.kind.value == "vehicle" and (topic_filter == own or topic_filter.startswith(own + "/"))


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.name)
def test_publish_grants_match_the_rules(principal: Principal) -> None:
    grants = grants_of(principal, FLEETS)
    assert grants.complete
    publish = [g.topic_filter for g in grants.grants if g.action == "publish"]
    for topic in TOPICS:
        listed = any(matches(rule, topic) for rule in publish)
        assert listed is acl.may_publish(principal, topics.parse(topic)), topic


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.name)
def test_subscribe_grants_match_the_rules(principal: Principal) -> None:
    grants = grants_of(principal, FLEETS)
    subscribe = [g.topic_filter for g in grants.grants if g.action == "subscribe"]
    compared = 0
    for topic_filter in FILTERS:
        listed = any(matches(rule, topic_filter) for rule in subscribe)
        if listed and own_exact_topic(principal, topic_filter):
            continue
        compared += 1
        assert listed is embedded_subscribe(principal, topic_filter), topic_filter
    assert compared > len(FILTERS) // 2


def test_a_fleet_users_list_without_the_vehicles_is_incomplete() -> None:
    grants = grants_of(Principal.user("viewer-a", Role.VIEWER, ("a",)))
    assert not grants.complete
    assert [g.topic_filter for g in grants.grants] == ["alerts/a/#"]
    # Positive control: given the vehicles, it lists fleet a's and only those.
    full = grants_of(Principal.user("viewer-a", Role.VIEWER, ("a",)), FLEETS)
    assert [g.topic_filter for g in full.grants] == ["alerts/a/#", "vehicles/car-a/#", "events/commands/car-a/#"]

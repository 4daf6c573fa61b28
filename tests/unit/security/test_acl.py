import pytest

from broker import acl, topics
from security import Permission, Principal, Role

VEH = Principal.vehicle("veh-a", "acme")
MAINT = Principal.user("maria", Role.MAINTENANCE, ("acme",))
ADMIN = Principal.user("root", Role.ADMIN, ("*",))


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("vehicles/veh-a/telemetry", True),
        ("vehicles/veh-a/twin/get", True),
        ("vehicles/veh-a/twin/rejected", True),
        ("vehicles/veh-a/commands/c1/result", True),
        ("vehicles/veh-b/telemetry", False),
        ("vehicles/veh-a/twin/delta", False),
        ("vehicles/veh-a/errors", False),
        ("vehicles/veh-a/other", False),
        ("alerts/acme/critical/r/veh-a", False),
        ("anything", False),
    ],
)
def test_vehicle_publishes_only_its_own_up_topics(topic: str, allowed: bool) -> None:
    """A vehicle publishes only the contract's up topics under its own id."""
    assert acl.may_publish(VEH, topics.parse(topic)) is allowed


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("vehicles/veh-a/twin/delta", True),
        ("vehicles/veh-a/twin/doc", True),
        ("vehicles/veh-a/errors", True),
        ("vehicles/veh-a/commands/+", True),
        ("vehicles/veh-a/commands/c1", True),
        ("vehicles/veh-a/#", True),
        ("vehicles/veh-b/#", False),
        ("vehicles/+/telemetry", False),
        ("vehicles/#", False),
        ("#", False),
        ("alerts/#", False),
        ("vehicles/veh-a/telemetry/x", False),
    ],
)
def test_vehicle_subscribes_only_under_its_own_id(topic_filter: str, allowed: bool) -> None:
    """A vehicle subscribes only to its own down topics, wildcards only below its own prefix."""
    verdict = acl.may_subscribe(VEH, topic_filter).verdict
    assert (verdict is acl.Verdict.ALLOW) is allowed


@pytest.mark.parametrize(
    ("principal", "topic_filter", "expected"),
    [
        (MAINT, "alerts/acme/#", acl.Verdict.ALLOW),
        (MAINT, "alerts/globex/#", acl.Verdict.DENY),
        (MAINT, "alerts/+/critical/#", acl.Verdict.DENY),
        (MAINT, "alerts/#", acl.Verdict.DENY),
        (MAINT, "events/commands/veh-a/#", acl.Verdict.VEHICLE_FLEET),
        (MAINT, "events/#", acl.Verdict.DENY),
        (MAINT, "vehicles/veh-a/telemetry", acl.Verdict.VEHICLE_FLEET),
        (MAINT, "vehicles/+/telemetry", acl.Verdict.DENY),
        (MAINT, "#", acl.Verdict.DENY),
        (ADMIN, "alerts/#", acl.Verdict.ALLOW),
        (ADMIN, "events/#", acl.Verdict.ALLOW),
        (ADMIN, "vehicles/+/telemetry", acl.Verdict.ALLOW),
        # Broker statistics are for administrators of every fleet.
        (ADMIN, "$SYS/#", acl.Verdict.ALLOW),
        (MAINT, "$SYS/broker/uptime", acl.Verdict.DENY),
    ],
)
def test_users_subscribe_within_their_fleets(principal: Principal, topic_filter: str, expected: acl.Verdict) -> None:
    """Users read alerts and events of their fleets only; wildcards across fleets need every fleet."""
    assert acl.may_subscribe(principal, topic_filter).verdict is expected


def test_users_never_publish_and_dev_does_anything() -> None:
    """Users only listen; the development principal is unrestricted."""
    assert not acl.may_publish(ADMIN, topics.parse("vehicles/veh-a/telemetry"))
    assert acl.may_publish(Principal.dev(), topics.parse("vehicles/veh-a/telemetry"))
    assert acl.may_subscribe(Principal.dev(), "#") is acl.ALLOW


def test_roles_grant_what_the_table_says() -> None:
    """viewer reads; maintenance also acks alerts; operator also writes desired and sends commands; admin all."""
    viewer = Principal.user("v", Role.VIEWER, ("acme",))
    operator = Principal.user("o", Role.OPERATOR, ("acme",))
    assert viewer.can(Permission.TWINS_READ)
    assert not viewer.can(Permission.TWINS_WRITE)
    assert not viewer.can(Permission.COMMANDS_SEND)
    assert not viewer.can(Permission.ALERTS_ACK)
    assert MAINT.can(Permission.ALERTS_ACK)
    assert not MAINT.can(Permission.TWINS_WRITE)
    assert operator.can(Permission.TWINS_WRITE)
    assert operator.can(Permission.COMMANDS_SEND)
    assert not operator.can(Permission.ALERTS_ACK)
    assert not operator.can(Permission.AUDIT_READ)
    assert all(ADMIN.can(p) for p in Permission)

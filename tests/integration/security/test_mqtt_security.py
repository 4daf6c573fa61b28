"""The secure broker end to end: real paho clients against a hub with its default (secure) settings."""

import asyncio
import uuid

import pytest

from security import CLI, Role
from tests.helpers import eventually
from tests.integration.security.client import REFUSED
from tests.integration.security.conftest import metric, secure_settings

# paho reports MQTT 3.1.1 CONNACK codes as MQTT 5 reason codes: 5 -> 135, 4 -> 134.
NOT_AUTHORIZED = 135
BAD_CREDENTIALS = 134


def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


async def soc_is(hub, vehicle_id: str, soc: float) -> bool:
    entry = (await hub.service.get_twin(vehicle_id)).reported.get("soc")
    return entry == soc


async def provision(hub, fleet: str = "acme") -> tuple[str, str]:
    made = await hub.security.provision(vid(), fleet, actor=CLI)
    return made.vehicle_id, made.secret


async def test_anonymous_is_refused_by_default(hub, clients) -> None:
    """With no settings, a client without credentials gets CONNACK 'not authorised' and is counted."""
    assert await clients().connect() in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    assert await clients(username="nobody").connect() in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    assert metric(hub.registry, "fleethub_mqtt_logins_refused_total", reason="anonymous") == 2


async def test_vehicle_logs_in_with_its_secret_only(hub, clients) -> None:
    """username = vehicle id and its secret connect; a wrong secret or another vehicle's secret is refused."""
    a, secret_a = await provision(hub)
    b, secret_b = await provision(hub)
    assert await clients(a, username=a, password="wrong").connect() != 0
    assert await clients(a, username=a, password=secret_b).connect() != 0
    assert await clients(a, username=a, password=secret_a).connect() == 0
    assert await clients(b, username=b, password=secret_b).connect() == 0
    assert metric(hub.registry, "fleethub_mqtt_logins_refused_total", reason="bad_credentials") == 2


async def test_vehicle_cannot_use_another_vehicles_client_id(hub, clients) -> None:
    """Valid credentials with another vehicle's client id are refused: no session take-over across vehicles."""
    a, secret_a = await provision(hub)
    b, secret_b = await provision(hub)
    victim = clients(b, username=b, password=secret_b)
    assert await victim.connect() == 0
    assert await clients(b, username=a, password=secret_a).connect() != 0
    assert not victim.disconnected.is_set()


@pytest.mark.parametrize("clean", [True, False])
async def test_refused_login_leaves_the_victims_session_alone(hub, clients, clean) -> None:
    """A refused CONNECT with a connected vehicle's client id neither closes it nor touches its session."""
    a, secret = await provision(hub)
    victim = clients(a, username=a, password=secret, clean_session=False)
    assert await victim.connect() == 0
    assert await victim.subscribe(f"vehicles/{a}/twin/delta") == 1
    for attacker in (clients(a, clean_session=clean), clients(a, username=a, password="guess", clean_session=clean)):
        assert await attacker.connect() != 0
    await asyncio.sleep(0.3)
    assert not victim.disconnected.is_set()
    await hub.service.patch_desired(a, {"charge_limit": 70})
    topic, _ = await victim.next_message()
    assert topic == f"vehicles/{a}/twin/delta"


async def test_another_user_reusing_a_client_id_does_not_inherit_its_session(hub, clients) -> None:
    """A persistent session belongs to the identity that made it: another user with its client id starts afresh."""
    await hub.security.add_user("ann", Role.ADMIN, ("*",), actor=CLI, password="pw-ann-1")
    await hub.security.add_user("ben", Role.VIEWER, ("acme",), actor=CLI, password="pw-ben-1")
    ann = clients("shared-dashboard", username="ann", password="pw-ann-1", clean_session=False)
    assert await ann.connect() == 0
    assert await ann.subscribe("alerts/#") == 1
    ann.close()
    ben = clients("shared-dashboard", username="ben", password="pw-ben-1", clean_session=False)
    assert await ben.connect() == 0
    await hub.broker.publish("alerts/globex/critical/hot/veh-z", b"{}")
    await asyncio.sleep(0.3)
    assert ben.messages.empty()


async def test_vehicle_cannot_publish_as_another(hub, clients) -> None:
    """A publishing on B's telemetry is dropped and counted; B's twin never sees it; A's own data goes in."""
    a, secret_a = await provision(hub)
    b, _ = await provision(hub)
    car = clients(a, username=a, password=secret_a)
    assert await car.connect() == 0
    await car.subscribe(f"vehicles/{a}/errors")
    await car.publish(f"vehicles/{b}/telemetry", {"soc": 1})
    await car.publish(f"vehicles/{a}/telemetry", {"soc": 50})
    topic, body = await car.next_message()
    assert topic == f"vehicles/{a}/errors"
    assert b'"not_authorized"' in body
    await eventually(lambda: soc_is(hub, a, 50))
    assert "soc" not in (await hub.service.get_twin(b)).reported
    assert metric(hub.registry, "fleethub_mqtt_acl_denied_total", action="publish") == 1
    assert metric(hub.registry, "fleethub_mqtt_messages_refused_total", reason="not_authorized") == 1


async def test_vehicle_cannot_subscribe_to_another(hub, clients) -> None:
    """A subscribing to B's topics gets SUBACK 0x80; its own delta is granted."""
    a, secret_a = await provision(hub)
    b, _ = await provision(hub)
    car = clients(a, username=a, password=secret_a)
    assert await car.connect() == 0
    assert await car.subscribe(f"vehicles/{b}/#") == REFUSED
    assert await car.subscribe("vehicles/+/telemetry") == REFUSED
    assert await car.subscribe("#") == REFUSED
    assert await car.subscribe(f"vehicles/{a}/twin/delta") == 1
    assert metric(hub.registry, "fleethub_mqtt_acl_denied_total", action="subscribe") == 3


async def test_maintenance_user_sees_only_its_fleets_alerts(hub, clients) -> None:
    """A maintenance user of acme subscribes to alerts/acme/# (with a token) but not alerts/globex/#."""
    await hub.security.add_user("maria", Role.MAINTENANCE, ("acme",), actor=CLI, password="pw-maria-1")
    token = (await hub.security.issue_token("maria", actor=CLI)).secret
    by_token = clients(username="maria", password=token)
    assert await by_token.connect() == 0
    assert await by_token.subscribe("alerts/acme/#") == 1
    assert await by_token.subscribe("alerts/globex/#") == REFUSED
    assert await by_token.subscribe("alerts/#") == REFUSED
    by_password = clients(username="maria", password="pw-maria-1")
    assert await by_password.connect() == 0
    await hub.broker.publish("alerts/globex/critical/hot/veh-x", b'{"fleet":"globex"}')
    await hub.broker.publish("alerts/acme/critical/hot/veh-y", b'{"fleet":"acme"}')
    topic, _ = await by_token.next_message()
    assert topic == "alerts/acme/critical/hot/veh-y"
    assert by_token.messages.empty()


async def test_user_reads_events_of_its_fleets_vehicles_only(hub, clients) -> None:
    """events/commands/{vid}/... is granted for a vehicle of the user's fleet, refused for another fleet's."""
    mine, _ = await provision(hub, "acme")
    theirs, _ = await provision(hub, "globex")
    token = (await hub.security.add_user("olga", Role.OPERATOR, ("acme",), actor=CLI)).name
    secret = (await hub.security.issue_token(token, actor=CLI)).secret
    user = clients(username="olga", password=secret)
    assert await user.connect() == 0
    assert await user.subscribe(f"events/commands/{mine}/#") == 1
    assert await user.subscribe(f"events/commands/{theirs}/#") == REFUSED
    assert await user.subscribe(f"vehicles/{mine}/telemetry") == 1
    assert await user.subscribe(f"vehicles/{theirs}/telemetry") == REFUSED


async def test_revoked_vehicle_is_disconnected_at_once_and_refused(hub, clients) -> None:
    """Revoking closes the vehicle's connection now; its secret no longer logs in; a rotation lets it back."""
    a, secret = await provision(hub)
    car = clients(a, username=a, password=secret)
    assert await car.connect() == 0
    await hub.security.revoke(a, actor=CLI)
    assert await car.wait_disconnected(5)
    assert await clients(a, username=a, password=secret).connect() != 0
    twin = await hub.service.get_twin(a)
    assert twin.connection.disconnect_reason == "revoked"
    fresh = (await hub.security.rotate(a, actor=CLI)).secret
    assert await clients(a, username=a, password=fresh).connect() == 0


async def test_repeated_bad_logins_back_off(tmp_path, clients) -> None:
    """After the free failures, further attempts are refused unchecked (even the right secret) for a while."""
    from fleethub.hub import Hub

    settings = secure_settings(
        str(tmp_path / "b.db"),
        **{"abuse.login_failures_before_backoff": 2, "abuse.login_backoff_base_s": 30.0},
    )
    async with Hub(settings) as hub:
        a, secret = await provision(hub)
        for _ in range(3):
            assert await clients(a, port=hub.mqtt_port, username=a, password="guess").connect() != 0
        assert await clients(a, port=hub.mqtt_port, username=a, password=secret).connect() != 0
        assert metric(hub.registry, "fleethub_mqtt_logins_refused_total", reason="backoff") == 1


async def test_message_rate_limit_drops_and_counts_but_hub_stays_up(tmp_path, clients) -> None:
    """A vehicle over its message rate has the excess dropped and counted; it and others keep working."""
    from fleethub.hub import Hub

    settings = secure_settings(str(tmp_path / "r.db"), **{"abuse.message_rate_per_s": 1.0, "abuse.message_burst": 5})
    async with Hub(settings) as hub:
        a, secret = await provision(hub)
        car = clients(a, port=hub.mqtt_port, username=a, password=secret)
        assert await car.connect() == 0
        for i in range(20):
            await car.publish(f"vehicles/{a}/telemetry", {"seq": i, "soc": i})
        dropped = metric(hub.registry, "fleethub_mqtt_limit_violations_total", limit="message_rate")
        assert dropped >= 10
        assert metric(hub.registry, "fleethub_mqtt_messages_refused_total", reason="rate_limited") == dropped
        assert not car.disconnected.is_set()
        b, secret_b = await provision(hub)
        other = clients(b, port=hub.mqtt_port, username=b, password=secret_b)
        assert await other.connect() == 0
        await other.publish(f"vehicles/{b}/telemetry", {"soc": 7})
        await eventually(lambda: soc_is(hub, b, 7))
        assert (await hub.health()).status == "ok"


async def test_subscriptions_per_client_are_capped(tmp_path, clients) -> None:
    """Beyond abuse.max_subscriptions_per_client a new filter is refused (0x80); re-subscribing is fine."""
    from fleethub.hub import Hub

    async with Hub(secure_settings(str(tmp_path / "s.db"), **{"abuse.max_subscriptions_per_client": 2})) as hub:
        a, secret = await provision(hub)
        car = clients(a, port=hub.mqtt_port, username=a, password=secret)
        assert await car.connect() == 0
        assert await car.subscribe(f"vehicles/{a}/twin/delta") == 1
        assert await car.subscribe(f"vehicles/{a}/errors") == 1
        assert await car.subscribe(f"vehicles/{a}/twin/doc") == REFUSED
        assert await car.subscribe(f"vehicles/{a}/errors", qos=0) == 0
        assert metric(hub.registry, "fleethub_mqtt_limit_violations_total", limit="subscriptions") == 1


async def test_connection_attempts_per_client_are_rate_limited(tmp_path, clients) -> None:
    """A client id reconnecting faster than allowed is refused and counted."""
    from fleethub.hub import Hub

    settings = secure_settings(
        str(tmp_path / "c.db"),
        **{"abuse.connect_rate_per_client_per_s": 0.01, "abuse.connect_burst_per_client": 2},
    )
    async with Hub(settings) as hub:
        a, secret = await provision(hub)
        results = []
        for _ in range(3):
            c = clients(a, port=hub.mqtt_port, username=a, password=secret)
            results.append(await c.connect())
            c.close()
            await asyncio.sleep(0.05)
        assert results[:2] == [0, 0]
        assert results[2] != 0
        assert metric(hub.registry, "fleethub_mqtt_limit_violations_total", limit="connect_rate_client") == 1


@pytest.mark.parametrize("secret_kind", ["wrong", "none"])
async def test_dev_mode_admits_anonymous_but_still_checks_given_secrets(tmp_path, clients, secret_kind) -> None:
    """With mqtt.allow_anonymous a client without a password gets in; a provisioned vehicle's wrong secret does not."""
    from fleethub.hub import Hub

    async with Hub(secure_settings(str(tmp_path / "d.db"), **{"mqtt.allow_anonymous": True})) as hub:
        a, _ = await provision(hub)
        if secret_kind == "none":
            assert await clients(a, port=hub.mqtt_port).connect() == 0
        else:
            assert await clients(a, port=hub.mqtt_port, username=a, password="wrong").connect() != 0


async def test_connection_attempts_per_ip_are_rate_limited(tmp_path, clients) -> None:
    """Many CONNECTs from one address, whatever their client ids, are refused beyond the burst and counted."""
    from fleethub.hub import Hub

    settings = secure_settings(
        str(tmp_path / "ip.db"),
        **{"abuse.connect_rate_per_ip_per_s": 0.01, "abuse.connect_burst_per_ip": 3},
    )
    async with Hub(settings) as hub:
        vehicles = [await provision(hub) for _ in range(4)]
        results = []
        for vehicle_id, secret in vehicles:
            c = clients(vehicle_id, port=hub.mqtt_port, username=vehicle_id, password=secret)
            results.append(await c.connect())
        assert results[:3] == [0, 0, 0]
        assert results[3] != 0
        assert metric(hub.registry, "fleethub_mqtt_limit_violations_total", limit="connect_rate_ip") == 1
        assert (await hub.health()).status == "ok"

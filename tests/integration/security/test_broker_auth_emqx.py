"""EMQX 5's HTTP authentication and authorization against a real hub's /broker-auth endpoints.

EMQX is not installed here; the requests are the shapes its documentation gives for an
HTTP authenticator and authorizer configured as docs/external-brokers.md says (JSON bodies
of `${username}`, `${password}`, `${clientid}`, `${peerhost}`, `${topic}`, `${action}`),
and the answers are checked against what EMQX reads: `result`, `is_superuser` and the
5.8 `acl` list (`permission`, `action`, `topic`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fleethub.hub import Hub
from security import CLI, Role
from tests.integration.security.conftest import metric, secure_settings

SECRET = "s" * 40
BASIC = httpx.BasicAuth("emqx", SECRET)


@pytest.fixture
async def hub(tmp_path) -> AsyncIterator[Hub]:
    settings = secure_settings(
        str(tmp_path / "hub.db"),
        **{
            "auth.broker_secret": SECRET,
            # After one free failure per key, wait a minute: the back-off test needs no sleeping.
            "abuse.login_failures_before_backoff": 1,
            "abuse.login_backoff_base_s": 60.0,
        },
    )
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def fleet(hub: Hub) -> dict[str, str]:
    """Two vehicles in fleets a and b, a viewer of fleet a with a password, an admin of every fleet."""
    secrets = {
        "car-a": (await hub.security.provision("car-a", "a", actor=CLI)).secret,
        "car-b": (await hub.security.provision("car-b", "b", actor=CLI)).secret,
    }
    await hub.security.add_user("ana", Role.VIEWER, ("a",), actor=CLI, password="ana-password-1")
    await hub.security.add_user("root", Role.ADMIN, ("*",), actor=CLI)
    secrets["root"] = (await hub.security.issue_token("root", actor=CLI)).secret
    return secrets


@pytest.fixture
async def http(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=30, auth=BASIC) as client:
        yield client


async def authn(http: httpx.AsyncClient, username: str, password: str, clientid: str, peer: str = "10.0.0.1") -> Any:
    # EMQX: body = {username = "${username}", password = "${password}", clientid = "${clientid}", peerhost = ...}
    body = {"username": username, "password": password, "clientid": clientid, "peerhost": peer}
    response = await http.post("/broker-auth/emqx/authn", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


async def authz(http: httpx.AsyncClient, username: str, clientid: str, action: str, topic: str) -> str:
    body = {"username": username, "clientid": clientid, "action": action, "topic": topic, "peerhost": "10.0.0.1"}
    # Other placeholders an operator may add to the template are ignored.
    body |= {"qos": "1", "retain": "false", "proto_name": "MQTT", "mountpoint": ""}
    response = await http.post("/broker-auth/emqx/authz", json=body)
    assert response.status_code == 200, response.text
    result: str = response.json()["result"]
    return result


async def test_only_the_broker_with_the_secret_is_answered(hub: Hub, fleet: dict[str, str]) -> None:
    body = {"username": "car-a", "password": fleet["car-a"], "clientid": "car-a", "peerhost": "10.0.0.1"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=30) as anonymous:
        assert (await anonymous.post("/broker-auth/emqx/authn", json=body)).status_code == 401
        wrong = httpx.BasicAuth("emqx", "x" * 40)
        assert (await anonymous.post("/broker-auth/emqx/authn", json=body, auth=wrong)).status_code == 401
        # An API token is not the broker's secret.
        bearer = {"Authorization": f"Bearer {fleet['root']}"}
        assert (await anonymous.post("/broker-auth/emqx/authn", json=body, headers=bearer)).status_code == 401
        # Positive control: the secret as a bearer token works as well as basic auth.
        ok = await anonymous.post("/broker-auth/emqx/authn", json=body, headers={"Authorization": f"Bearer {SECRET}"})
        assert ok.status_code == 200
        assert ok.json()["result"] == "allow"


async def test_off_without_a_secret(tmp_path) -> None:
    async with (
        Hub(secure_settings(str(tmp_path / "off.db"))) as off,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{off.http_port}", timeout=30, auth=BASIC) as client,
    ):
        response = await client.post("/broker-auth/emqx/authn", json={"username": "x", "password": "y"})
        assert response.status_code == 404
        assert (await client.get("/healthz")).status_code == 200


async def test_a_vehicle_logs_in_with_its_secret_and_gets_its_acl(http: httpx.AsyncClient, fleet) -> None:
    answer = await authn(http, "car-a", fleet["car-a"], "car-a")
    assert answer["result"] == "allow"
    assert answer["is_superuser"] is False
    assert answer["acl"] == [
        {"permission": "allow", "action": "publish", "topic": "vehicles/car-a/telemetry"},
        {"permission": "allow", "action": "publish", "topic": "vehicles/car-a/twin/get"},
        {"permission": "allow", "action": "publish", "topic": "vehicles/car-a/twin/rejected"},
        {"permission": "allow", "action": "publish", "topic": "vehicles/car-a/commands/+/result"},
        {"permission": "allow", "action": "subscribe", "topic": "vehicles/car-a/#"},
        # Complete: EMQX need not ask the authorizer about anything else.
        {"permission": "deny", "action": "all", "topic": "#"},
    ]


async def test_refused_logins(http: httpx.AsyncClient, hub: Hub, fleet) -> None:
    # Another vehicle's secret, an unknown name, no password, another vehicle's client id.
    assert (await authn(http, "car-a", fleet["car-b"], "car-a", peer="10.0.0.2"))["result"] == "deny"
    assert (await authn(http, "nobody", "whatever", "nobody", peer="10.0.0.3"))["result"] == "deny"
    assert (await authn(http, "car-a", "", "car-a", peer="10.0.0.4"))["result"] == "deny"
    assert (await authn(http, "car-a", fleet["car-a"], "car-b", peer="10.0.0.5"))["result"] == "deny"
    # A user may not take a vehicle's client id either.
    assert (await authn(http, "ana", "ana-password-1", "car-a", peer="10.0.0.6"))["result"] == "deny"
    await hub.security.revoke("car-b", actor=CLI)
    assert (await authn(http, "car-b", fleet["car-b"], "car-b", peer="10.0.0.7"))["result"] == "deny"
    assert metric(hub.registry, "fleethub_broker_auth_logins_total", outcome="bad_credentials") == 3
    assert metric(hub.registry, "fleethub_broker_auth_logins_total", outcome="client_id") == 2
    assert metric(hub.registry, "fleethub_broker_auth_logins_total", outcome="anonymous") == 1


async def test_users_log_in_by_password_or_token(http: httpx.AsyncClient, hub: Hub, fleet) -> None:
    root = await authn(http, "root", fleet["root"], "dashboard-1")
    assert root["result"] == "allow"
    # Logged in by API token: EMQX disconnects the client when the token expires.
    (token,) = await hub.security.tokens("root")
    assert root["expire_at"] == int(token.expires_at)
    assert root["acl"] == [
        {"permission": "allow", "action": "subscribe", "topic": "alerts/#"},
        {"permission": "allow", "action": "subscribe", "topic": "events/#"},
        {"permission": "allow", "action": "subscribe", "topic": "vehicles/#"},
        {"permission": "deny", "action": "all", "topic": "#"},
    ]
    ana = await authn(http, "ana", "ana-password-1", "ana-laptop")
    assert ana["result"] == "allow"
    assert "expire_at" not in ana
    # Which vehicles she sees depends on their fleets now: only publishing is closed, the rest is asked.
    assert ana["acl"] == [
        {"permission": "allow", "action": "subscribe", "topic": "alerts/a/#"},
        {"permission": "deny", "action": "publish", "topic": "#"},
    ]


async def test_authorization_follows_the_embedded_rules(http: httpx.AsyncClient, hub: Hub, fleet) -> None:
    assert await authz(http, "car-a", "car-a", "publish", "vehicles/car-a/telemetry") == "allow"
    assert await authz(http, "car-a", "car-a", "publish", "vehicles/car-a/commands/c1/result") == "allow"
    assert await authz(http, "car-a", "car-a", "subscribe", "vehicles/car-a/commands/+") == "allow"
    # Another vehicle's topics, a downlink topic, and a client id that is not the vehicle's.
    assert await authz(http, "car-a", "car-a", "publish", "vehicles/car-b/telemetry") == "deny"
    assert await authz(http, "car-a", "car-a", "subscribe", "vehicles/car-b/#") == "deny"
    assert await authz(http, "car-a", "car-a", "publish", "vehicles/car-a/twin/delta") == "deny"
    assert await authz(http, "car-a", "other", "publish", "vehicles/car-a/telemetry") == "deny"
    # A viewer of fleet a: vehicles of a yes, of b no; never publishes.
    assert await authz(http, "ana", "ana-laptop", "subscribe", "vehicles/car-a/telemetry") == "allow"
    assert await authz(http, "ana", "ana-laptop", "subscribe", "events/commands/car-a/#") == "allow"
    assert await authz(http, "ana", "ana-laptop", "subscribe", "vehicles/car-b/telemetry") == "deny"
    assert await authz(http, "ana", "ana-laptop", "subscribe", "vehicles/+/telemetry") == "deny"
    assert await authz(http, "ana", "ana-laptop", "publish", "vehicles/car-a/telemetry") == "deny"
    assert await authz(http, "root", "dash", "subscribe", "vehicles/+/telemetry") == "allow"
    assert await authz(http, "nobody", "nobody", "subscribe", "alerts/#") == "deny"
    assert await authz(http, "car-a", "car-a", "retain", "vehicles/car-a/telemetry") == "deny"
    # Revoked: nothing more, even on its own topics.
    await hub.security.revoke("car-a", actor=CLI)
    assert await authz(http, "car-a", "car-a", "publish", "vehicles/car-a/telemetry") == "deny"
    assert metric(hub.registry, "fleethub_broker_auth_checks_total", action="publish", result="allow") == 2


async def test_failed_logins_back_off_by_address_and_name(http: httpx.AsyncClient, fleet) -> None:
    for _ in range(2):
        assert (await authn(http, "car-a", "wrong", "car-a", peer="10.9.9.9"))["result"] == "deny"
    # Blocked now, even with the right secret, from that address ...
    assert (await authn(http, "car-a", fleet["car-a"], "car-a", peer="10.9.9.9"))["result"] == "deny"
    # ... but the vehicle itself, from its own address, is not locked out by someone else's guessing.
    assert (await authn(http, "car-a", fleet["car-a"], "car-a", peer="10.1.1.1"))["result"] == "allow"


@pytest.mark.parametrize("body", [b"not json", b'{"username": 5}', b"[]"])
async def test_a_malformed_request_is_refused_alone(http: httpx.AsyncClient, fleet, body: bytes) -> None:
    response = await http.post("/broker-auth/emqx/authn", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    # The next request is answered as usual.
    assert (await authn(http, "car-a", fleet["car-a"], "car-a"))["result"] == "allow"

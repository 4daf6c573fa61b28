"""RabbitMQ 3.10 with its MQTT plugin and `rabbitmq_auth_backend_http` asking a real hub.

A RabbitMQ node of the test's own (ephemeral ports, temporary data directory) sends its
form-encoded user, vhost, resource and topic requests to the hub's /broker-auth/rabbitmq
endpoints; real paho clients connect through its MQTT port.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fleethub.hub import Hub
from security import CLI, Role
from tests.integration.security.client import Client
from tests.integration.security.conftest import metric, secure_settings
from tests.integration.security.external_brokers import rabbitmq

SECRET = "r" * 40


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with Hub(secure_settings(str(tmp_path / "hub.db"), **{"auth.broker_secret": SECRET})) as running:
        yield running


async def rabbit(http: httpx.AsyncClient, path: str, **form: str) -> str:
    response = await http.post(f"/broker-auth/rabbitmq/{path}", data=form)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_recorded_requests_of_rabbitmq_3_10(hub: Hub) -> None:
    """The exact bodies RabbitMQ 3.10.8 sent for an MQTT client (recorded from a node on this machine)."""
    secret = (await hub.security.provision("veh-1", "a", actor=CLI)).secret
    await hub.security.provision("veh-2", "a", actor=CLI)
    base = f"http://127.0.0.1:{hub.http_port}"
    async with httpx.AsyncClient(base_url=base, auth=httpx.BasicAuth("broker", SECRET), timeout=30) as http:
        user = {"username": "veh-1", "vhost": "/", "client_id": "veh-1"}
        assert await rabbit(http, "user", password=secret, **user) == "allow"
        assert await rabbit(http, "user", password="wrong", **user) == "deny"
        assert await rabbit(http, "vhost", ip="127.0.0.1", tags="", **user) == "allow"
        assert await rabbit(http, "vhost", **{**user, "vhost": "other"}) == "deny"
        queue_name = {"resource": "queue", "name": "mqtt-subscription-veh-1qos1", "tags": ""}
        for permission in ("configure", "read", "write"):
            assert await rabbit(http, "resource", permission=permission, **queue_name, **user) == "allow"
        others = {**queue_name, "name": "mqtt-subscription-veh-2qos1"}
        assert await rabbit(http, "resource", permission="read", **others, **user) == "deny"
        exchange = {"resource": "exchange", "name": "amq.topic", "tags": ""}
        assert await rabbit(http, "resource", permission="write", **exchange, **user) == "allow"
        assert await rabbit(http, "resource", permission="configure", **exchange, **user) == "deny"
        # Topic checks name the client id only in the variable map.
        topic = {
            "username": "veh-1",
            "vhost": "/",
            "resource": "topic",
            "name": "amq.topic",
            "tags": "",
            "variable_map.client_id": "veh-1",
            "variable_map.username": "veh-1",
            "variable_map.vhost": "/",
        }
        read = {**topic, "permission": "read"}
        assert await rabbit(http, "topic", routing_key="vehicles.veh-1.commands.*", **read) == "allow"
        assert await rabbit(http, "topic", routing_key="vehicles.veh-2.commands.*", **read) == "deny"
        write = {**topic, "permission": "write"}
        assert await rabbit(http, "topic", routing_key="vehicles.veh-1.telemetry", **write) == "allow"
        assert await rabbit(http, "topic", routing_key="vehicles.veh-2.telemetry", **write) == "deny"
        # The client id must be the vehicle's, at login and after.
        impostor = {**user, "client_id": "veh-2"}
        assert await rabbit(http, "user", password=secret, **impostor) == "deny"
        as_other = {**write, "variable_map.client_id": "veh-2"}
        assert await rabbit(http, "topic", routing_key="vehicles.veh-1.telemetry", **as_other) == "deny"
        # GET with a query works too (auth_http.http_method = get).
        response = await http.get("/broker-auth/rabbitmq/user", params={**user, "password": secret})
        assert response.text == "allow"
    async with httpx.AsyncClient(base_url=base, timeout=30) as anonymous:
        assert (await anonymous.post("/broker-auth/rabbitmq/user", data=user)).status_code == 401


async def test_mqtt_clients_through_a_rabbitmq_node(hub: Hub, tmp_path: Path) -> None:
    car = (await hub.security.provision("car-1", "a", actor=CLI)).secret
    other = (await hub.security.provision("car-2", "b", actor=CLI)).secret
    await hub.security.add_user("ops", Role.ADMIN, ("*",), actor=CLI, password="ops-password-1")
    clients: list[Client] = []

    async def connect(name: str, password: str, client_id: str | None = None) -> tuple[Client, int]:
        client = Client(port, client_id or name, username=name, password=password)
        clients.append(client)
        return client, await client.connect(wait_s=30)

    try:
        with rabbitmq(tmp_path, f"http://127.0.0.1:{hub.http_port}", SECRET) as port:
            ops, rc = await connect("ops", "ops-password-1", "ops-dashboard")
            assert rc == 0
            assert await ops.subscribe("vehicles/+/telemetry") == 1
            vehicle, rc = await connect("car-1", car)
            assert rc == 0
            # Refused logins: a wrong secret, another vehicle's client id, an unknown name.
            assert (await connect("car-1", "wrong"))[1] != 0
            assert (await connect("car-2", other, "car-1"))[1] != 0
            assert (await connect("nobody", "whatever"))[1] != 0

            await vehicle.publish("vehicles/car-1/telemetry", {"soc": 1})
            topic, _ = await ops.next_message(wait_s=30)
            assert topic == "vehicles/car-1/telemetry"

            # Another vehicle's topic: RabbitMQ refuses it (and closes the connection); nothing arrives.
            await vehicle.publish("vehicles/car-2/telemetry", {"soc": 2}, wait_s=5)
            # Positive control: car-2 itself may, and its message is the next the dashboard gets.
            second, rc = await connect("car-2", other)
            assert rc == 0
            await second.publish("vehicles/car-2/telemetry", {"soc": 3})
            topic, payload = await ops.next_message(wait_s=30)
            assert (topic, payload) == ("vehicles/car-2/telemetry", b'{"soc": 3}')
            with pytest.raises(queue.Empty):
                ops.messages.get_nowait()
            # A vehicle may not subscribe to another's commands: RabbitMQ 3.10 closes the connection.
            assert await second.subscribe("vehicles/car-2/commands/+") == 1
            second._client.subscribe("vehicles/car-1/commands/+", 1)
            assert await second.wait_disconnected(30)
            assert metric(hub.registry, "fleethub_broker_auth_checks_total", action="publish", result="deny") >= 1
    finally:
        for client in clients:
            client.close()

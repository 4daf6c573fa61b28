"""One vehicle's commands through every state, over a real broker, real MQTT clients and HTTP."""

import asyncio

import pytest

from tests.helpers import eventually
from tests.integration.commands.conftest import answer, known_offline_vehicle, online_vehicle


async def all_attempts(vehicle) -> list[int]:
    """The attempt numbers of every delivery until none comes for a while."""
    attempts = []
    while True:
        try:
            _, command = await vehicle.next_message("", wait_s=1.5)
        except TimeoutError:
            return attempts
        attempts.append(command["attempt"])


def states(command: dict) -> list[str]:
    return [t["state"] for t in command["history"]]


async def test_unlock_with_wait_returns_the_vehicles_result(hub, http, clients, vid):
    """`?wait=` holds the request until the vehicle answers, and returns 200 with the result and history."""
    vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
    answering = asyncio.ensure_future(answer(vehicle, vid, detail="doors unlocked", result={"doors": "unlocked"}))
    response = await http.post(
        f"/api/v1/vehicles/{vid}/commands",
        params={"wait": "10s"},
        json={"name": "unlock", "args": {"reason": "renter"}, "precondition": "speed == 0 and not ignition"},
        headers={"X-Requested-By": "maria"},
    )
    sent = await answering
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["detail"], body["result"]) == ("succeeded", "doors unlocked", {"doors": "unlocked"})
    assert states(body) == ["queued", "sent", "succeeded"]
    assert all(t["at"].endswith("Z") for t in body["history"])
    assert body["requested_by"] == "maria"
    # The caller's address and port, as the audit log records them.
    assert body["source"].startswith("127.0.0.1:")
    assert response.headers["location"] == f"/api/v1/vehicles/{vid}/commands/{body['id']}"
    assert (sent["name"], sent["args"], sent["attempt"]) == ("unlock", {"reason": "renter"}, 1)
    again = await http.get(response.headers["location"])
    assert again.json() == body


async def test_without_wait_the_answer_is_202_with_the_commands_url(hub, http, clients, vid):
    """Without `wait` the command is accepted at once; its URL shows the state it reaches later."""
    vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
    response = await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "locate"})
    assert response.status_code == 202, response.text
    assert response.json()["state"] in {"queued", "sent"}
    await answer(vehicle, vid, result={"lat": 19.4, "lon": -99.1})

    async def succeeded():
        got = (await http.get(response.headers["location"])).json()
        return got if got["state"] == "succeeded" else None

    assert (await eventually(succeeded))["result"] == {"lat": 19.4, "lon": -99.1}


async def test_offline_vehicle_gets_its_queued_commands_in_order_after_reconnect(hub, http, clients, vid):
    """Commands for an offline vehicle wait as `queued` and go out in creation order when it is back."""
    await known_offline_vehicle(clients, hub, vid)
    ids = []
    for name in ("lock", "honk", "locate"):
        response = await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": name})
        assert response.status_code == 202
        assert response.json()["state"] == "queued"
        ids.append(response.json()["id"])
    await asyncio.sleep(0.5)
    for command_id in ids:
        assert (await http.get(f"/api/v1/vehicles/{vid}/commands/{command_id}")).json()["state"] == "queued"

    vehicle = await clients(hub.mqtt_port, vid).connect()
    await vehicle.subscribe(f"vehicles/{vid}/commands/+")
    received = []
    while len(received) < 3:
        command = await answer(vehicle, vid)
        if command["id"] not in received:
            received.append(command["id"])
    assert received == ids

    async def all_succeeded():
        listed = (await http.get(f"/api/v1/vehicles/{vid}/commands")).json()["items"]
        return [c["state"] for c in listed] == ["succeeded"] * 3

    await eventually(all_succeeded)


async def test_ttl_ends_while_the_vehicle_is_offline(hub, http, clients, vid):
    """A queued command whose TTL runs out is `expired` and never delivered afterwards."""
    await known_offline_vehicle(clients, hub, vid)
    created = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "honk", "ttl_s": 0.4})).json()

    async def expired():
        got = (await http.get(f"/api/v1/vehicles/{vid}/commands/{created['id']}")).json()
        return got if got["state"] == "expired" else None

    got = await eventually(expired)
    assert states(got) == ["queued", "expired"]
    assert got["detail"] == "ttl ended while queued"
    vehicle = await clients(hub.mqtt_port, vid).connect()
    await vehicle.subscribe(f"vehicles/{vid}/commands/+")
    with pytest.raises(TimeoutError):
        await vehicle.next_message("", wait_s=1)


async def test_precondition_that_fails_on_the_twin_is_never_sent(hub, http, clients, vid):
    """`unlock` while the twin says the car is driving ends `precondition_failed` and reaches no vehicle."""
    vehicle = await online_vehicle(clients, hub.mqtt_port, vid, {"speed": 42.0, "ignition": True})
    response = await http.post(
        f"/api/v1/vehicles/{vid}/commands",
        params={"wait": "5s"},
        json={"name": "unlock", "precondition": "speed == 0 and not ignition"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "precondition_failed"
    assert states(body) == ["queued", "precondition_failed"]
    assert "speed == 0 and not ignition" in body["detail"]
    with pytest.raises(TimeoutError):
        await vehicle.next_message("", wait_s=0.5)


async def test_a_bad_precondition_is_422_with_the_caret(hub, http, clients, vid):
    """A precondition that does not compile is refused with the language's line, column and caret."""
    await known_offline_vehicle(clients, hub, vid)
    response = await http.post(
        f"/api/v1/vehicles/{vid}/commands", json={"name": "unlock", "precondition": "speed == 0 and foo(x)"}
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["reason"] == "bad_condition"
    assert "^" in problem["errors"][0]["excerpt"]
    assert problem["errors"][0]["column"] == 16
    listed = (await http.get(f"/api/v1/vehicles/{vid}/commands")).json()["items"]
    assert listed == []


async def test_an_idempotent_repeat_returns_the_same_command(hub, http, clients, vid):
    """The same idempotency key gives back the first command; reusing it for another command is refused."""
    await known_offline_vehicle(clients, hub, vid)
    body = {"name": "immobilize", "args": {"enabled": True}, "idempotency_key": "theft-report-77"}
    first = await http.post(f"/api/v1/vehicles/{vid}/commands", json=body)
    second = await http.post(f"/api/v1/vehicles/{vid}/commands", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replay"] == "true"
    assert len((await http.get(f"/api/v1/vehicles/{vid}/commands")).json()["items"]) == 1
    other = await http.post(f"/api/v1/vehicles/{vid}/commands", json={**body, "args": {"enabled": False}})
    assert other.status_code == 422
    assert other.json()["reason"] == "idempotency_key_reused"


async def test_cancel_a_queued_command(hub, http, clients, vid):
    """DELETE cancels a waiting command (which is then never sent); a second DELETE is a 409."""
    await known_offline_vehicle(clients, hub, vid)
    created = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "lock"})).json()
    url = f"/api/v1/vehicles/{vid}/commands/{created['id']}"
    cancelled = await http.delete(url, headers={"X-Requested-By": "ops"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["detail"] == "cancelled by ops"
    assert (await http.delete(url)).status_code == 409
    vehicle = await clients(hub.mqtt_port, vid).connect()
    await vehicle.subscribe(f"vehicles/{vid}/commands/+")
    with pytest.raises(TimeoutError):
        await vehicle.next_message("", wait_s=0.7)


async def test_the_vehicle_rejects_and_fails(hub, http, clients, vid):
    """`rejected` and `failed` answers are stored with the vehicle's reason."""
    vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
    for status in ("rejected", "failed"):
        answering = asyncio.ensure_future(answer(vehicle, vid, status, detail=f"{status} on purpose"))
        response = await http.post(f"/api/v1/vehicles/{vid}/commands", params={"wait": "10"}, json={"name": "unlock"})
        await answering
        assert (response.json()["state"], response.json()["detail"]) == (status, f"{status} on purpose")


async def test_a_sent_command_without_a_result_is_resent_until_it_expires(hub, http, clients, vid):
    """Resent every `commands.resend_interval_s` with a growing attempt count, then `expired`."""
    vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
    created = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "honk", "ttl_s": 1.6})).json()
    attempts = await all_attempts(vehicle)
    assert attempts[:3] == [1, 2, 3]
    got = (await http.get(f"/api/v1/vehicles/{vid}/commands/{created['id']}")).json()
    assert got["state"] == "expired"
    assert got["detail"] == "ttl ended before the vehicle answered"
    assert got["attempts"] == attempts[-1]


async def test_every_state_change_is_an_event(hub, http, clients, vid):
    """`events/commands/{vid}/{id}` carries queued, sent and succeeded, in order, as JSON."""
    watcher = await clients(hub.mqtt_port).connect()
    await watcher.subscribe(f"events/commands/{vid}/+")
    vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
    answering = asyncio.ensure_future(answer(vehicle, vid))
    created = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "lock"})).json()
    await answering
    events = [await watcher.next_message(f"/{created['id']}") for _ in range(3)]
    assert [e["event"] for _, e in events] == ["queued", "sent", "succeeded"]
    assert all(topic == f"events/commands/{vid}/{created['id']}" for topic, _ in events)
    assert events[-1][1]["state"] == "succeeded"
    metrics = (await http.get("/metrics")).text
    assert "fleethub_commands_created_total 1.0" in metrics
    assert 'fleethub_commands_finished_total{state="succeeded"} 1.0' in metrics
    assert "fleethub_commands_waiting 0.0" in metrics


async def test_duplicate_and_malformed_results_are_handled(hub, http, clients, vid):
    """A resent result changes nothing; bad or unknown results get a reason on `errors`; the hub carries on."""
    vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
    await vehicle.subscribe(f"vehicles/{vid}/errors")
    answering = asyncio.ensure_future(answer(vehicle, vid))
    done = await http.post(f"/api/v1/vehicles/{vid}/commands", params={"wait": "10s"}, json={"name": "lock"})
    await answering
    cid = done.json()["id"]
    result_topic = f"vehicles/{vid}/commands/{cid}/result"
    await vehicle.publish_and_wait(result_topic, {"status": "failed", "detail": "late duplicate"})
    await vehicle.publish_and_wait(result_topic, b"not json")
    _, error = await vehicle.next_message("/errors")
    assert (error["error"], error["topic"]) == ("bad_result", f"commands/{cid}/result")
    await vehicle.publish_and_wait(result_topic, {"status": "maybe"})
    _, error = await vehicle.next_message("/errors")
    assert error["error"] == "bad_result"
    assert "maybe" in error["detail"]
    deep: dict = {"x": 1}
    for _ in range(12):
        deep = {"n": deep}
    await vehicle.publish_and_wait(result_topic, {"status": "failed", "result": deep})
    _, error = await vehicle.next_message("/errors")
    assert error["error"] == "too_deep"
    await vehicle.publish_and_wait(f"vehicles/{vid}/commands/nope/result", {"status": "succeeded"})
    _, error = await vehicle.next_message("/errors")
    assert error["error"] == "unknown_command"
    got = (await http.get(f"/api/v1/vehicles/{vid}/commands/{cid}")).json()
    assert (got["state"], got["history"][-1]["state"]) == ("succeeded", "succeeded")
    answering = asyncio.ensure_future(answer(vehicle, vid))
    after = await http.post(f"/api/v1/vehicles/{vid}/commands", params={"wait": "10s"}, json={"name": "lock"})
    await answering
    assert after.json()["state"] == "succeeded"

"""The whole hub in one process: real broker, real SQLite, real HTTP, real paho clients."""

import time
import uuid

import pytest

from tests.helpers import eventually


def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


async def test_telemetry_in_twin_and_history_out(hub, http, clients) -> None:
    """Telemetry published over MQTT shows up in the twin and in history over HTTP."""
    v = vid()
    car = await clients(v, username=v).connect()
    now = time.time()
    await car.publish_and_wait(
        f"vehicles/{v}/telemetry", {"soc": 80, "gps": {"lat": 19.4, "lon": -99.1}, "ts": now - 2, "seq": 1}
    )
    await car.publish_and_wait(f"vehicles/{v}/telemetry", {"soc": 79, "speed": 30, "ts": now - 1, "seq": 2})
    twin = (await http.get(f"/api/v1/vehicles/{v}/twin")).json()
    assert _sent(twin["reported"]) == {"soc": 79, "gps": {"lat": 19.4, "lon": -99.1}, "speed": 30}
    assert twin["connection"]["connected"] is True
    history = (await http.get(f"/api/v1/vehicles/{v}/history", params={"fields": "soc"})).json()["items"]
    assert [h["data"] for h in history] == [{"soc": 80}, {"soc": 79}]
    listed = (await http.get("/api/v1/vehicles", params={"connected": "true"})).json()["items"]
    assert v in [t["vehicle_id"] for t in listed]


async def test_qos1_puback_means_committed(hub, http, clients) -> None:
    """When the PUBACK arrives the message is already readable over HTTP (acknowledged after commit)."""
    v = vid()
    car = await clients(v).connect()
    for i in range(20):
        await car.publish_and_wait(f"vehicles/{v}/telemetry", {"odometer_km": i, "seq": i})
        twin = (await http.get(f"/api/v1/vehicles/{v}/twin")).json()
        assert twin["reported"]["odometer_km"] == i


async def test_desired_delta_round_trip(hub, http, clients) -> None:
    """A desired patch reaches the vehicle as a delta; the vehicle's report clears it."""
    v = vid()
    car = await clients(v).connect()
    await car.subscribe(f"vehicles/{v}/twin/delta")
    await car.publish_and_wait(f"vehicles/{v}/telemetry", {"charge_limit": 90})
    resp = await http.patch(f"/api/v1/vehicles/{v}/twin/desired", json={"charge_limit": 80})
    assert resp.status_code == 200
    _, delta = await car.next_message("/twin/delta")
    assert delta == {"version": resp.json()["version"], "delta": {"charge_limit": 80}}
    await car.publish_and_wait(f"vehicles/{v}/telemetry", {"charge_limit": 80})
    twin = (await http.get(f"/api/v1/vehicles/{v}/twin")).json()
    assert twin["delta"] == {}
    assert twin["metadata"]["desired"]["charge_limit"]["status"] == "applied"


async def test_offline_vehicle_gets_delta_on_reconnect(hub, http, clients) -> None:
    """A vehicle that was offline while desired changed receives the delta when it comes back."""
    v = vid()
    car = await clients(v).connect()
    await car.publish_and_wait(f"vehicles/{v}/telemetry", {"charge_limit": 90})
    car.close()
    await eventually(lambda: _disconnected(http, v))
    await http.patch(f"/api/v1/vehicles/{v}/twin/desired", json={"charge_limit": 75})
    back = await clients(v).connect()
    await back.subscribe(f"vehicles/{v}/twin/delta")
    _, delta = await back.next_message("/twin/delta")
    assert delta["delta"] == {"charge_limit": 75}


async def _disconnected(http, v: str) -> bool:
    twin = (await http.get(f"/api/v1/vehicles/{v}/twin")).json()
    assert twin["connection"]["connected"] is False
    return True


async def test_presence_records_disconnect_reason(hub, http, clients) -> None:
    """A clean DISCONNECT and a dropped link are told apart in the twin."""
    a, b = vid(), vid()
    car_a = await clients(a).connect()
    car_b = await clients(b).connect()
    await car_a.publish_and_wait(f"vehicles/{a}/telemetry", {"soc": 1})
    await car_b.publish_and_wait(f"vehicles/{b}/telemetry", {"soc": 1})
    car_a.close()
    car_b.drop()

    async def reasons() -> bool:
        ta = (await http.get(f"/api/v1/vehicles/{a}/twin")).json()["connection"]
        tb = (await http.get(f"/api/v1/vehicles/{b}/twin")).json()["connection"]
        assert (ta["connected"], ta["disconnect_reason"]) == (False, "clean")
        assert (tb["connected"], tb["disconnect_reason"]) == (False, "connection_lost")
        return True

    await eventually(reasons)


@pytest.mark.parametrize(
    ("topic_tail", "payload", "reason"),
    [
        ("telemetry", b"{oops", "not_json"),
        ("telemetry", b"[1, 2, 3]", "not_object"),
        ("telemetry", b'"just a string"', "not_object"),
        ("telemetry", b'{"x": "' + b"a" * 70_000 + b'"}', "payload_too_large"),
        ("bogus/topic", b"{}", "unknown_topic"),
    ],
)
async def test_bad_input_refused_with_reason_and_others_unaffected(
    hub, http, clients, topic_tail, payload, reason
) -> None:
    """Bad input gets an error on vehicles/{vid}/errors; the hub and other vehicles carry on."""
    bad, good = vid(), vid()
    car = await clients(bad).connect()
    await car.subscribe(f"vehicles/{bad}/errors")
    other = await clients(good).connect()
    car.publish(f"vehicles/{bad}/{topic_tail}", payload, qos=1)
    _, error = await car.next_message("/errors")
    assert error["error"] == reason
    assert error["detail"]
    await other.publish_and_wait(f"vehicles/{good}/telemetry", {"soc": 5})
    assert _sent((await http.get(f"/api/v1/vehicles/{good}/twin")).json()["reported"]) == {"soc": 5}
    assert (await http.get(f"/api/v1/vehicles/{bad}/twin")).status_code == 404
    metrics = (await http.get("/metrics")).text
    assert '_refused_total{reason="' + reason + '"}' in metrics


async def test_twin_get_over_mqtt(hub, clients) -> None:
    """twin/get is answered with the full document on twin/doc."""
    v = vid()
    car = await clients(v).connect()
    await car.subscribe(f"vehicles/{v}/twin/doc")
    await car.publish_and_wait(f"vehicles/{v}/telemetry", {"soc": 33})
    car.publish(f"vehicles/{v}/twin/get", {"request_id": "abc"})
    _, doc = await car.next_message("/twin/doc")
    assert doc["request_id"] == "abc"
    assert _sent(doc["reported"]) == {"soc": 33}


async def test_health_and_metrics(hub, http, clients) -> None:
    """Health reports every component; metrics count accepted messages and connected vehicles."""
    v = vid()
    car = await clients(v).connect()
    await car.publish_and_wait(f"vehicles/{v}/telemetry", {"soc": 1})
    health = (await http.get("/healthz")).json()
    assert health["status"] == "ok"
    assert set(health["components"]) == {"store", "ingest", "broker"}
    text = (await http.get("/metrics")).text
    assert "fleethub_ingest_messages_accepted_total 1.0" in text
    assert "fleethub_connected_vehicles 1.0" in text
    assert "fleethub_ingest_commit_seconds_bucket" in text


def _sent(reported: dict) -> dict:
    """What the vehicle reported, without the meters the hub derives and adds (odometer, engine hours)."""
    return {k: v for k, v in reported.items() if k != "meters"}

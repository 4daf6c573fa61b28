"""Input is range-checked where it enters: the sender hears why, the hub lives, nobody else sees it."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import eventually

DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


async def _twin(http, vid):
    response = await http.get(f"/api/v1/vehicles/{vid}/twin")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("payload", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
@pytest.mark.parametrize("qos", [0, 1])
async def test_deep_json_is_refused_on_every_vehicle_topic(hub, http, clients, payload, qos):
    vid = f"deep-{qos}-{len(payload) % 7}"
    vehicle = await clients(vid).connect()
    await vehicle.subscribe(f"vehicles/{vid}/errors")
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"soc": 50})
    for topic in ("telemetry", "twin/get", "twin/rejected"):
        info = vehicle.publish(f"vehicles/{vid}/{topic}", payload, qos=qos)
        if qos:
            await asyncio.to_thread(info.wait_for_publish, 10)
            assert info.is_published()
        _, notice = await vehicle.next_message("/errors")
        assert notice["error"] == "too_deep"
        assert notice["topic"] == topic
    # The hub is up and still takes this vehicle's telemetry.
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"soc": 51})
    assert (await _twin(http, vid))["reported"]["soc"] == 51
    assert hub.service.health().running


async def test_command_result_nested_too_deep_is_refused(hub, clients):
    vehicle = await clients("deep-result").connect()
    await vehicle.subscribe("vehicles/deep-result/errors")
    await vehicle.publish_and_wait(
        "vehicles/deep-result/commands/c1/result", '{"status":"succeeded","result":' + DEEP_OBJECT + "}"
    )
    _, notice = await vehicle.next_message("/errors")
    assert notice["error"] == "too_deep"


async def test_seq_outside_signed_64_bits_is_refused_and_others_are_acknowledged(hub, http, clients):
    bad = await clients("seq-bad").connect()
    other = await clients("seq-other").connect()
    await bad.subscribe("vehicles/seq-bad/errors")
    await bad.publish_and_wait("vehicles/seq-bad/telemetry", {"seq": 2**63, "soc": 1})
    _, notice = await bad.next_message("/errors")
    assert notice["error"] in {"bad_seq", "number_out_of_range"}
    assert "seq" in notice["detail"]
    # The largest 64-bit seq is stored; the other vehicle is acknowledged as usual.
    await bad.publish_and_wait("vehicles/seq-bad/telemetry", {"seq": 2**63 - 1, "soc": 2})
    await other.publish_and_wait("vehicles/seq-other/telemetry", {"seq": 1, "soc": 3})
    assert (await _twin(http, "seq-bad"))["reported"]["soc"] == 2
    assert (await _twin(http, "seq-other"))["reported"]["soc"] == 3
    rows = (await http.get("/api/v1/vehicles/seq-bad/history")).json()
    assert [r["seq"] for r in rows["items"]] == [2**63 - 1]
    assert (await hub.health()).status == "ok"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"odometer": 18446744073709551616}', "number_out_of_range"),
        ('{"ts": 1e300, "soc": 1}', "bad_timestamp"),
        ('{"ts": "0001-01-01T00:00:00Z", "soc": 1}', "bad_timestamp"),
    ],
)
async def test_numbers_and_times_out_of_range_are_refused(hub, http, clients, body, reason):
    vehicle = await clients("range").connect()
    await vehicle.subscribe("vehicles/range/errors")
    await vehicle.publish_and_wait("vehicles/range/telemetry", body)
    _, notice = await vehicle.next_message("/errors")
    assert notice["error"] == reason
    await vehicle.publish_and_wait("vehicles/range/telemetry", {"soc": 9})
    reported = (await _twin(http, "range"))["reported"]
    assert reported["soc"] == 9
    assert "odometer" not in reported


@pytest.mark.parametrize("ttl", ["1e12", "inf", "1e300", "nan", "-1", "0"])
async def test_desired_ttl_out_of_bounds_is_a_4xx_and_the_hub_lives(hub, http, clients, ttl):
    vehicle = await clients("ttl").connect()
    await vehicle.publish_and_wait("vehicles/ttl/telemetry", {"soc": 1})
    response = await http.patch("/api/v1/vehicles/ttl/twin/desired", params={"ttl_s": ttl}, json={"charge_limit": 80})
    assert 400 <= response.status_code < 500, response.text
    assert "desired" not in (await _twin(http, "ttl")) or (await _twin(http, "ttl"))["desired"] == {}
    # Positive control: a TTL within bounds is taken, and ingest still runs.
    ok = await http.patch("/api/v1/vehicles/ttl/twin/desired", params={"ttl_s": "3600"}, json={"charge_limit": 80})
    assert ok.status_code == 200, ok.text
    await vehicle.publish_and_wait("vehicles/ttl/telemetry", {"soc": 2})
    assert (await _twin(http, "ttl"))["reported"]["soc"] == 2
    assert hub.service.health().running


@pytest.mark.parametrize("qos", [0, 1])
async def test_refused_telemetry_is_not_routed_to_subscribers(hub, clients, qos):
    watcher = await clients("watcher").connect()
    await watcher.subscribe("vehicles/route-me/telemetry")
    vehicle = await clients("route-me").connect()
    info = vehicle.publish("vehicles/route-me/telemetry", b"not json at all", qos=qos)
    if qos:
        await asyncio.to_thread(info.wait_for_publish, 10)
    await vehicle.publish_and_wait("vehicles/route-me/telemetry", {"soc": 7}, qos=1)
    # Positive control in the same test: the accepted message arrives, and it is the first one.
    _, first = await watcher.next_message("/telemetry")
    assert first == {"soc": 7}

    async def nothing_more() -> bool:
        return watcher.messages.empty()

    assert await eventually(nothing_more)

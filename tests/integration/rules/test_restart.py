"""Restarting the hub in the middle of a `for` window and of an active alert: no double firing, nothing missing."""

import asyncio

import httpx
import pytest

from fleethub.hub import Hub
from rules.alerts import AlertQuery
from rules.sqlite_store import SqliteRulesStore
from tests.integration.rules.conftest import hub_settings


async def alerts_of(hub: Hub, rule: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as http:
        return (await http.get("/api/v1/alerts", params={"rule": rule})).json()["items"]


async def alerts_of_closed(db: str, rule: str) -> list[str]:
    """Alerts stored for a rule while no hub runs."""
    async with SqliteRulesStore(f"sqlite:///{db}") as store:
        return [a.id for a in await store.query_alerts(AlertQuery(rule=rule))]


async def put_rule(hub: Hub, name: str, **body) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as http:
        response = await http.put(f"/api/v1/rules/{name}", json=body)
        assert response.status_code == 201, response.text


async def test_restart_inside_a_for_window_fires_once(db, clients, vid, rule_name):
    """A `for` window that began before a restart ends after it with exactly one alert."""
    async with Hub(hub_settings(db)) as hub:
        await put_rule(hub, rule_name, when="battery.temp_c > 60", **{"for": "2s"})
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 70}})
        await asyncio.sleep(0.2)
        assert hub.rules is not None
        assert hub.rules.core.pending(rule_name, vid) is not None
        vehicle.close()
    assert await alerts_of_closed(db, rule_name) == []

    async with Hub(hub_settings(db)) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        _, raised = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=5)
        assert raised["event"] == "raised"
        assert raised["values"] == {"battery.temp_c": 70}
        with pytest.raises(TimeoutError):
            await watcher.next_message(f"/{rule_name}/{vid}", wait_s=0.5)
        assert [a["id"] for a in await alerts_of(hub, rule_name)] == [raised["id"]]

    async with Hub(hub_settings(db)) as hub:
        await asyncio.sleep(0.3)
        listed = await alerts_of(hub, rule_name)
        assert [(a["id"], a["state"]) for a in listed] == [(raised["id"], "active")]


async def test_restart_with_an_active_alert_keeps_it_open_and_clears_it(db, clients, vid, rule_name):
    """An alert active across a restart is not raised again and is cleared by telemetry afterwards."""
    async with Hub(hub_settings(db)) as hub:
        await put_rule(hub, rule_name, when="battery.temp_c > 60")
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 70}})
        _, raised = await watcher.next_message(f"/{rule_name}/{vid}")
        vehicle.close()
        watcher.close()

    async with Hub(hub_settings(db)) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 75}})
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 40}})
        _, cleared = await watcher.next_message(f"/{rule_name}/{vid}")
        assert (cleared["event"], cleared["id"]) == ("cleared", raised["id"])
        listed = await alerts_of(hub, rule_name)
        assert [(a["id"], a["state"]) for a in listed] == [(raised["id"], "cleared")]


async def test_silent_vehicle_alerts_after_a_restart(db, clients, vid, rule_name):
    """A vehicle that went silent before a restart still gets its `no_data_for` alert after it."""
    async with Hub(hub_settings(db)) as hub:
        await put_rule(hub, rule_name, when='no_data_for("gps") > 1s')
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"gps": {"lat": 1.0, "lon": 2.0}})
        vehicle.close()

    async with Hub(hub_settings(db)) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        _, raised = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=5)
        assert raised["event"] == "raised"
        assert len(await alerts_of(hub, rule_name)) == 1

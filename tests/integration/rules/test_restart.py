"""Restarting the hub in the middle of a `for` window and of an active alert: no double firing, nothing missing.

Every test runs on SQLite and on PostgreSQL (the `store_url` fixture).
"""

import asyncio

import httpx
import pytest

from fleethub.hub import Hub
from fleethub.stores import database
from rules import Alert, AlertQuery, PendingTimer, TimerKind, rules_store
from tests.helpers import eventually
from tests.integration.rules.conftest import hub_settings


async def alerts_of(hub: Hub, rule: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as http:
        return (await http.get("/api/v1/alerts", params={"rule": rule})).json()["items"]


async def stored_while_closed(store_url: str, rule: str) -> tuple[list[Alert], list[PendingTimer]]:
    """Alerts and pending windows stored for a rule while no hub runs."""
    async with database(hub_settings(store_url).store) as db, rules_store(db) as store:
        timers = [t for t in await store.pending_timers() if t.rule == rule]
        return await store.query_alerts(AlertQuery(rule=rule)), timers


async def put_rule(hub: Hub, name: str, **body) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as http:
        response = await http.put(f"/api/v1/rules/{name}", json=body)
        assert response.status_code == 201, response.text


async def test_restart_inside_a_for_window_fires_once(store_url, clients, vid, rule_name):
    """A `for` window that began before a restart ends after it with exactly one alert."""
    async with Hub(hub_settings(store_url)) as hub:
        await put_rule(hub, rule_name, when="battery.temp_c > 60", **{"for": "2s"})
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 70}})
        await asyncio.sleep(0.2)
        assert hub.rules is not None
        assert hub.rules.core.pending(rule_name, vid) is not None
        vehicle.close()
    alerts, timers = await stored_while_closed(store_url, rule_name)
    assert alerts == []
    assert [(t.vehicle_id, t.kind, t.values) for t in timers] == [(vid, TimerKind.RAISE, {"battery.temp_c": 70})]

    async with Hub(hub_settings(store_url)) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        _, raised = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=5)
        assert raised["event"] == "raised"
        assert raised["values"] == {"battery.temp_c": 70}
        with pytest.raises(TimeoutError):
            await watcher.next_message(f"/{rule_name}/{vid}", wait_s=0.5)
        assert [a["id"] for a in await alerts_of(hub, rule_name)] == [raised["id"]]

    async with Hub(hub_settings(store_url)) as hub:
        await asyncio.sleep(0.3)
        listed = await alerts_of(hub, rule_name)
        assert [(a["id"], a["state"]) for a in listed] == [(raised["id"], "active")]


async def test_restart_with_an_active_alert_keeps_it_open_and_clears_it(store_url, clients, vid, rule_name):
    """An alert active across a restart is not raised again and is cleared by telemetry afterwards."""
    async with Hub(hub_settings(store_url)) as hub:
        await put_rule(hub, rule_name, when="battery.temp_c > 60")
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 70}})
        _, raised = await watcher.next_message(f"/{rule_name}/{vid}")
        vehicle.close()
        watcher.close()

    async with Hub(hub_settings(store_url)) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 75}})
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 40}})
        _, cleared = await watcher.next_message(f"/{rule_name}/{vid}")
        assert (cleared["event"], cleared["id"]) == ("cleared", raised["id"])
        listed = await alerts_of(hub, rule_name)
        assert [(a["id"], a["state"]) for a in listed] == [(raised["id"], "cleared")]


async def test_silent_vehicle_alerts_after_a_restart(store_url, clients, vid, rule_name):
    """A vehicle that went silent before a restart still gets its `no_data_for` alert after it."""
    async with Hub(hub_settings(store_url)) as hub:
        await put_rule(hub, rule_name, when='no_data_for("gps") > 1s')
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"gps": {"lat": 1.0, "lon": 2.0}})
        vehicle.close()

    async with Hub(hub_settings(store_url)) as hub:
        # The silence began before the restart, so the alert may be raised while the hub is
        # still starting, before any subscriber could be there: the API is where to look.
        alerts = await eventually(lambda: alerts_of(hub, rule_name))
        assert [(a["vehicle_id"], a["state"]) for a in alerts] == [(vid, "active")]


async def test_lifecycle_across_restarts_fires_once_and_keeps_the_acknowledgement(store_url, clients, vid, rule_name):
    """Raised after a restart inside its window, acked over HTTP, kept acked over a restart, cleared once."""
    rule = {"when": "battery.temp_c > 60", "for": "4s", "clear_when": "battery.temp_c < 45", "severity": "major"}
    async with Hub(hub_settings(store_url)) as hub:
        await put_rule(hub, rule_name, **rule)
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 66}})
        vehicle.close()

    async with Hub(hub_settings(store_url)) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        topic, raised = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=10)
        assert topic == f"alerts/default/major/{rule_name}/{vid}"
        assert (raised["event"], raised["values"]) == ("raised", {"battery.temp_c": 66})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as http:
            response = await http.post(f"/api/v1/alerts/{raised['id']}/ack", json={"user": "maria", "note": "towing"})
            assert response.status_code == 200, response.text
        _, acked = await watcher.next_message(f"/{rule_name}/{vid}")
        assert (acked["event"], acked["id"], acked["acknowledged_by"]) == ("acknowledged", raised["id"], "maria")
        watcher.close()

    alerts, timers = await stored_while_closed(store_url, rule_name)
    assert [(a.id, a.state.value, a.acknowledged_by, a.note) for a in alerts] == [
        (raised["id"], "acknowledged", "maria", "towing")
    ]
    assert timers == []

    async with Hub(hub_settings(store_url)) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        vehicle = await clients(hub.mqtt_port, vid).connect()
        # Still hot after the restart: the acknowledged alert stays the one open alert.
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 70}})
        assert hub.rules is not None
        open_alert = hub.rules.core.open_alert(rule_name, vid)
        assert open_alert is not None
        assert (open_alert.id, open_alert.state.value) == (raised["id"], "acknowledged")
        assert hub.rules.core.pending(rule_name, vid) is None, "no new `for` window while the alert is open"
        with pytest.raises(TimeoutError):
            await watcher.next_message(f"/{rule_name}/{vid}", wait_s=0.5)
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 40}})
        _, cleared = await watcher.next_message(f"/{rule_name}/{vid}")
        assert (cleared["event"], cleared["id"], cleared["cleared_by"]) == ("cleared", raised["id"], "condition")
        assert cleared["acknowledged_by"] == "maria"
        with pytest.raises(TimeoutError):
            await watcher.next_message(f"/{rule_name}/{vid}", wait_s=0.5)
        listed = await alerts_of(hub, rule_name)
        assert [(a["id"], a["state"], a["note"]) for a in listed] == [(raised["id"], "cleared", "towing")]


class SlowCommits:
    """The hub's own store, each commit of telemetry taking `delay` longer: it lands while the hub stops."""

    def __init__(self, inner, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.inner.__aexit__(*exc)

    async def write_batch(self, twins, history, presence=(), statements=()) -> None:
        # Only telemetry: the broker reads a vehicle's next packet once its connect is recorded.
        if history:
            await asyncio.sleep(self.delay)
        await self.inner.write_batch(twins, history, presence, statements)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


async def test_telemetry_committed_while_the_hub_stops_is_still_evaluated(store_url, clients, vid, rule_name):
    """An update whose commit finishes during shutdown still raises its alert, stored and open after a restart."""
    settings = hub_settings(store_url)
    async with Hub(settings, wrap_store=lambda store: SlowCommits(store, 0.6)) as hub:
        await put_rule(hub, rule_name, when="speed > 100")
        vehicle = await clients(hub.mqtt_port, vid).connect()
        vehicle.publish(f"vehicles/{vid}/telemetry", {"speed": 130})
        await asyncio.sleep(0.3)
    alerts, _ = await stored_while_closed(store_url, rule_name)
    assert [(a.vehicle_id, a.state.value, a.values) for a in alerts] == [(vid, "active", {"speed": 130})]

    async with Hub(hub_settings(store_url)) as hub:
        await asyncio.sleep(0.3)
        assert [a["id"] for a in await alerts_of(hub, rule_name)] == [alerts[0].id]

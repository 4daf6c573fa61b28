"""Simulated faults raise the demo's alerts through the real hub, on both store backends."""

import asyncio

import httpx

from firmware_sim import Fleet, SimConfig
from firmware_sim.faults import Fault, FaultKind
from fleethub.demo import with_demo_rules
from fleethub.hub import Hub
from tests.integration.rules.conftest import hub_settings


async def test_injected_faults_raise_demo_alerts(store_url, clients):
    """Each fault the simulator injects (overheating, tyre leak, silent tracker, leaving the area) raises its alert."""
    async with Hub(with_demo_rules(hub_settings(store_url))) as hub:
        # The demo waits 20 s for a silent tracker; the same rule with a shorter threshold keeps the test quick.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as http:
            silent = {"when": 'no_data_for("gps") > 2s', "severity": "major"}
            assert (await http.put("/api/v1/rules/tracker-silent", json=silent)).status_code == 200
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        config = SimConfig(
            vehicles=4,
            interval_s=0.2,
            port=hub.mqtt_port,
            prefix="flt-",
            seed=7,
            ramp_s=0.1,
            faults=(
                Fault("flt-0001", FaultKind.OVERHEAT),
                Fault("flt-0002", FaultKind.LEAVE_ZONE, after_s=1.0),
                Fault("flt-0003", FaultKind.TYRE_LEAK),
                Fault("flt-0004", FaultKind.SILENT, after_s=1.0),
            ),
        )
        expected = {
            "alerts/default/critical/battery-overheating/flt-0001",
            "alerts/default/warning/left-service-area/flt-0002",
            "alerts/default/major/tyre-pressure-dropping/flt-0003",
            "alerts/default/major/tracker-silent/flt-0004",
        }
        async with Fleet(config):
            seen: dict[str, dict] = {}
            async with asyncio.timeout(30):
                while not expected <= set(seen):
                    topic, event = await watcher.next_message("", wait_s=30)
                    seen.setdefault(topic, event)
        assert set(seen) == expected, "a vehicle without that fault raised an alert"
        assert all(event["event"] == "raised" for event in seen.values())

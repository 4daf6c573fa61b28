"""Simulated faults raise the demo's alerts through the real hub."""

import asyncio

from firmware_sim import Fleet, SimConfig
from firmware_sim.faults import Fault, FaultKind
from fleethub.demo import with_demo_rules
from fleethub.hub import Hub
from tests.integration.rules.conftest import hub_settings


async def test_injected_faults_raise_demo_alerts(store_url, clients):
    """An overheating battery and a vehicle leaving the service area raise their demo rules' alerts."""
    async with Hub(with_demo_rules(hub_settings(store_url))) as hub:
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        config = SimConfig(
            vehicles=2,
            interval_s=0.2,
            port=hub.mqtt_port,
            prefix="flt-",
            seed=7,
            ramp_s=0.1,
            faults=(Fault("flt-0001", FaultKind.OVERHEAT), Fault("flt-0002", FaultKind.LEAVE_ZONE, after_s=1.0)),
        )
        async with Fleet(config):
            seen: dict[str, dict] = {}
            async with asyncio.timeout(20):
                while len(seen) < 2:
                    topic, event = await watcher.next_message("", wait_s=20)
                    seen[topic] = event
        assert set(seen) == {
            "alerts/default/critical/battery-overheating/flt-0001",
            "alerts/default/warning/left-service-area/flt-0002",
        }
        assert all(event["event"] == "raised" for event in seen.values())

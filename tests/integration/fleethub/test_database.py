"""A hub opens one Database: on PostgreSQL, one connection pool serves every store."""

import uuid

import httpx
import psycopg
import pytest

from fleethub.hub import Hub
from tests.helpers import MqttClient, eventually, local_settings


@pytest.mark.postgres
async def test_a_postgresql_hub_holds_one_pool_for_every_store(pg_url: str) -> None:
    """Twins, rules, commands and security all work while the hub holds exactly store.pg_pool_max_size connections."""
    app = f"fleethub-one-pool-{uuid.uuid4().hex[:8]}"
    vid = f"veh-{uuid.uuid4().hex[:8]}"
    settings = local_settings(
        f"{pg_url}&application_name={app}",
        {
            # Four stores used to open four pools, at least one connection each.
            "store.pg_pool_min_size": 2,
            "store.pg_pool_max_size": 2,
        },
    )
    async with Hub(settings) as hub:
        base = f"http://127.0.0.1:{hub.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            vehicle = await MqttClient(hub.mqtt_port, vid, username=vid).connect()
            try:
                await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"speed": 130})
            finally:
                vehicle.close()
            rule = await http.put("/api/v1/rules/too-fast", json={"when": "speed > 100"})
            assert rule.status_code == 201, rule.text
            imported = await http.post("/api/v1/vehicles/import", content=f"vehicle_id\n{vid}-2\n")
            assert imported.status_code == 201, imported.text
            command = await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "locate"})
            assert command.status_code == 202, command.text

            async def twin_has_speed() -> bool:
                twin = (await http.get(f"/api/v1/vehicles/{vid}/twin")).json()
                return twin["reported"].get("speed") == 130

            await eventually(twin_has_speed)
            assert (await http.get(f"/api/v1/vehicles/{vid}-2/credentials")).status_code == 200
            assert (await http.get(f"/api/v1/vehicles/{vid}/commands")).json()["items"][0]["name"] == "locate"
        with psycopg.connect(pg_url, autocommit=True) as admin:
            held = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,))
            assert held.fetchone() == (2,)

"""Done when: a maintenance user gets an email when a vehicle becomes overdue, through the running hub."""

import httpx
import pytest

from fleethub.hub import Hub
from tests.helpers import MqttClient, eventually
from tests.integration.maintenance.conftest import hub_settings
from tests.integration.notifications.servers import SmtpServer


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    return str(request.getfixturevalue("pg_url"))


async def test_overdue_maintenance_sends_an_email(store_url):
    """A time schedule passes its due point: the overdue alert reaches the fleet's email channel over SMTP."""
    smtp = SmtpServer().start()
    overrides = {
        "notifications.smtp_host": "127.0.0.1",
        "notifications.smtp_port": smtp.port,
        "notifications.poll_interval_s": 0.1,
    }
    try:
        async with Hub(hub_settings(store_url, **overrides)) as hub:
            vehicle = MqttClient(hub.mqtt_port)
            await vehicle.connect()
            await vehicle.publish_and_wait("vehicles/veh-mail/telemetry", {"odometer_km": 1200.5, "ignition": False})
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=20) as http:
                channel = {
                    "kind": "email",
                    "to": ["workshop@fleet.test"],
                    "fleet": "default",
                    "rules": ["maintenance.*.overdue"],
                }
                assert (await http.put("/api/v1/notifications/channels/workshop", json=channel)).status_code == 201
                tested = await http.post("/api/v1/notifications/channels/workshop/test")
                assert tested.status_code == 202, tested.text
                await eventually(lambda: _some(smtp.messages), wait_s=60)
                assert "Test notification for channel workshop" in smtp.messages.pop()["Subject"]
                schedule = {"name": "Inspection", "every_days": 0.00003, "due_soon_days": 0}
                assert (await http.put("/api/v1/maintenance/schedules/inspect", json=schedule)).status_code == 201
                await eventually(lambda: _some(smtp.messages), wait_s=60)

                async def recorded():
                    # The mail server has it; the hub records the delivery right after the SMTP session ends.
                    items = (await http.get("/api/v1/notifications/deliveries")).json()["items"]
                    return items if all(d["state"] == "delivered" for d in items) else None

                deliveries = await eventually(recorded, wait_s=30)
            vehicle.close()
    finally:
        smtp.stop()
    [message] = smtp.messages
    assert "Inspection overdue for veh-mail" in message["Subject"]
    assert message["To"] == "workshop@fleet.test"
    assert [d["state"] for d in deliveries] == ["delivered", "delivered"]  # the test and the overdue alert


async def _some(items):
    return bool(items)

# The running hub, its HTTP client and an MQTT client, as the maintenance tests use them.
from tests.integration.maintenance.conftest import http, hub, mqtt, vid

__all__ = ["http", "hub", "mqtt", "vid"]

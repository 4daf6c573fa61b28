# A development-mode hub on ephemeral ports, its HTTP client and MQTT clients.
from tests.integration.fleethub.conftest import clients, http, hub

__all__ = ["clients", "http", "hub"]

"""Errors the broker raises on purpose; all are part of fleethub's one exception tree."""

from __future__ import annotations

from kernel import ConfigError


class PortInUse(ConfigError):
    """A listener could not bind because another process holds its port."""

    def __init__(self, host: str, port: int, listener: str = "tcp") -> None:
        if listener == "ws":
            hint = "pick another with --mqtt-ws-port"
            what = "MQTT WebSocket port"
        else:
            hint = "pick another with --mqtt-port"
            what = "MQTT port"
        super().__init__(f"{what} {port} is already in use on {host} (another broker?); {hint}")
        self.host = host
        self.port = port
        self.listener = listener

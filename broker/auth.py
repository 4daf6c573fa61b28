"""Who may connect to the embedded broker."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

log = structlog.get_logger(__name__)


class VehicleAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Admits anonymous clients when allowed; refuses everyone else.

    There is no credential store yet, so with `allow_anonymous` off nobody gets in.
    amqtt ignores an auth plugin that answers None, so every path returns a bool.
    """

    @dataclass
    class Config:
        allow_anonymous: bool = True

    async def authenticate(self, *, session: Session) -> bool:
        if self.config.allow_anonymous:
            # amqtt keeps no session for a client it marks anonymous; a persistent session
            # belongs to its client id (MQTT 3.1.2.4), with or without a user name, so
            # `session.is_anonymous` stays False.
            return True
        log.warning(
            "mqtt connection refused",
            client_id=session.client_id,
            username=session.username,
            reason="anonymous clients are not allowed and no credentials are configured",
        )
        return False

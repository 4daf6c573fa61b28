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
            # amqtt keeps no offline messages for anonymous sessions, so only a client
            # that names no user counts as one.
            session.is_anonymous = not session.username
            return True
        log.warning(
            "mqtt connection refused",
            client_id=session.client_id,
            username=session.username,
            reason="anonymous clients are not allowed and no credentials are configured",
        )
        return False

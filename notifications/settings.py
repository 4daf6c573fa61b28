"""Settings of notification delivery ([notifications])."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class NotificationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Channels, the outbox and its delivery worker, and the /api/v1/notifications routes.
    enabled: bool = True
    # SMTP for email channels. Empty host: email channels are refused when created.
    smtp_host: str = ""
    smtp_port: Annotated[int, Meta(ge=1, le=65535)] = 25
    smtp_from: str = "fleethub@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    # "starttls", "tls" (implicit, usually port 465) or "none".
    smtp_security: Literal["starttls", "tls", "none"] = "none"
    # One delivery attempt (HTTP request or SMTP session) gives up after this long.
    send_timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    # The worker looks for work this often (and at once when something is queued).
    poll_interval_s: Annotated[float, Meta(gt=0)] = 1.0
    # Attempts before a delivery is dead-lettered; waits between them double from retry_base_s up to retry_max_s.
    max_attempts: Annotated[int, Meta(ge=1)] = 8
    retry_base_s: Annotated[float, Meta(gt=0)] = 5.0
    retry_max_s: Annotated[float, Meta(gt=0)] = 900.0
    # Alerts one digest carries at most; the rest go in the next.
    digest_max_items: Annotated[int, Meta(ge=1)] = 500
    # Deliveries attempted at the same time, over all channels.
    max_concurrent_sends: Annotated[int, Meta(ge=1)] = 8
    # Deliveries taken per worker round.
    batch_max: Annotated[int, Meta(ge=1)] = 200
    # Recent (channel, rule, vehicle, event) keys remembered for de-duplication at most.
    dedup_memory_max: Annotated[int, Meta(ge=1)] = 100_000
    # Channels kept at most.
    max_channels: Annotated[int, Meta(ge=1)] = 1000

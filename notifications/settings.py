"""Settings of notification delivery ([notifications])."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class NotificationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: Annotated[
        bool, Meta(description="Channels, the outbox and its delivery worker, and the /api/v1/notifications routes.")
    ] = True
    smtp_host: Annotated[
        str, Meta(description="SMTP server for email channels; empty: email channels are refused when created.")
    ] = ""
    smtp_port: Annotated[int, Meta(ge=1, le=65535, description="SMTP server port.")] = 25
    smtp_from: Annotated[str, Meta(description="Sender address of notification emails.")] = "fleethub@localhost"
    smtp_username: Annotated[str, Meta(description="SMTP login; empty: no login.")] = ""
    smtp_password: Annotated[str, Meta(description="SMTP password of smtp_username.")] = ""
    smtp_security: Annotated[
        Literal["starttls", "tls", "none"],
        Meta(description='"starttls", "tls" (implicit, usually port 465) or "none".'),
    ] = "none"
    send_timeout_s: Annotated[
        float,
        Meta(gt=0, description="One delivery attempt (HTTP request or SMTP session) gives up after this long."),
    ] = 10.0
    poll_interval_s: Annotated[
        float,
        Meta(gt=0, description="The worker looks for work this often (and at once when something is queued)."),
    ] = 1.0
    max_attempts: Annotated[
        int,
        Meta(
            ge=1,
            description="Attempts before a delivery is dead-lettered; waits between them double from retry_base_s "
            "up to retry_max_s.",
        ),
    ] = 8
    retry_base_s: Annotated[float, Meta(gt=0, description="The first wait before a failed delivery is retried.")] = 5.0
    retry_max_s: Annotated[float, Meta(gt=0, description="The longest wait between delivery attempts.")] = 900.0
    claim_s: Annotated[
        float,
        Meta(
            gt=0,
            description="A delivery being attempted is hidden from other hubs on the same database this long; "
            "keep it well above send_timeout_s. A hub that dies mid-attempt leaves the delivery to be retried "
            "after it.",
        ),
    ] = 60.0
    digest_max_items: Annotated[
        int, Meta(ge=1, description="Alerts one digest carries at most; the rest go in the next.")
    ] = 500
    max_concurrent_sends: Annotated[
        int, Meta(ge=1, description="Deliveries attempted at the same time, over all channels.")
    ] = 8
    batch_max: Annotated[int, Meta(ge=1, description="Deliveries taken per worker round.")] = 200
    dedup_memory_max: Annotated[
        int,
        Meta(ge=1, description="Recent (channel, rule, vehicle, event) keys remembered for de-duplication at most."),
    ] = 100_000
    max_channels: Annotated[int, Meta(ge=1, description="Channels kept at most.")] = 1000

    def __post_init__(self) -> None:
        if self.claim_s <= self.send_timeout_s:
            # A claim that ends while its attempt still runs would let another hub send it too.
            raise ValueError(
                f"setting 'notifications.claim_s' must be above send_timeout_s ({self.send_timeout_s:g}), "
                f"got {self.claim_s:g}"
            )

"""Settings of notification delivery ([notifications])."""

from __future__ import annotations

import msgspec


class NotificationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Channels, the outbox and its delivery worker, and the /api/v1/notifications routes.
    enabled: bool = True
    # SMTP for email channels. Empty host: email channels are refused when created.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "fleethub@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    # "starttls", "tls" (implicit, usually port 465) or "none".
    smtp_security: str = "none"
    # One delivery attempt (HTTP request or SMTP session) gives up after this long.
    send_timeout_s: float = 10.0
    # The worker looks for work this often (and at once when something is queued).
    poll_interval_s: float = 1.0
    # Attempts before a delivery is dead-lettered; waits between them double from retry_base_s up to retry_max_s.
    max_attempts: int = 8
    retry_base_s: float = 5.0
    retry_max_s: float = 900.0
    # Alerts one digest carries at most; the rest go in the next.
    digest_max_items: int = 500
    # Deliveries attempted at the same time, over all channels.
    max_concurrent_sends: int = 8
    # Deliveries taken per worker round.
    batch_max: int = 200
    # Recent (channel, rule, vehicle, event) keys remembered for de-duplication at most.
    dedup_memory_max: int = 100_000
    # Channels kept at most.
    max_channels: int = 1000


def validate_notifications(s: NotificationSettings) -> list[tuple[str, str, object]]:
    problems: list[tuple[str, str, object]] = []
    if not 1 <= s.smtp_port <= 65535:
        problems.append(("notifications.smtp_port", "1-65535", s.smtp_port))
    if s.smtp_security not in {"starttls", "tls", "none"}:
        problems.append(("notifications.smtp_security", "starttls, tls or none", s.smtp_security))
    for name in ("send_timeout_s", "poll_interval_s", "retry_base_s", "retry_max_s"):
        if not getattr(s, name) > 0:
            problems.append((f"notifications.{name}", "positive", getattr(s, name)))
    for name in ("max_attempts", "digest_max_items", "max_concurrent_sends", "batch_max", "dedup_memory_max"):
        if getattr(s, name) < 1:
            problems.append((f"notifications.{name}", "at least 1", getattr(s, name)))
    if s.max_channels < 1:
        problems.append(("notifications.max_channels", "at least 1", s.max_channels))
    return problems

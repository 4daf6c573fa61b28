"""Channels, the notifications in the outbox, and the deliveries that carry them."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec

SEVERITIES = ("info", "warning", "minor", "major", "critical")
_RANK = {name: i for i, name in enumerate(SEVERITIES)}

Clock = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]


def severity_rank(severity: str) -> int:
    return _RANK.get(severity, 0)


class ChannelKind(enum.Enum):
    WEBHOOK = "webhook"
    CHAT = "chat"
    EMAIL = "email"


class QuietHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Hold notifications between `start` and `end` (local time of `tz`); they go out as a digest after."""

    start: Clock
    end: Clock
    tz: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"
    # Alerts of these severities are sent even in quiet hours.
    except_severities: list[str] = msgspec.field(default_factory=lambda: ["critical"])


class ChannelBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Where notifications go and which ones: routed by fleet, severity, rule and event, rate-limited."""

    kind: ChannelKind
    # webhook and chat: the URL to POST to. email: the recipients.
    url: Url | None = None
    to: list[Email] = msgspec.field(default_factory=list)
    # webhook: the HMAC-SHA256 key signing each body (X-Fleethub-Signature). Never shown back.
    secret: Annotated[str, msgspec.Meta(min_length=16, max_length=256)] | None = None
    # Routing. fleet None: every fleet (admins only).
    fleet: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    min_severity: str = "info"
    # Rule names or shell-style patterns ("maintenance.*"); empty: every rule.
    rules: list[Annotated[str, msgspec.Meta(max_length=128)]] = msgspec.field(default_factory=list)
    events: list[Literal["raised", "acknowledged", "cleared"]] = msgspec.field(default_factory=lambda: ["raised"])
    quiet_hours: QuietHours | None = None
    # At most this many deliveries per hour, with bursts of `burst`; the rest wait and go as a digest.
    rate_per_hour: Annotated[float, msgspec.Meta(gt=0, le=36_000)] = 12.0
    burst: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    # The same rule, vehicle and event within this many seconds is sent once.
    dedup_s: Annotated[float, msgspec.Meta(ge=0, le=86_400 * 7)] = 300.0
    enabled: bool = True
    description: Annotated[str, msgspec.Meta(max_length=1024)] | None = None

    def __post_init__(self) -> None:
        if self.kind is ChannelKind.EMAIL and not self.to:
            raise ValueError("an email channel needs recipients in 'to'")
        if self.kind is not ChannelKind.EMAIL and self.url is None:
            raise ValueError(f"a {self.kind.value} channel needs a 'url'")
        if self.kind is ChannelKind.WEBHOOK and self.secret is None:
            raise ValueError("a webhook channel needs a 'secret' (16+ characters) to sign its bodies")
        if self.min_severity not in _RANK:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}, got {self.min_severity!r}")


class Channel(msgspec.Struct, frozen=True):
    id: str
    body: ChannelBody
    created_at: float
    updated_at: float
    # The user a personal subscription belongs to; None for a fleet's channel.
    owner: str | None = None


class NotificationKind(enum.Enum):
    ALERT = "alert"
    REPORT = "report"


class Notification(msgspec.Struct, frozen=True):
    """One thing to tell one channel; waits in the outbox until a delivery takes it."""

    id: str
    channel_id: str
    # Unique per channel: the same alert event or report is never queued twice.
    key: str
    kind: NotificationKind
    severity: str
    created_at: float
    payload: dict[str, Any]
    delivery_id: str | None = None


class DeliveryState(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Dead-lettered: every attempt failed; replay puts it back to pending.
    DEAD = "dead"


class Delivery(msgspec.Struct):
    """One message to one channel: a single notification, or a digest of several."""

    id: str
    channel_id: str
    state: DeliveryState
    items: int
    created_at: float
    next_at: float
    attempts: int = 0
    last_error: str | None = None
    delivered_at: float | None = None
    updated_at: float = 0.0


class DeliveryQuery(msgspec.Struct, frozen=True):
    state: DeliveryState | None = None
    channel_id: str | None = None
    # Deliveries strictly before this (created_at, id), newest first.
    before: tuple[float, str] | None = None
    limit: int = 100

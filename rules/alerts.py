"""Alerts: what a rule raised for a vehicle, its lifecycle, and how a transition is published.

    active -> acknowledged (user, note, time) -> cleared (by the clear condition or a user)
    active -> cleared

At most one alert per rule and vehicle is open (active or acknowledged). Every
transition is published with QoS 1 on `alerts/{fleet}/{severity}/{rule}/{vid}`.
"""

from __future__ import annotations

import enum
import re
import uuid
from typing import Any, Final

import msgspec

from kernel import isoformat

_TOPIC_UNSAFE: Final = re.compile(r"[/+#\x00]")


class AlertState(enum.Enum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"

    @property
    def open(self) -> bool:
        return self is not AlertState.CLEARED


class AlertEventKind(enum.Enum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class Alert(msgspec.Struct):
    """One alert. Times are epoch seconds; `values` are the fields that triggered it."""

    id: str
    rule: str
    vehicle_id: str
    fleet: str
    severity: str
    state: AlertState
    message: str
    values: dict[str, Any]
    # When the condition began to hold (for a `for` rule, the start of the window) and
    # when the alert was raised.
    since: float
    raised_at: float
    updated_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    note: str | None = None
    cleared_at: float | None = None
    # "condition" when the clear condition cleared it, else the user who did.
    cleared_by: str | None = None
    clear_values: dict[str, Any] | None = None
    # The note of a clear by hand; `note` keeps the acknowledgement's.
    clear_note: str | None = None


def new_alert_id() -> str:
    return uuid.uuid4().hex


def alert_topic(alert: Alert) -> str:
    """`alerts/{fleet}/{severity}/{rule}/{vid}`; characters MQTT reserves become '_'."""
    parts = (alert.fleet, alert.severity, alert.rule, alert.vehicle_id)
    return "alerts/" + "/".join(_TOPIC_UNSAFE.sub("_", part) or "_" for part in parts)


class AlertView(msgspec.Struct):
    """An alert as the API and MQTT subscribers see it: RFC 3339 times."""

    id: str
    rule: str
    vehicle_id: str
    fleet: str
    severity: str
    state: str
    message: str
    values: dict[str, Any]
    since: str | None
    raised_at: str | None
    updated_at: str | None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    note: str | None = None
    cleared_at: str | None = None
    cleared_by: str | None = None
    clear_values: dict[str, Any] | None = None
    clear_note: str | None = None
    # Only on MQTT: which transition this message announces.
    event: str | None = None


def alert_view(alert: Alert, event: AlertEventKind | None = None) -> AlertView:
    return AlertView(
        id=alert.id,
        rule=alert.rule,
        vehicle_id=alert.vehicle_id,
        fleet=alert.fleet,
        severity=alert.severity,
        state=alert.state.value,
        message=alert.message,
        values=alert.values,
        since=isoformat(alert.since),
        raised_at=isoformat(alert.raised_at),
        updated_at=isoformat(alert.updated_at),
        acknowledged_at=isoformat(alert.acknowledged_at),
        acknowledged_by=alert.acknowledged_by,
        note=alert.note,
        cleared_at=isoformat(alert.cleared_at),
        cleared_by=alert.cleared_by,
        clear_values=alert.clear_values,
        clear_note=alert.clear_note,
        event=event.value if event else None,
    )


_encoder = msgspec.json.Encoder()


def event_payload(alert: Alert, event: AlertEventKind) -> bytes:
    """The JSON an alert topic carries for one transition."""
    return _encoder.encode(alert_view(alert, event))


class AlertQuery(msgspec.Struct, frozen=True):
    """Filters for listing alerts; times bound `raised_at`, `end` exclusive; newest first."""

    state: AlertState | None = None
    open_only: bool = False
    severity: str | None = None
    rule: str | None = None
    vehicle_id: str | None = None
    start: float | None = None
    end: float | None = None
    limit: int = 100
    # Alerts of these fleets only (a caller's tenant scope); None: every fleet.
    fleets: tuple[str, ...] | None = None

    def admits(self, alert: Alert) -> bool:
        return (
            (self.fleets is None or alert.fleet in self.fleets)
            and (self.state is None or alert.state is self.state)
            and (not self.open_only or alert.state.open)
            and (self.severity is None or alert.severity == self.severity)
            and (self.rule is None or alert.rule == self.rule)
            and (self.vehicle_id is None or alert.vehicle_id == self.vehicle_id)
            and (self.start is None or alert.raised_at >= self.start)
            and (self.end is None or alert.raised_at < self.end)
        )

"""What the twin service tells observers (the rules engine) after each committed change."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from twin.model import Json, ReportedEntry, TwinState


class UpdateKind(enum.Enum):
    TELEMETRY = "telemetry"
    DESIRED = "desired"
    TAGS = "tags"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class TwinUpdate:
    """One change to one twin, in the order the service applied it.

    `state` is the live twin after this change and all changes before it in the same
    batch; treat it as read-only. `changed` holds the paths it changed: reported leaves
    for telemetry, the patched paths for a desired or tags write (none: unknown, so
    anything). `previous` holds, for each reported leaf this update wrote (joined
    path), the entry it replaced, so observers can tell what changed and compute
    deltas and rates per message even when a batch carries several.
    """

    kind: UpdateKind
    vehicle_id: str
    state: TwinState
    at: float
    changed: tuple[tuple[str, ...], ...] = ()
    previous: dict[str, ReportedEntry | None] = field(default_factory=dict)


class TwinObserver(Protocol):
    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        """Called after each commit with that batch's updates, in order; must not block."""
        ...


class TelemetryEnricher(Protocol):
    def enrich(self, state: TwinState, ts: float, data: dict[str, Json]) -> dict[str, Json] | None:
        """Values to add to one telemetry message before it is merged and kept in history, or None.

        Called by the ingest consumer with the twin as it was before the message and the
        message's device time and data; must be quick and must not block. What it returns
        is merged over the message's own values (its keys win).
        """
        ...

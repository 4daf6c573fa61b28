"""Storage shapes of a twin: what the store persists and the service keeps in memory.

Reported state is kept as a flat map of leaf paths to last-writer-wins entries
(value and device timestamp). That is what makes ingest order-insensitive: each key
converges to the newest write whatever order messages arrive in, and the nested
document is derived from the entries (see `twin.paths.materialise`).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

# A JSON value as decoded by msgspec: dict, list, str, int, float, bool or None.
Json = Any

# Leaf paths are joined with the ASCII unit separator, which keys may not contain
# (see `twin.limits`), so a dotted key like "a.b" stays distinct from {"a": {"b": ...}}.
PATH_SEP = "\x1f"


class DesiredStatus(enum.Enum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ReportedEntry(msgspec.Struct, array_like=True, frozen=True):
    """The last write of one reported leaf; `value is None` is a deletion (tombstone)."""

    value: Json
    ts: float


class DesiredMeta(msgspec.Struct, omit_defaults=True):
    """Lifecycle of one desired leaf."""

    ts: float
    status: DesiredStatus = DesiredStatus.PENDING
    reason: str | None = None
    expires_at: float | None = None
    # Remove the key from desired once applied, for one-shot settings nobody needs kept.
    clear_on_apply: bool = False


class PendingDrop(msgspec.Struct, frozen=True, omit_defaults=True):
    """A drop whose offline event waits out `ingest.presence_debounce_s`.

    Stored with the twin so that whoever owns the vehicle next (a hub worker taking the
    partition over) finishes the debounce instead of losing it.
    """

    # When the link dropped (wall clock): the event's time, and where the debounce counts from.
    at: float
    reason: str
    # When the vehicle had come online; restored if it returns in time.
    online_since: float | None = None


class Connection(msgspec.Struct, omit_defaults=True):
    connected: bool = False
    since: float | None = None
    last_seen: float | None = None
    disconnect_reason: str | None = None
    # Set while a drop is debounced; cleared when the vehicle returns or the event is recorded.
    pending_drop: PendingDrop | None = None


class TwinState(msgspec.Struct, omit_defaults=True):
    """One vehicle's twin as persisted; the wire document is derived from it."""

    vehicle_id: str
    created_at: float
    updated_at: float
    fleet: str = "default"
    version: int = 0
    tags: dict[str, Json] = msgspec.field(default_factory=dict)
    desired: dict[str, Json] = msgspec.field(default_factory=dict)
    desired_meta: dict[str, DesiredMeta] = msgspec.field(default_factory=dict)
    reported: dict[str, ReportedEntry] = msgspec.field(default_factory=dict)
    connection: Connection = msgspec.field(default_factory=Connection)


class PresenceEvent(msgspec.Struct, frozen=True):
    """A vehicle came online or went offline (after debouncing flaps)."""

    vehicle_id: str
    ts: float
    connected: bool
    reason: str | None = None


class HistoryRow(msgspec.Struct, frozen=True):
    """One accepted telemetry message: the unit of history."""

    vehicle_id: str
    ts: float
    received_at: float
    seq: int | None
    data: dict[str, Json]

"""Operator writes of a twin as data, and the seam that decides where they are applied.

In the embedded hub every write is applied here. With several hubs on one database
(cluster/) only the owner of a vehicle's partition may write its twin: a `WriteRoute`
says whether this node is that owner, and hands the write to it otherwise. The writes
are msgspec Structs so they can travel (cluster/requests.py stores them in PostgreSQL).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from twin.batch import AuditRecord
from twin.document import TwinDocument
from twin.model import Json


class DesiredWrite(msgspec.Struct, frozen=True, tag="desired", forbid_unknown_fields=True):
    """Merge `patch` into desired state (PATCH .../twin/desired)."""

    vehicle_id: str
    patch: dict[str, Json]
    if_match: int | None = None
    ttl_s: float | None = None
    clear_applied: bool = False


class TagsWrite(msgspec.Struct, frozen=True, tag="tags", forbid_unknown_fields=True):
    """Merge `patch` into the vehicle's tags (PATCH .../tags)."""

    vehicle_id: str
    patch: dict[str, Json]
    if_match: int | None = None


class TwinCreate(msgspec.Struct, frozen=True, tag="provision", forbid_unknown_fields=True):
    """Create the twin in `fleet` (or move it there), merging `tags` (provisioning)."""

    vehicle_id: str
    fleet: str
    tags: dict[str, Json] = msgspec.field(default_factory=dict)


OperatorWrite = DesiredWrite | TagsWrite | TwinCreate


class WriteRoute(Protocol):
    """Where a vehicle's operator writes are applied when this node may not write its twin."""

    def here(self, vehicle_id: str) -> bool:
        """True when this node writes the vehicle's twin itself."""
        ...

    async def forward(
        self, write: OperatorWrite, audit: AuditRecord | None, *, since: float | None = None
    ) -> TwinDocument:
        """Have the owner apply `write` (with its audit entry) and return its answer, or raise its error.

        `since` (`time.monotonic()`): when the write was asked for; the timeouts count from then.
        """
        ...

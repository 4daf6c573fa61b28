"""What flows through the ingest pipeline: the items it takes and the batch it builds from them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twin.inbound import Channel, Inbound, Verdict
from twin.model import HistoryRow, PresenceEvent, TwinState
from twin.observe import TwinUpdate
from twin.stores.protocol import Statement

# Makes the audit entry of an operator write from the twin as changed (its fleet, its new version).
AuditRecord = Callable[[TwinState], Statement]


@dataclass(slots=True)
class Op:
    """An operator write run inside the consumer; `fn` mutates and returns the result."""

    vehicle_id: str
    fn: Callable[[TwinState], Any]
    done: asyncio.Future[Any]
    create: bool = False
    # The paths the write patches, told to observers so they look only at what it touched.
    changed: tuple[tuple[str, ...], ...] = ()
    # Rows made from the changed twin that commit in the same transaction: its audit entry, and
    # for a write forwarded by another node its stored answer (cluster/requests.py).
    records: tuple[AuditRecord, ...] = ()


# One thing for the consumer: a vehicle message or presence change, or an operator write.
Item = Inbound | Op


@dataclass(slots=True)
class Batch:
    """What applying a run of items produced: written in one transaction, then released."""

    dirty: dict[str, TwinState] = field(default_factory=dict)
    history: list[HistoryRow] = field(default_factory=list)
    acks: list[asyncio.Future[Verdict]] = field(default_factory=list)
    results: list[tuple[asyncio.Future[Any], Any]] = field(default_factory=list)
    # Messages to vehicles, sent only after the data they reflect is committed.
    outbox: list[tuple[str, Channel, bytes]] = field(default_factory=list)
    updates: list[TwinUpdate] = field(default_factory=list)
    presence: list[PresenceEvent] = field(default_factory=list)
    # Rows that commit with the twins (the audit entries of operator writes).
    statements: list[Statement] = field(default_factory=list)
    accepted: int = 0

    @property
    def writes(self) -> bool:
        return bool(self.dirty or self.history or self.presence)


class DeltaChanged:
    """Marks an operator write after which the vehicle must get its new delta."""


def topic_of(item: Inbound) -> str:
    """The topic below `vehicles/{vid}/` an item came on."""
    return item.kind.value if not item.subtopic else f"commands/{item.subtopic}/result"

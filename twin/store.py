"""The store seam: what the twin service needs from a database."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

import msgspec

from twin.model import HistoryRow, TwinState


class Order(enum.Enum):
    ASC = "asc"
    DESC = "desc"


class HistoryQuery(msgspec.Struct, frozen=True):
    vehicle_id: str
    start: float | None = None
    end: float | None = None
    # Top-level or dotted field paths to keep; None keeps every field.
    fields: tuple[str, ...] | None = None
    limit: int = 1000
    order: Order = Order.ASC


class TwinFilter(msgspec.Struct, frozen=True):
    fleet: str | None = None
    connected: bool | None = None
    # Keyset pagination: vehicle ids strictly after this one.
    after: str | None = None
    limit: int = 100


class StoreInfo(msgspec.Struct, frozen=True):
    backend: str
    url: str
    schema_version: int
    detail: str = ""


class Store(Protocol):
    """A durable home for twins and history; every implementation passes tests/contract."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def load_twin(self, vehicle_id: str) -> TwinState | None: ...

    async def write_batch(self, twins: Sequence[TwinState], history: Sequence[HistoryRow]) -> None:
        """Upsert twins and append history in one transaction; duplicate history rows
        (same vehicle, device time and seq) are ignored."""
        ...

    async def list_twins(self, query: TwinFilter) -> list[TwinState]: ...

    async def count_twins(self, fleet: str | None = None) -> int: ...

    async def history(self, query: HistoryQuery) -> list[HistoryRow]: ...

    async def info(self) -> StoreInfo: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        ...

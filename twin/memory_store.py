"""An in-memory store with the same contract as the SQL stores, for fast tests."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from twin.model import HistoryRow, TwinState
from twin.sqlite_store import project
from twin.store import HistoryQuery, Order, StoreInfo, TwinFilter


class MemoryStore:
    def __init__(self) -> None:
        self.twins: dict[str, TwinState] = {}
        self.rows: list[HistoryRow] = []
        self._keys: set[tuple[str, float, int]] = set()
        self.batches = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def load_twin(self, vehicle_id: str) -> TwinState | None:
        state = self.twins.get(vehicle_id)
        return copy.deepcopy(state) if state is not None else None

    async def write_batch(self, twins: Sequence[TwinState], history: Sequence[HistoryRow]) -> None:
        self.batches += 1
        for row in history:
            if row.seq is not None:
                key = (row.vehicle_id, row.ts, row.seq)
                if key in self._keys:
                    continue
                self._keys.add(key)
            self.rows.append(row)
        for twin in twins:
            self.twins[twin.vehicle_id] = copy.deepcopy(twin)

    async def list_twins(self, query: TwinFilter) -> list[TwinState]:
        out = [
            copy.deepcopy(t)
            for vid, t in sorted(self.twins.items())
            if (query.fleet is None or t.fleet == query.fleet)
            and (query.connected is None or t.connection.connected == query.connected)
            and (query.after is None or vid > query.after)
        ]
        return out[: query.limit]

    async def count_twins(self, fleet: str | None = None) -> int:
        return sum(1 for t in self.twins.values() if fleet is None or t.fleet == fleet)

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        rows = [
            r
            for r in self.rows
            if r.vehicle_id == query.vehicle_id
            and (query.start is None or r.ts >= query.start)
            and (query.end is None or r.ts < query.end)
        ]
        rows.sort(key=lambda r: r.ts, reverse=query.order is Order.DESC)
        return [
            HistoryRow(r.vehicle_id, r.ts, r.received_at, r.seq, project(r.data, query.fields))
            for r in rows[: query.limit]
        ]

    async def info(self) -> StoreInfo:
        return StoreInfo(backend="memory", url="memory://", schema_version=0)

    async def ping(self) -> None:
        return None

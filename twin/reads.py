"""The twin read model: what the API and the console read, never changing a twin.

Reads prefer the live twin (it may hold a change whose commit is in flight) and fall
back to the store.
"""

from __future__ import annotations

from collections.abc import Callable

from kernel import NotFound
from twin.document import TwinAsOf, TwinDocument, to_as_of
from twin.live import LiveTwins
from twin.merge import apply_reported
from twin.model import HistoryRow, TwinState
from twin.paths import flatten
from twin.stores.protocol import HistoryQuery, Store, TwinFilter


class TwinReads:
    def __init__(self, store: Store, live: LiveTwins, document: Callable[[TwinState], TwinDocument]) -> None:
        self.store = store
        self.live = live
        self.document = document

    async def state(self, vehicle_id: str) -> TwinState | None:
        """The live twin (read-only for the caller), or None when the vehicle has none."""
        return self.live.peek(vehicle_id) or await self.store.load_twin(vehicle_id)

    async def states(self, query: TwinFilter) -> list[TwinState]:
        """Stored twins matching `query`, each replaced by its live version when one is held."""
        return [self.live.peek(s.vehicle_id) or s for s in await self.store.list_twins(query)]

    async def get_twin(self, vehicle_id: str) -> TwinDocument:
        state = await self.state(vehicle_id)
        if state is None:
            raise NotFound(f"vehicle '{vehicle_id}' not found")
        return self.document(state)

    async def twin_at(self, vehicle_id: str, at: float) -> TwinAsOf:
        """Reported state as of `at`, replayed from history through the same merge as ingest."""
        current = await self.state(vehicle_id)
        if current is None:
            raise NotFound(f"vehicle '{vehicle_id}' not found")
        rebuilt = TwinState(vehicle_id=vehicle_id, created_at=current.created_at, updated_at=at)
        rows = 0
        cursor: str | None = None
        while True:
            page = await self.store.history_until(vehicle_id, at, cursor=cursor, limit=1000)
            for row in page.rows:
                apply_reported(rebuilt, flatten(row.data), row.ts)
            rows += len(page.rows)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return to_as_of(vehicle_id, current.fleet, at, rebuilt, rows)

    async def list_twins(self, query: TwinFilter) -> list[TwinDocument]:
        # The live twin may hold a change whose commit is still in flight.
        return [self.document(state) for state in await self.states(query)]

    async def history(self, query: HistoryQuery) -> list[HistoryRow]:
        if self.live.peek(query.vehicle_id) is None and await self.store.load_twin(query.vehicle_id) is None:
            raise NotFound(f"vehicle '{query.vehicle_id}' not found")
        return await self.store.history(query)

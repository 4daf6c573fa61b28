"""The live twins: the write side's in-memory twins, loaded from the store on first use.

Only the consumer changes them. A twin loaded from the store is reconciled with the
sessions the hub knows of (the stored `connected` flag may be stale after a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from twin.inbound import DisconnectReason
from twin.model import Connection, TwinState
from twin.stores.protocol import Store

_encode = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(TwinState).decode


class LiveTwins:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._twins: dict[str, TwinState] = {}
        # What the current batch's prefetch found in the store (None: no twin stored).
        self._fetched: dict[str, TwinState | None] = {}
        # Vehicles with an open session, including ones that have no twin yet: vehicle -> online since.
        self.online: dict[str, float] = {}
        # Twins a commit in flight is writing: the next change to one goes to a copy.
        self._frozen: set[str] = set()

    def __len__(self) -> int:
        return len(self._twins)

    def vehicles(self) -> list[str]:
        """The vehicles whose twins are in memory."""
        return list(self._twins)

    def peek(self, vehicle_id: str) -> TwinState | None:
        """The live twin if it is in memory; never touches the store."""
        return self._twins.get(vehicle_id)

    def missing(self, vehicle_ids: Iterable[str]) -> set[str]:
        return {vid for vid in vehicle_ids if vid not in self._twins}

    def prefetched(self, found: dict[str, TwinState | None]) -> None:
        self._fetched = found

    def end_batch(self) -> None:
        self._fetched = {}

    def freeze(self, vehicle_ids: Iterable[str]) -> None:
        """The commit now in flight holds these twins: they must not change under it."""
        self._frozen = set(vehicle_ids)

    def thaw(self) -> None:
        self._frozen = set()

    def forget(self, vehicle_ids: Iterable[str]) -> None:
        """Drop twins an uncommitted batch changed: they reload as committed."""
        for vid in vehicle_ids:
            self._twins.pop(vid, None)
            self._fetched.pop(vid, None)

    async def get(self, vehicle_id: str, *, create: bool = False) -> TwinState | None:
        state = self._twins.get(vehicle_id)
        if state is not None:
            if vehicle_id in self._frozen:
                # Copy on write: the committing batch keeps the object it applied.
                self._frozen.discard(vehicle_id)
                state = self._twins[vehicle_id] = _decode_state(_encode(state))
            return state
        if vehicle_id in self._fetched:
            state = self._fetched[vehicle_id]
        else:
            state = await self.store.load_twin(vehicle_id)
        if state is None:
            if not create:
                return None
            now = self.clock()
            state = TwinState(vehicle_id=vehicle_id, created_at=now, updated_at=now)
        online_since = self.online.get(vehicle_id)
        if online_since is not None and not state.connection.connected:
            state.connection = Connection(connected=True, since=online_since, last_seen=state.connection.last_seen)
        elif online_since is None and state.connection.connected:
            # The hub restarted or the vehicle left while it was down: the stored flag is stale.
            state.connection = Connection(
                connected=False,
                since=self.clock(),
                last_seen=state.connection.last_seen,
                disconnect_reason=DisconnectReason.CONNECTION_LOST.value,
            )
        self._twins[vehicle_id] = state
        return state

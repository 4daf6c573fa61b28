"""A debounced drop is stored with the twin, so a new owner of the vehicle finishes it."""

import asyncio
import time

from kernel import isoformat
from twin import (
    Inbound,
    IngestSettings,
    MemoryStore,
    MessageKind,
    PendingDrop,
    TwinFilter,
    TwinService,
    TwinUpdate,
    UpdateKind,
    running,
)

DEBOUNCE_S = 5.0


class Drops:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        self.seen += [u.vehicle_id for u in updates if u.kind is UpdateKind.DISCONNECTED]


def _service(store: MemoryStore) -> tuple[TwinService, Drops]:
    service = TwinService(store, settings=IngestSettings(presence_debounce_s=DEBOUNCE_S))
    drops = Drops()
    service.observers.append(drops)
    return service, drops


async def _send(service: TwinService, vid: str, kind: MessageKind, *, at: float, body: bytes = b"") -> None:
    item = Inbound(vid, kind, body, received_at=at, qos=1, extra={"reason": "keepalive_timeout"})
    item.ack = asyncio.get_running_loop().create_future()
    await service.submit(item)
    await item.ack


def _events(store: MemoryStore, vid: str) -> list[tuple[bool, float]]:
    return [(p.connected, p.ts) for p in store.presence if p.vehicle_id == vid]


async def _after_drop(store: MemoryStore, vid: str, wait_s: float) -> list[tuple[bool, float]]:
    """The vehicle's presence events once a second one (the drop) is stored, or when wait_s ran out."""
    for _ in range(round(wait_s / 0.05)):
        if len(_events(store, vid)) >= 2:
            break
        await asyncio.sleep(0.05)
    return _events(store, vid)


def _pending(store: MemoryStore, vid: str) -> PendingDrop | None:
    return store.twins[vid].connection.pending_drop


async def _stored_pending(store: MemoryStore) -> dict[str, PendingDrop]:
    """What a hub worker reads when it takes a partition over (cluster/worker.py `_pending_drops`)."""
    twins = await store.list_twins(TwinFilter(connected=False, limit=1000))
    return {t.vehicle_id: p for t in twins if (p := t.connection.pending_drop) is not None}


async def _dropped_at_old_owner(store: MemoryStore, vid: str, *, online: float, dropped: float) -> None:
    """The old owner sees the vehicle connect and drop; its partition moves before the debounce ends."""
    old, old_drops = _service(store)
    async with running(old):
        await _send(old, vid, MessageKind.CONNECTED, at=online)
        await _send(old, vid, MessageKind.TELEMETRY, at=online, body=b'{"soc": 50}')
        await _send(old, vid, MessageKind.DISCONNECTED, at=dropped)
        assert _pending(store, vid) == PendingDrop(dropped, "keepalive_timeout", online)
        old.forget(lambda _vid: True)
    # Stopping flushes pending drops: forgotten (moved) ones are the new owner's.
    assert old_drops.seen == []
    assert _events(store, vid) == [(True, online)]


async def test_the_new_owner_reports_a_moved_drop_when_its_debounce_runs_out() -> None:
    store = MemoryStore()
    t0 = time.time()
    # The drop happened DEBOUNCE_S - 0.5 s ago: about half a second of debounce is left.
    dropped = t0 - DEBOUNCE_S + 0.5
    await _dropped_at_old_owner(store, "veh-1", online=dropped - 60, dropped=dropped)
    new, drops = _service(store)
    async with running(new):
        new.adopt_pending(await _stored_pending(store))
        await asyncio.sleep(0.1)
        assert _events(store, "veh-1") == [(True, dropped - 60)]  # not yet: the rest of the debounce
        # Stamped with the time the link dropped; the flag cleared in the same commit.
        assert await _after_drop(store, "veh-1", 5) == [(True, dropped - 60), (False, dropped)]
        assert _pending(store, "veh-1") is None
        assert drops.seen == ["veh-1"]


async def test_a_moved_drop_whose_debounce_ran_out_is_reported_at_once() -> None:
    store = MemoryStore()
    dropped = time.time() - DEBOUNCE_S - 30
    await _dropped_at_old_owner(store, "veh-2", online=dropped - 60, dropped=dropped)
    new, drops = _service(store)
    async with running(new):
        new.adopt_pending(await _stored_pending(store))
        assert await _after_drop(store, "veh-2", 1) == [(True, dropped - 60), (False, dropped)]
        assert _pending(store, "veh-2") is None
        assert drops.seen == ["veh-2"]


async def test_a_vehicle_back_in_time_at_the_new_owner_is_a_flap() -> None:
    store = MemoryStore()
    t0 = time.time()
    online, dropped = t0 - 120, t0 - 1
    await _dropped_at_old_owner(store, "veh-3", online=online, dropped=dropped)
    # Positive control on the same store: another vehicle, left alone, is reported.
    await _dropped_at_old_owner(store, "veh-4", online=online, dropped=t0 - DEBOUNCE_S + 0.3)
    new, drops = _service(store)
    async with running(new):
        new.adopt_pending(await _stored_pending(store))
        await _send(new, "veh-3", MessageKind.CONNECTED, at=t0)
        conn = (await new.get_twin("veh-3")).connection
        assert (conn.connected, conn.since) == (True, isoformat(online))
        assert _pending(store, "veh-3") is None
        assert len(await _after_drop(store, "veh-4", 2)) == 2
    # The flap left no events and told observers nothing.
    assert _events(store, "veh-3") == [(True, online)]
    assert drops.seen == ["veh-4"]


async def test_a_drop_resolved_by_a_reconnect_leaves_nothing_pending() -> None:
    store = MemoryStore()
    service, _ = _service(store)
    t0 = time.time()
    async with running(service):
        await _send(service, "veh-5", MessageKind.CONNECTED, at=t0)
        await _send(service, "veh-5", MessageKind.TELEMETRY, at=t0, body=b'{"soc": 50}')
        await _send(service, "veh-5", MessageKind.DISCONNECTED, at=t0 + 1)
        assert _pending(store, "veh-5") is not None
        await _send(service, "veh-5", MessageKind.CONNECTED, at=t0 + 2)
        assert _pending(store, "veh-5") is None
        assert await _stored_pending(store) == {}

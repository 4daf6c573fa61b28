"""Presence events: real online/offline changes are stored, flaps inside the debounce are not."""

import asyncio
import time

from kernel import isoformat
from twin import (
    Inbound,
    IngestSettings,
    MemoryStore,
    MessageKind,
    Order,
    PresenceEvent,
    PresenceQuery,
    TwinService,
    TwinUpdate,
    UpdateKind,
    running,
)

DEBOUNCE_S = 0.2


class Kinds:
    def __init__(self) -> None:
        self.seen: list[tuple[str, UpdateKind]] = []

    def twin_updated(self, updates: list[TwinUpdate]) -> None:
        self.seen += [
            (u.vehicle_id, u.kind) for u in updates if u.kind in (UpdateKind.CONNECTED, UpdateKind.DISCONNECTED)
        ]


def _service(debounce_s: float = DEBOUNCE_S) -> tuple[TwinService, MemoryStore, Kinds]:
    store = MemoryStore()
    service = TwinService(store, settings=IngestSettings(presence_debounce_s=debounce_s))
    kinds = Kinds()
    service.observers.append(kinds)
    return service, store, kinds


async def _send(
    service: TwinService, vid: str, kind: MessageKind, *, at: float, body: bytes = b"", **extra: str
) -> None:
    item = Inbound(vid, kind, body, received_at=at, qos=1, extra=dict(extra))
    item.ack = asyncio.get_running_loop().create_future()
    await service.submit(item)
    await item.ack


async def _online(service: TwinService, vid: str, at: float) -> None:
    await _send(service, vid, MessageKind.CONNECTED, at=at)
    await _send(service, vid, MessageKind.TELEMETRY, at=at, body=b'{"soc": 50}')


def _events(store: MemoryStore, vid: str) -> list[tuple[bool, str | None]]:
    return [(p.connected, p.reason) for p in store.presence if p.vehicle_id == vid]


async def test_a_drop_becomes_an_event_after_the_debounce_and_the_twin_shows_it_at_once() -> None:
    service, store, kinds = _service()
    async with running(service):
        t0 = time.time()
        await _online(service, "veh-1", t0)
        await _send(service, "veh-1", MessageKind.DISCONNECTED, at=t0 + 1, reason="keepalive_timeout")
        conn = (await service.get_twin("veh-1")).connection
        assert (conn.connected, conn.disconnect_reason) == (False, "keepalive_timeout")
        assert _events(store, "veh-1") == [(True, None)]
        await asyncio.sleep(DEBOUNCE_S * 3)
        assert _events(store, "veh-1") == [(True, None), (False, "keepalive_timeout")]
        # The event keeps the time the link dropped, not the time the debounce ran out.
        assert store.presence[-1].ts == t0 + 1
    assert kinds.seen == [("veh-1", UpdateKind.DISCONNECTED)]


async def test_a_flapping_link_leaves_no_events_and_keeps_since() -> None:
    service, store, kinds = _service(debounce_s=5)
    async with running(service):
        t0 = time.time()
        await _online(service, "veh-2", t0)
        since = (await service.get_twin("veh-2")).connection.since
        for k in range(20):
            await _send(service, "veh-2", MessageKind.DISCONNECTED, at=t0 + k + 0.5, reason="connection_lost")
            await _send(service, "veh-2", MessageKind.CONNECTED, at=t0 + k + 0.7)
        conn = (await service.get_twin("veh-2")).connection
        assert conn.connected is True
        assert conn.since == since == isoformat(t0)
        assert _events(store, "veh-2") == [(True, None)]
    assert kinds.seen == []


async def test_stopping_reports_drops_still_waiting() -> None:
    service, store, kinds = _service(debounce_s=60)
    async with running(service):
        t0 = time.time()
        await _online(service, "veh-3", t0)
        await _send(service, "veh-3", MessageKind.DISCONNECTED, at=t0 + 2, reason="shutdown")
    assert _events(store, "veh-3") == [(True, None), (False, "shutdown")]
    assert kinds.seen == [("veh-3", UpdateKind.DISCONNECTED)]


async def test_zero_debounce_reports_every_change_at_once() -> None:
    service, store, _ = _service(debounce_s=0)
    async with running(service):
        t0 = time.time()
        await _online(service, "veh-4", t0)
        await _send(service, "veh-4", MessageKind.DISCONNECTED, at=t0 + 1, reason="clean")
        assert _events(store, "veh-4") == [(True, None), (False, "clean")]
        await _send(service, "veh-4", MessageKind.CONNECTED, at=t0 + 2)
        assert _events(store, "veh-4") == [(True, None), (False, "clean"), (True, None)]


async def test_a_return_after_the_window_is_a_new_session() -> None:
    service, store, _ = _service()
    async with running(service):
        t0 = time.time()
        await _online(service, "veh-5", t0)
        await _send(service, "veh-5", MessageKind.DISCONNECTED, at=t0 + 1, reason="connection_lost")
        await asyncio.sleep(DEBOUNCE_S * 3)
        await _send(service, "veh-5", MessageKind.CONNECTED, at=t0 + 10)
        assert (await service.get_twin("veh-5")).connection.since == isoformat(t0 + 10)
        got = await store.presence_history(PresenceQuery("veh-5", order=Order.DESC))
        assert got == [
            PresenceEvent("veh-5", t0 + 10, True),
            PresenceEvent("veh-5", t0 + 1, False, "connection_lost"),
            PresenceEvent("veh-5", t0, True),
        ]

"""One contract for every notifications store backend: in memory, SQLite and PostgreSQL."""

import pytest

from kernel import PostgresDatabase, SqliteDatabase
from notifications import (
    Channel,
    ChannelBody,
    ChannelKind,
    Delivery,
    DeliveryQuery,
    DeliveryState,
    MemoryNotificationStore,
    Notification,
    NotificationKind,
    SqlNotificationStore,
)
from security import Actor, audit_entry

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    if request.param == "memory":
        async with MemoryNotificationStore() as memory:
            yield memory
        return
    if request.param == "sqlite":
        async with SqliteDatabase(f"sqlite:///{tmp_path}/hub.db") as db, SqlNotificationStore(db) as sqlite:
            yield sqlite
        return
    url = request.getfixturevalue("pg_url")
    async with PostgresDatabase(url, pool_min_size=1, pool_max_size=2) as db, SqlNotificationStore(db) as pg:
        yield pg


def channel(cid="ops", **body) -> Channel:
    return Channel(cid, ChannelBody(**{"kind": ChannelKind.CHAT, "url": "http://x/", **body}), 1.0, 2.0)


def item(nid, channel_id="ops", key=None, at=10.0, severity="major") -> Notification:
    payload = {"rule": "r", "vehicle_id": "v1", "nested": {"a": [1, 2]}, "message": "é"}
    return Notification(nid, channel_id, key or f"alert:{nid}:raised", NotificationKind.ALERT, severity, at, payload)


def delivery(did, channel_id="ops", at=20.0, state=DeliveryState.PENDING, next_at=None, items=1) -> Delivery:
    return Delivery(did, channel_id, state, items, at, at if next_at is None else next_at, updated_at=at)


async def test_channels_round_trip_replace_and_delete(store):
    """Channels read back as written (owner included); delete drops its untaken notifications."""
    await store.put_channel(channel("ops", fleet="north", rules=["maintenance.*"]))
    await store.put_channel(Channel("u.ana.mine", ChannelBody(kind=ChannelKind.EMAIL, to=["a@x.io"]), 1.0, 2.0, "ana"))
    await store.put_channel(channel("ops", min_severity="critical"))
    found = await store.list_channels()
    assert [c.id for c in found] == ["ops", "u.ana.mine"]
    assert found[0].body.min_severity == "critical"
    assert found[1].owner == "ana"
    await store.add_notifications([item("n1"), item("n2")])
    await store.create_delivery(delivery("d1"), ["n1"])
    assert await store.delete_channel("ops") is True
    assert [i.id for i in await store.pending(10)] == []
    assert [i.id for i in await store.delivery_items("d1")] == ["n1"]


async def test_notifications_are_queued_once_per_channel_and_key(store):
    """The same (channel, key) offered twice is queued once; other channels or keys are not affected."""
    assert await store.add_notifications([item("n1", key="k"), item("n2", key="k"), item("n3", "other", key="k")]) == 2
    assert await store.add_notifications([item("n4", key="k")]) == 0
    pending = await store.pending(10)
    assert [i.id for i in pending] == ["n1", "n3"]
    assert pending[0] == item("n1", key="k")
    assert [i.id for i in await store.pending(10, "other")] == ["n3"]
    assert await store.pending_channels() == ["ops", "other"]


async def test_a_delivery_takes_its_items_and_is_retried_until_delivered(store):
    """Creating a delivery takes its items out of pending; due deliveries follow next_at; updates stick."""
    await store.add_notifications([item("n1", at=1.0), item("n2", at=2.0), item("n3", at=3.0)])
    await store.create_delivery(delivery("d1", items=2), ["n1", "n2"])
    assert [i.id for i in await store.pending(10)] == ["n3"]
    await store.create_delivery(delivery("d9", next_at=1000.0), ["n3"])
    assert await store.pending_channels() == []
    assert [i.id for i in await store.delivery_items("d1")] == ["n1", "n2"]
    assert [d.id for d in await store.due_deliveries(20.0, 10)] == ["d1"]
    failed = delivery("d1", items=2)
    failed.attempts, failed.next_at, failed.last_error = 1, 50.0, "HTTP 503"
    await store.update_delivery(failed)
    assert await store.due_deliveries(49.0, 10) == []
    assert await store.get_delivery("d1") == failed
    failed.state, failed.delivered_at = DeliveryState.DELIVERED, 51.0
    await store.update_delivery(failed)
    assert await store.due_deliveries(100.0, 10) == []


async def test_an_item_goes_to_one_delivery_and_a_delivery_to_one_claimer(store):
    """Two hubs offering the same items: each item is taken once, and a delivery whose items all went
    elsewhere is not stored; a due delivery is claimed by one hub, due again when the claim ends."""
    await store.add_notifications([item("n1", at=1.0), item("n2", at=2.0), item("n3", at=3.0)])
    assert await store.create_delivery(delivery("d1", items=2), ["n1", "n2"]) == 2
    assert await store.create_delivery(delivery("d2", items=3), ["n1", "n2", "n3"]) == 1
    assert await store.create_delivery(delivery("d3", items=1), ["n3"]) == 0
    assert await store.get_delivery("d3") is None
    assert (await store.get_delivery("d2")).items == 1  # type: ignore[union-attr]
    assert [i.id for i in await store.delivery_items("d2")] == ["n3"]
    assert await store.claim_delivery("d1", 20.0, 80.0) is True
    assert await store.claim_delivery("d1", 20.0, 80.0) is False
    assert [d.id for d in await store.due_deliveries(79.0, 10)] == ["d2"]
    assert await store.claim_delivery("d1", 80.0, 140.0) is True  # the first claimer died: taken over


async def test_dead_letters_list_and_replay(store):
    """Only a dead delivery replays: back to pending, attempts reset, due now; the replay is audited."""
    await store.create_delivery(delivery("d1", at=1.0, state=DeliveryState.DEAD), [])
    await store.create_delivery(delivery("d2", at=2.0), [])
    await store.create_delivery(delivery("d3", at=3.0, channel_id="other", state=DeliveryState.DEAD), [])
    dead = await store.list_deliveries(DeliveryQuery(state=DeliveryState.DEAD))
    assert [d.id for d in dead] == ["d3", "d1"]
    assert [d.id for d in await store.list_deliveries(DeliveryQuery(channel_id="ops"))] == ["d2", "d1"]
    assert [d.id for d in await store.list_deliveries(DeliveryQuery(before=(2.0, "d2")))] == ["d1"]
    entry = audit_entry(Actor("ana", "127.0.0.1"), "notifications.delivery.replay", 9.0, target="d1")
    assert await store.replay("d1", 9.0, audit=entry) is True
    assert await store.replay("d2", 9.0) is False
    replayed = await store.get_delivery("d1")
    assert (replayed.state, replayed.attempts, replayed.next_at) == (DeliveryState.PENDING, 0, 9.0)

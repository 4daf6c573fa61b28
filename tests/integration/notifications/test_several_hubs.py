"""Several hubs on one PostgreSQL database share the outbox: each notification reaches its endpoint once."""

import asyncio
import json
from collections import Counter

import pytest

from kernel import PostgresDatabase
from notifications import NotificationService, SqlNotificationStore
from tests.helpers import eventually
from tests.integration.notifications.test_delivery import alert, receiver, settings, webhook

pytestmark = pytest.mark.postgres

__all__ = ["receiver"]  # the fixture


def _received(receiver) -> Counter[str]:
    """How often each alert id reached the endpoint."""
    with receiver.lock:
        bodies = [json.loads(r.body) for r in receiver.accepted]
    return Counter(item["id"] for body in bodies for item in body["items"])


async def test_two_hubs_dispatching_at_once_deliver_each_notification_once(pg_url, receiver):
    """Both hubs form and attempt deliveries at the same time (as around a change of lead): the store's
    claims give every alert to exactly one delivery and every delivery to one attempt."""
    async with (
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db_a,
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db_b,
    ):
        a = NotificationService(SqlNotificationStore(db_a), settings())
        b = NotificationService(SqlNotificationStore(db_b), settings())
        a.dispatches = b.dispatches = lambda: True
        async with a, b:
            await a.put_channel("ops", webhook(receiver.url, fleet="north", rate_per_hour=36000, burst=1000))
            await eventually(lambda: _true([c.id for c in b.list_channels()]), wait_s=10)
            sent = [alert(n) for n in range(60)]
            for n, event in enumerate(sent):
                await (a if n % 2 else b).alert_event(event)
                if n % 10 == 0:
                    await asyncio.sleep(0.02)
            await eventually(lambda: _true(sum(_received(receiver).values()) >= 60), wait_s=30)
            await asyncio.sleep(0.3)  # six more rounds of each hub: a repeat would have arrived
            assert _received(receiver) == Counter({e["id"]: 1 for e in sent})


async def test_only_the_hub_that_dispatches_sends(pg_url, receiver):
    """Hubs queue wherever an alert is raised; the one `dispatches` names sends, and the lead can move."""
    lead = {"hub": "a"}
    async with (
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db_a,
        PostgresDatabase(pg_url, pool_min_size=1, pool_max_size=4) as db_b,
    ):
        a = NotificationService(SqlNotificationStore(db_a), settings())
        b = NotificationService(SqlNotificationStore(db_b), settings())
        a.dispatches = lambda: lead["hub"] == "a"
        b.dispatches = lambda: lead["hub"] == "b"
        async with a, b:
            await b.put_channel("ops", webhook(receiver.url, fleet="north", rate_per_hour=36000, burst=1000))
            await eventually(lambda: _true([c.id for c in a.list_channels()]), wait_s=10)
            first = [alert(n) for n in range(5)]
            for event in first:
                await b.alert_event(event)
            await eventually(lambda: _true(sum(_received(receiver).values()) == 5), wait_s=20)
            # Alerts queued in one round go out as one digest: a send is a delivery or a digest.
            assert _sent(a) > 0
            assert _sent(b) == 0
            lead["hub"] = "b"
            by_a = _sent(a)
            second = [alert(n) for n in range(5, 10)]
            for event in second:
                await a.alert_event(event)
            await eventually(lambda: _true(sum(_received(receiver).values()) == 10), wait_s=20)
            assert _sent(b) > 0
            assert _sent(a) == by_a
            assert _received(receiver) == Counter({e["id"]: 1 for e in first + second})


def _sent(hub: NotificationService) -> int:
    return hub.counters.delivered + hub.counters.digests


async def _true(value: object) -> object:
    return value or None

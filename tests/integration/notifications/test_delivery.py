"""Deliveries against real endpoints: a local HTTP server that fails then recovers, and aiosmtpd."""

import asyncio
import json
import time
import uuid

import pytest

from kernel import SqliteDatabase
from notifications import (
    ChannelBody,
    ChannelKind,
    DeliveryQuery,
    DeliveryState,
    NotificationService,
    NotificationSettings,
    SqlNotificationStore,
    verify,
)
from tests.helpers import eventually
from tests.integration.notifications.servers import Receiver, SmtpServer

SECRET = "a-webhook-secret-of-some-length"


def settings(**overrides) -> NotificationSettings:
    base = {"poll_interval_s": 0.05, "retry_base_s": 0.05, "retry_max_s": 0.2, "max_attempts": 3}
    return NotificationSettings(**{**base, **overrides})


def alert(n: int = 0, *, rule="maintenance.oil.overdue", severity="major", fleet="north", event="raised") -> dict:
    return {
        "id": uuid.uuid4().hex,
        "rule": rule,
        "vehicle_id": f"veh-{n:04d}",
        "fleet": fleet,
        "severity": severity,
        "state": "active",
        "message": f"Oil overdue for veh-{n:04d}",
        "values": {"remaining_km": -12.5},
        "raised_at": "2026-12-06T05:00:00.000Z",
        "event": event,
    }


@pytest.fixture
async def db(tmp_path):
    async with SqliteDatabase(f"sqlite:///{tmp_path}/hub.db") as database:
        yield database


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def webhook(url: str, **more) -> ChannelBody:
    return ChannelBody(kind=ChannelKind.WEBHOOK, url=url, secret=SECRET, **more)


async def test_webhook_is_signed_retried_and_delivered_once_the_endpoint_recovers(db, receiver):
    """Two 503s, then 200: three signed attempts of the same delivery, recorded as delivered."""
    receiver.fail_first = 2
    async with NotificationService(SqlNotificationStore(db), settings()) as service:
        await service.put_channel("ops", webhook(receiver.url, fleet="north"))
        assert await service.alert_event(alert(1)) == 1
        assert await service.alert_event(alert(2, fleet="south")) == 0  # another fleet: not routed
        await eventually(lambda: _true(receiver.accepted), wait_s=20)

        async def recorded():
            # The endpoint has it; the worker records the outcome right after the response.
            found = await service.list_deliveries(DeliveryQuery())
            return found if found[0].state is DeliveryState.DELIVERED else None

        deliveries = await eventually(recorded, wait_s=20)
    assert len(receiver.requests) == 3
    ids = {r.headers["x-fleethub-delivery"] for r in receiver.requests}
    assert ids == {deliveries[0].id}
    for request in receiver.requests:
        assert verify(SECRET, request.headers["x-fleethub-signature"], request.body)
    body = json.loads(receiver.accepted[0].body)
    assert (body["kind"], body["count"], body["items"][0]["vehicle_id"]) == ("alert", 1, "veh-0001")
    assert (deliveries[0].state, deliveries[0].attempts) == (DeliveryState.DELIVERED, 2)


async def _true(value):
    return bool(value)


async def test_dead_lettered_after_the_limit_and_replayable(db, receiver):
    """A dead endpoint: max_attempts failures dead-letter the delivery; replay after recovery delivers it."""
    receiver.fail_first = 10**9
    async with NotificationService(SqlNotificationStore(db), settings(max_attempts=3)) as service:
        await service.put_channel("ops", webhook(receiver.url))
        await service.alert_event(alert(1))

        async def dead():
            return await service.list_deliveries(DeliveryQuery(state=DeliveryState.DEAD))

        [letter] = await eventually(dead, wait_s=20)
        assert (letter.attempts, letter.last_error) == (3, f"HTTP 503 from {receiver.url}")
        assert len(receiver.requests) == 3
        receiver.fail_first = 0
        receiver.requests.clear()
        replayed = await service.replay(letter.id)
        assert replayed.state is DeliveryState.PENDING
        await eventually(lambda: _true(receiver.accepted), wait_s=20)

        async def delivered():
            return (await service.get_delivery(letter.id)).state is DeliveryState.DELIVERED

        await eventually(delivered, wait_s=20)
    assert [r.headers["x-fleethub-delivery"] for r in receiver.accepted] == [letter.id]


async def test_email_arrives_with_the_alert(db, smtp):
    """An email channel sends through SMTP: the test server receives the alert's subject and text."""
    async with NotificationService(
        SqlNotificationStore(db), settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="hub@fleet.test")
    ) as service:
        await service.put_channel("workshop", ChannelBody(kind=ChannelKind.EMAIL, to=["workshop@fleet.test"]))
        await service.alert_event(alert(7))
        await eventually(lambda: _true(smtp.messages), wait_s=20)
    [message] = smtp.messages
    assert message["To"] == "workshop@fleet.test"
    assert message["From"] == "hub@fleet.test"
    assert "Oil overdue for veh-0007" in message["Subject"]
    assert "veh-0007" in message.get_content()
    assert message["X-Fleethub-Delivery"]


async def test_a_storm_of_a_thousand_alerts_sends_digests_within_the_rate(db, receiver):
    """1,000 alerts at once on a channel of 3600/h, burst 2: every alert arrives, in a few digests."""
    async with NotificationService(SqlNotificationStore(db), settings()) as service:
        body = ChannelBody(kind=ChannelKind.CHAT, url=receiver.url, rate_per_hour=3600, burst=2)
        await service.put_channel("chat", body)
        started = time.monotonic()
        for n in range(1000):
            await service.alert_event(alert(n))
        # A repeat of the same rule, vehicle and event within dedup_s is suppressed.
        await service.alert_event(alert(5))

        async def all_delivered():
            done = await service.list_deliveries(DeliveryQuery(state=DeliveryState.DELIVERED, limit=1000))
            return done if sum(d.items for d in done) == 1000 else None

        done = await eventually(all_delivered, wait_s=60)
        elapsed = time.monotonic() - started
    assert service.counters.suppressed == 1
    assert len(receiver.accepted) == len(done)
    # Within the rate: the burst, then one a second.
    assert len(done) <= 2 + elapsed + 1
    assert max(d.items for d in done) > 1
    texts = [json.loads(r.body)["text"] for r in receiver.accepted]
    assert any(t.startswith("fleethub: ") and " alerts (" in t for t in texts)
    mentioned = {f"veh-{n:04d}" for n in range(1000) if any(f"veh-{n:04d} " in t for t in texts)}
    assert len(mentioned) == 1000


async def test_restart_in_the_middle_of_a_delivery_repeats_nothing_and_loses_nothing(db, receiver):
    """Stopping while a slow endpoint answers records that delivery; what was still queued goes after restart."""
    receiver.delay_s = 1.0
    store = SqlNotificationStore(db)
    service = NotificationService(store, settings())
    async with service:
        await service.put_channel("ops", webhook(receiver.url, burst=1, rate_per_hour=60))
        await service.alert_event(alert(1))
        assert await asyncio.to_thread(receiver.started.wait, 20)
        # Queued while the first is in flight; the channel's rate holds it back for a minute.
        await service.alert_event(alert(2))
    first = receiver.accepted[-1].headers["x-fleethub-delivery"]
    assert (await store.get_delivery(first)).state is DeliveryState.DELIVERED
    assert len(receiver.requests) == 1
    receiver.delay_s = 0.0
    # A restarted hub: a fresh rate, the same outbox.
    async with NotificationService(store, settings()) as again:
        await eventually(lambda: _true(len(receiver.accepted) >= 2), wait_s=20)
        await asyncio.sleep(0.5)
        assert again.counters.delivered == 1
    sent = [json.loads(r.body)["items"][0]["vehicle_id"] for r in receiver.accepted]
    assert sent == ["veh-0001", "veh-0002"]
    assert len({r.headers["x-fleethub-delivery"] for r in receiver.requests}) == 2


async def test_a_channel_out_of_rate_does_not_hold_up_another(db):
    """A channel spent its rate on a storm; another channel's alert still goes at once."""
    slow, fast = Receiver().start(), Receiver().start()
    try:
        async with NotificationService(SqlNotificationStore(db), settings(digest_max_items=5)) as service:
            held = ChannelBody(kind=ChannelKind.CHAT, url=slow.url, fleet="north", rate_per_hour=1, burst=1)
            await service.put_channel("slow", held)
            await service.put_channel("fast", ChannelBody(kind=ChannelKind.CHAT, url=fast.url, fleet="south"))
            await service.alert_event(alert(0, fleet="north"))
            await eventually(lambda: _true(slow.accepted), wait_s=20)
            for n in range(1, 50):
                await service.alert_event(alert(n, fleet="north"))
            await service.alert_event(alert(99, fleet="south"))
            await eventually(lambda: _true(fast.accepted), wait_s=20)
            waiting = await service.store.pending(100, "slow")
    finally:
        slow.stop()
        fast.stop()
    assert "veh-0099" in json.loads(fast.accepted[0].body)["text"]
    assert len(slow.accepted) == 1
    assert len(waiting) == 49


class _FirstClaimFails(SqlNotificationStore):
    """A store whose first delivery claim raises, as a lost connection would."""

    failed = False

    async def claim_delivery(self, delivery_id: str, now: float, until: float) -> bool:
        if not self.failed:
            self.failed = True
            raise ConnectionError("store connection lost")
        return await super().claim_delivery(delivery_id, now, until)


async def test_one_delivery_failing_to_claim_does_not_end_the_round_of_the_others(db):
    """The round attempts (and records) every other due delivery and ends normally."""
    one, two = Receiver().start(), Receiver().start()
    store = _FirstClaimFails(db)
    service = NotificationService(store, settings())
    try:
        await service.put_channel("one", ChannelBody(kind=ChannelKind.CHAT, url=one.url, fleet="north"))
        await service.put_channel("two", ChannelBody(kind=ChannelKind.CHAT, url=two.url, fleet="south"))
        await service.alert_event(alert(1, fleet="north"))
        await service.alert_event(alert(2, fleet="south"))
        await service.run_once()
        delivered = await service.store.list_deliveries(DeliveryQuery(state=DeliveryState.DELIVERED))
    finally:
        for transport in {id(t): t for t in service.transports.values()}.values():
            await transport.aclose()
        one.stop()
        two.stop()
    assert store.failed
    assert len(one.accepted) + len(two.accepted) == 1
    assert len(delivered) == 1

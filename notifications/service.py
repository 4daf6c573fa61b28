"""Notifications: alert events and reports routed to channels through an outbox in the store.

    rules engine --publish--> tee --> outbox (one row per channel that wants it) --> worker
                                                                                       |
    channel rate (token bucket), quiet hours, de-duplication <-- deliveries: single or digest
                                                                 retried with backoff, dead-lettered

The tee writes the outbox rows before the alert's MQTT publish, in the rules engine's
writer task: never in the ingest path. The worker forms deliveries from what waits (one
notification alone, or a digest when several wait, so a storm becomes a few messages)
within each channel's rate, then attempts the due ones. A delivery is marked delivered
only after its endpoint accepted it; a failed attempt is retried with doubling waits up
to `max_attempts`, then dead-lettered until replayed. Stopping lets the round in flight
finish and record its outcome, so a restart repeats nothing; every delivery carries its
id (`X-Fleethub-Delivery`, the email's Message-ID) so a receiver can drop the repeat
that only a crash between its acceptance and our record can cause.

Several hubs on one database (worker mode) share the outbox. Every hub queues what its
own rules engine raises; one of them, the one `dispatches` names, forms and attempts
deliveries, so channel rates hold fleet-wide. Forming and attempting are claims in the
store as well: an item goes to one delivery, and a delivery is attempted by the hub that
claimed it, hidden from the others for `claim_s` (after which a hub that died mid-attempt
is taken over). So a hub still dispatching after it lost the lead repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec
import structlog

from kernel import InvalidPayload, LimitExceeded, NotFound, isoformat
from notifications.metrics import NotificationMetrics
from notifications.model import (
    Channel,
    ChannelBody,
    ChannelKind,
    Delivery,
    DeliveryQuery,
    DeliveryState,
    Notification,
    NotificationKind,
)
from notifications.routing import TokenBucket, quiet, routes, zone
from notifications.settings import NotificationSettings
from notifications.stores.protocol import NotificationStore
from notifications.transports import DeliveryFailed, HttpTransport, SmtpTransport, Transport
from security import Actor, AuditEntry, audit_entry

log = structlog.get_logger(__name__)

_decode_alert = msgspec.json.Decoder(dict[str, Any]).decode
CHANNEL_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


@dataclass(slots=True)
class Counters:
    queued: int = 0
    suppressed: int = 0
    delivered: int = 0
    digests: int = 0
    failed_attempts: int = 0
    dead: int = 0


class _Tee:
    """Publisher wrapper: each alert event is queued for notification, then published as before."""

    def __init__(self, service: NotificationService, inner: Publisher | None) -> None:
        self.service, self.inner = service, inner

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if topic.startswith("alerts/"):
            try:
                await self.service.alert_event(_decode_alert(payload))
            # The alert is stored whatever happens here; a failed queueing is logged and counted, never raised
            # into the rules engine.
            except Exception:
                log.exception("alert not queued for notification", topic=topic)
        if self.inner is not None:
            await self.inner.publish(topic, payload, qos, retain)


class NotificationService:
    """See the module docstring. Enter it after its store."""

    def __init__(
        self,
        store: NotificationStore,
        settings: NotificationSettings | None = None,
        *,
        transports: dict[ChannelKind, Transport] | None = None,
        metrics: NotificationMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = s = settings or NotificationSettings()
        if transports is None:
            http = HttpTransport(s)
            transports = {ChannelKind.WEBHOOK: http, ChannelKind.CHAT: http, ChannelKind.EMAIL: SmtpTransport(s)}
        self.transports = transports
        self.clock = clock
        self.counters = Counters()
        self.metrics = metrics
        self._channels: dict[str, Channel] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._recent: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._round = asyncio.Lock()
        # Set in worker mode: whether this hub dispatches now (see the module docstring). Channels
        # are then re-read every round, since another node may have changed them.
        self.dispatches: Callable[[], bool] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._channels = {c.id: c for c in await self.store.list_channels()}
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="notifications-worker")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            # The round in flight finishes and records what it sent: a restart repeats nothing.
            await self._task
            self._task = None
        for transport in {id(t): t for t in self.transports.values()}.values():
            await transport.aclose()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                if self.dispatches is None:
                    await self.run_once()
                else:
                    await self.refresh_channels()
                    if self.dispatches():
                        await self.run_once()
            # A failed round (store down) is retried at the next poll; the outbox keeps everything.
            except Exception:
                log.exception("notification round failed")
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def refresh_channels(self) -> None:
        """Take the channels from the store again: another hub on the same database may have changed them."""
        fresh = {c.id: c for c in await self.store.list_channels()}
        for channel_id, channel in fresh.items():
            old = self._channels.get(channel_id)
            if old is None or old.updated_at != channel.updated_at:
                self._buckets.pop(channel_id, None)
        self._channels = fresh

    def tee(self, publisher: Publisher | None) -> Publisher:
        return _Tee(self, publisher)

    # -- intake ---------------------------------------------------------------------------

    async def alert_event(self, alert: dict[str, Any]) -> int:
        """Queue an alert event (as published on `alerts/...`) for every channel routing it; the number queued."""
        now = self.clock()
        event = str(alert.get("event") or "raised")
        rule, vehicle = str(alert.get("rule", "")), str(alert.get("vehicle_id", ""))
        severity, fleet = str(alert.get("severity", "info")), str(alert.get("fleet", ""))
        items: list[Notification] = []
        for channel in self._channels.values():
            if not routes(channel, fleet=fleet, severity=severity, rule=rule, event=event):
                continue
            if self._duplicate(channel, f"{rule}|{vehicle}|{event}", now):
                self.counters.suppressed += 1
                if self.metrics:
                    self.metrics.suppressed.inc()
                continue
            items.append(
                Notification(
                    id=secrets.token_hex(10),
                    channel_id=channel.id,
                    key=f"alert:{alert.get('id')}:{event}",
                    kind=NotificationKind.ALERT,
                    severity=severity,
                    created_at=now,
                    payload=alert,
                )
            )
        return await self._queue(items)

    async def test(self, channel_id: str, *, by: str) -> Notification:
        """Queue a test alert for one channel (whatever its routing says), to check it end to end."""
        channel = self.get_channel(channel_id)
        now = self.clock()
        item = Notification(
            id=secrets.token_hex(10),
            channel_id=channel.id,
            key=f"test:{secrets.token_hex(8)}",
            kind=NotificationKind.ALERT,
            severity="info",
            created_at=now,
            payload={
                "id": secrets.token_hex(8),
                "rule": "fleethub.test",
                "vehicle_id": "-",
                "fleet": channel.body.fleet or "*",
                "severity": "info",
                "state": "active",
                "message": f"Test notification for channel {channel.id}, sent by {by}",
                "raised_at": isoformat(now),
                "event": "raised",
            },
        )
        await self._queue([item])
        return item

    async def report(self, channel_id: str, key: str, payload: dict[str, Any]) -> int:
        """Queue a report for one channel; `key` makes a repeated offer of the same report a no-op."""
        channel = self.get_channel(channel_id)
        item = Notification(
            secrets.token_hex(10), channel.id, f"report:{key}", NotificationKind.REPORT, "info", self.clock(), payload
        )
        return await self._queue([item])

    async def _queue(self, items: list[Notification]) -> int:
        if not items:
            return 0
        added = await self.store.add_notifications(items)
        self.counters.queued += added
        if self.metrics and added:
            self.metrics.queued.labels(items[0].kind.value).inc(added)
        self._wake.set()
        return added

    def _duplicate(self, channel: Channel, key: str, now: float) -> bool:
        window = channel.body.dedup_s
        if window <= 0:
            return False
        mark = (channel.id, key)
        last = self._recent.get(mark)
        if last is not None and now - last < window:
            return True
        self._recent[mark] = now
        self._recent.move_to_end(mark)
        while len(self._recent) > self.settings.dedup_memory_max:
            self._recent.popitem(last=False)
        return False

    # -- the worker -----------------------------------------------------------------------

    async def run_once(self) -> None:
        """Form deliveries from the outbox within each channel's rate, then attempt the due ones."""
        async with self._round:
            await self._form()
            await self._attempt_due()

    async def _form(self) -> None:
        """Per channel with something waiting: reports go at once; alerts as one delivery when the rate allows.

        Channels are read one by one, so a channel held back (disabled, quiet, out of tokens)
        never keeps another's notifications waiting behind its own.
        """
        s = self.settings
        now = self.clock()
        for channel_id in await self.store.pending_channels():
            channel = self._channels.get(channel_id)
            if channel is None or not channel.body.enabled:
                continue
            bucket = self._buckets.get(channel_id)
            if bucket is None:
                bucket = self._buckets[channel_id] = TokenBucket(channel.body.rate_per_hour, channel.body.burst, now)
            items = await self.store.pending(s.digest_max_items, channel_id)
            for report in [i for i in items if i.kind is NotificationKind.REPORT]:
                await self._deliver_later(channel, [report], now)
            alerts = [i for i in items if i.kind is NotificationKind.ALERT]
            hours = channel.body.quiet_hours
            if quiet(hours, now) and hours is not None:
                alerts = [i for i in alerts if i.severity in hours.except_severities]
            if alerts and bucket.take(now):
                await self._deliver_later(channel, alerts, now)

    async def _deliver_later(self, channel: Channel, items: list[Notification], now: float) -> None:
        delivery = Delivery(
            secrets.token_hex(10), channel.id, DeliveryState.PENDING, len(items), now, now, updated_at=now
        )
        delivery.items = await self.store.create_delivery(delivery, [i.id for i in items])
        if delivery.items > 1:
            self.counters.digests += 1
            if self.metrics:
                self.metrics.digests.inc()

    async def _attempt_due(self) -> None:
        due = await self.store.due_deliveries(self.clock(), self.settings.batch_max)
        if not due:
            return
        gate = asyncio.Semaphore(self.settings.max_concurrent_sends)

        async def attempt(delivery: Delivery) -> None:
            async with gate:
                now = self.clock()
                try:
                    # Claimed when its turn comes, so a claim never waits behind other sends.
                    if await self.store.claim_delivery(delivery.id, now, now + self.settings.claim_s):
                        await self._attempt(delivery)
                # One delivery's store error ends neither the others' attempts nor the round before
                # they finish (and record what they sent); claimed, it is due again after claim_s.
                except Exception:
                    log.exception("notification delivery attempt failed", delivery=delivery.id)

        await asyncio.gather(*(attempt(d) for d in due))

    async def _attempt(self, delivery: Delivery) -> None:
        s = self.settings
        channel = self._channels.get(delivery.channel_id)
        error: str | None = None
        if channel is None:
            error = "the channel was deleted"
            delivery.attempts = s.max_attempts - 1
        else:
            items = await self.store.delivery_items(delivery.id)
            try:
                await self.transports[channel.body.kind].send(channel, delivery, items)
            except DeliveryFailed as exc:
                error = str(exc)
            # A transport bug is one failed attempt of one delivery, never the end of the worker.
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        now = self.clock()
        delivery.updated_at = now
        if error is None:
            delivery.state, delivery.delivered_at, delivery.last_error = DeliveryState.DELIVERED, now, None
            self.counters.delivered += 1
            outcome = "delivered"
        else:
            delivery.attempts += 1
            delivery.last_error = error[:500]
            self.counters.failed_attempts += 1
            outcome = "failed"
            if delivery.attempts >= s.max_attempts:
                outcome = "dead"
                delivery.state = DeliveryState.DEAD
                self.counters.dead += 1
                log.warning(
                    "notification dead-lettered", delivery_id=delivery.id, channel=delivery.channel_id, error=error
                )
            else:
                wait = min(s.retry_max_s, s.retry_base_s * 2 ** (delivery.attempts - 1))
                delivery.next_at = now + wait * random.uniform(0.8, 1.0)
        await self.store.update_delivery(delivery)
        if self.metrics:
            self.metrics.deliveries.labels(outcome).inc()

    # -- channels -------------------------------------------------------------------------

    def list_channels(self) -> list[Channel]:
        return [self._channels[k] for k in sorted(self._channels)]

    def get_channel(self, channel_id: str) -> Channel:
        found = self._channels.get(channel_id)
        if found is None:
            raise NotFound(f"notification channel '{channel_id}' not found")
        return found

    async def put_channel(
        self, channel_id: str, body: ChannelBody, *, owner: str | None = None, actor: Actor | None = None
    ) -> tuple[Channel, bool]:
        """Create or replace a channel; (the channel, whether it is new)."""
        if not CHANNEL_ID.fullmatch(channel_id):
            raise InvalidPayload(
                "bad_channel_id", "a channel id is 1-64 of a-z 0-9 _ . - and starts with a letter or digit"
            )
        if body.kind is ChannelKind.EMAIL and not self.settings.smtp_host:
            raise InvalidPayload("smtp_not_configured", "email channels need notifications.smtp_host set")
        if body.quiet_hours is not None:
            try:
                zone(body.quiet_hours.tz)
            except ValueError as exc:
                raise InvalidPayload("bad_time_zone", str(exc)) from None
        now = self.clock()
        old = self._channels.get(channel_id)
        if old is None and len(self._channels) >= self.settings.max_channels:
            raise LimitExceeded(
                "too_many_channels", f"at most {self.settings.max_channels} (notifications.max_channels)"
            )
        channel = Channel(channel_id, body, old.created_at if old else now, now, owner)
        detail = {"kind": body.kind.value, "owner": owner}
        entry = _entry(actor, "notifications.channel.put", now, fleet=body.fleet, target=channel_id, detail=detail)
        await self.store.put_channel(channel, audit=entry)
        self._channels[channel_id] = channel
        self._buckets.pop(channel_id, None)
        return channel, old is None

    async def delete_channel(self, channel_id: str, *, actor: Actor | None = None) -> None:
        channel = self.get_channel(channel_id)
        entry = _entry(actor, "notifications.channel.delete", self.clock(), fleet=channel.body.fleet, target=channel_id)
        await self.store.delete_channel(channel_id, audit=entry)
        del self._channels[channel_id]

    # -- deliveries -----------------------------------------------------------------------

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        return await self.store.list_deliveries(query)

    async def get_delivery(self, delivery_id: str) -> Delivery:
        found = await self.store.get_delivery(delivery_id)
        if found is None:
            raise NotFound(f"delivery '{delivery_id}' not found")
        return found

    async def delivery_items(self, delivery_id: str) -> list[Notification]:
        return await self.store.delivery_items(delivery_id)

    async def replay(self, delivery_id: str, *, actor: Actor | None = None) -> Delivery:
        """Put a dead-lettered delivery back in line, as if new."""
        delivery = await self.get_delivery(delivery_id)
        now = self.clock()
        entry = _entry(actor, "notifications.delivery.replay", now, target=delivery_id)
        if not await self.store.replay(delivery_id, now, audit=entry):
            raise InvalidPayload("not_dead", f"delivery '{delivery_id}' is {delivery.state.value}, not dead")
        self._wake.set()
        return await self.get_delivery(delivery_id)


def _entry(actor: Actor | None, action: str, ts: float, **about: Any) -> AuditEntry | None:
    return audit_entry(actor, action, ts, **about) if actor is not None else None

"""What the broker does with each PUBLISH: refuse it, ingest it, route it.

This is the part of the amqtt subclass that handles messages; `sessions` adds what a
session keeps between connections and `hub_broker` the connection lifecycle (presence,
take-over, shutdown). Routing to subscribers goes through a `TopicIndex` instead of
amqtt's scan of every filter.

Where amqtt departs from MQTT 3.1.1, routing follows the standard: a message reaches a
subscriber at the lower of its own QoS and the subscription's (amqtt used the
subscription's, and sent a retained QoS 0 message at the subscription's QoS too); an
offline persistent session keeps at most `max_queued_messages`, dropping the oldest;
and retained messages go only to the SUBSCRIBE that matches them (amqtt also sent every
connecting client the retained messages matching anyone's filters).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from typing import Any

import structlog
from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.events import BrokerEvents
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2
from amqtt.session import ApplicationMessage, OutgoingApplicationMessage, Session

from broker import acl, refusals, topics
from broker.auth import BrokerAuth, principal_of
from broker.handler import AckedMessage, resolve
from broker.metrics import BrokerMetrics
from broker.topic_index import TopicIndex
from broker.topics import Refusal
from security import AbuseLimits, PrincipalKind, TokenBuckets
from twin import Channel, Inbound, InboundSink, Verdict

log = structlog.get_logger(__name__)

# Queued messages broadcast per pass of amqtt's broadcast loop, at most.
BROADCAST_BATCH = 256

# amqtt's SUBACK return code for a refused filter.
SUBSCRIPTION_REFUSED = 0x80


# Session attribute: the topic filters a session holds, for the per-client subscription limit.
_HELD = "fleethub.subscriptions"


def _held(session: Session) -> set[str]:
    held: set[str] | None = session.attributes.get(_HELD)
    if held is None:
        held = session.attributes[_HELD] = set()
    return held


def peer_of(session: Session) -> str:
    return f"{session.remote_address}:{session.remote_port}"


class RoutingBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
    def __init__(
        self,
        config: dict[str, Any],
        *,
        sink: InboundSink,
        metrics: BrokerMetrics,
        max_payload_bytes: int,
        max_queued_messages: int,
        auth: BrokerAuth | None = None,
        abuse: AbuseLimits | None = None,
    ) -> None:
        super().__init__(config)
        self._sink = sink
        self._metrics = metrics
        self._max_payload_bytes = max_payload_bytes
        self._max_queued = max_queued_messages
        self._index = TopicIndex()
        # Without an authenticator (broker tests), anonymous clients get the development principal.
        self._auth = auth or BrokerAuth(None, allow_anonymous=True, metrics=metrics.security)
        self._abuse = abuse or AbuseLimits()
        self._message_rate = TokenBuckets(self._abuse.message_rate_per_s, self._abuse.message_burst)
        # Retained vehicle messages being stored once accepted (held so none is collected mid-way).
        self._retaining: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return bool(self.transitions.state == "started")

    async def start(self) -> None:
        # amqtt clears its subscriptions on start; the index follows.
        self._index = TopicIndex()
        await super().start()

    # -- hub-originated messages -----------------------------------------------------

    def send_nowait(self, topic: str, payload: bytes, qos: int) -> None:
        """Queue a message for subscribers without waiting (the broadcast queue is unbounded)."""
        if not self.running:
            log.debug("mqtt send dropped", topic=topic, reason="broker is not running")
            return
        self._broadcast_queue.put_nowait({"session": None, "topic": topic, "data": payload, "qos": qos})

    async def publish_from_hub(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        await self._broadcast_message(None, topic, payload, force_qos=qos)
        if retain:
            await self.retain_message(None, topic, payload, qos)

    # -- client messages --------------------------------------------------------------

    async def _deliver(self, session: Session, message: ApplicationMessage | None) -> bool:
        """Refuse, ingest and/or route one PUBLISH; False on a protocol violation."""
        if message is None:
            return True
        topic: str = message.topic
        if not topic:
            # MQTT 3.1.1 (4.7.3-1): the server closes the connection. (amqtt's parser
            # already drops a PUBLISH whose topic has a wildcard, so it never gets here.)
            log.warning("mqtt protocol error", client_id=session.client_id, detail="PUBLISH with an empty topic")
            return False
        self._metrics.messages_received.inc()
        ack = message.committed if isinstance(message, AckedMessage) else None
        data: bytes = message.data
        route = topics.parse(topic)
        vehicle_id = route.vehicle_id if route is not None else ""
        principal = principal_of(session)
        # Refusal notices go to the sender's own errors topic, never to the vehicle it tried to speak for.
        own_id = principal.name if principal is not None and principal.kind is PrincipalKind.VEHICLE else ""
        if len(data) > self._max_payload_bytes:
            self._refuse(session, vehicle_id, topic, Refusal.PAYLOAD_TOO_LARGE, len(data))
        elif own_id and not self._message_rate.take(own_id):
            self._metrics.security.limit_violations["message_rate"].inc()
            self._refuse(session, own_id, topic, Refusal.RATE_LIMITED, len(data))
        elif principal is None or not acl.may_publish(principal, route):
            self._metrics.security.acl_denied["publish"].inc()
            self._refuse(session, own_id, topic, Refusal.NOT_AUTHORIZED, len(data))
        elif topic.startswith("$"):
            self._refuse(session, vehicle_id, topic, Refusal.TOPIC_NOT_ALLOWED, len(data))
        elif route is not None and route.refusal is not None:
            self._refuse(session, vehicle_id, topic, route.refusal, len(data))
        elif route is not None and route.kind is not None:
            # The pipeline's verdict decides routing, so every ingested message gets a
            # future; a QoS 0 one simply has no PUBACK waiting on it.
            verdict = ack if ack is not None else asyncio.get_running_loop().create_future()
            await self._sink.submit(
                Inbound(
                    route.vehicle_id,
                    route.kind,
                    bytes(data),
                    received_at=time.time(),
                    qos=message.qos or 0,
                    ack=verdict,
                    subtopic=route.subtopic,
                    client_id=session.client_id,
                    peer=peer_of(session),
                )
            )
            # Accepted messages still reach other subscribers (a dashboard on vehicles/+/telemetry);
            # refused ones, and ones never committed, reach no one.
            verdict.add_done_callback(functools.partial(self._route_if_accepted, session, message))
            return True
        else:
            await self._route(session, message)
        # MQTT 3.1.1 has no negative PUBACK: a refused message is acknowledged and dropped.
        resolve(ack)
        return True

    def _route_if_accepted(
        self, session: Session, message: ApplicationMessage, verdict: asyncio.Future[Verdict]
    ) -> None:
        if verdict.cancelled() or verdict.exception() is not None or not verdict.result().accepted:
            return
        if not self.running:
            return
        self._broadcast_queue.put_nowait(
            {"session": session, "topic": message.topic, "data": message.data, "qos": message.qos or QOS_0}
        )
        if message.publish_packet is not None and message.publish_packet.retain_flag:
            task = asyncio.get_running_loop().create_task(
                self.retain_message(session, message.topic, message.data, message.qos)
            )
            self._retaining.add(task)
            task.add_done_callback(self._retaining.discard)

    async def _route(self, session: Session, message: ApplicationMessage) -> None:
        await self._broadcast_message(session, message.topic, message.data, force_qos=message.qos or QOS_0)
        if message.publish_packet is not None and message.publish_packet.retain_flag:
            await self.retain_message(session, message.topic, message.data, message.qos)

    def _refuse(self, session: Session, vehicle_id: str, topic: str, reason: Refusal, size: int) -> None:
        """Count, log and explain a dropped message (`topic` is empty if it was never read)."""
        self._metrics.messages_refused[reason].inc()
        log.warning(
            "mqtt message refused",
            vehicle_id=vehicle_id or None,
            reason=reason.value,
            topic=topic or None,
            size=size,
            client_id=session.client_id,
        )
        if vehicle_id:
            notice = refusals.notice(reason, topic, size, self._max_payload_bytes)
            self.send_nowait(topics.downlink(vehicle_id, Channel.ERRORS), notice, qos=1)

    # -- subscribers ------------------------------------------------------------------
    # amqtt keeps `_subscriptions` (filter -> [(session, qos)]); the index mirrors its
    # keys that still have subscribers, updated wherever amqtt changes them.

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        topic_filter = subscription[0]
        if not await self._may_subscribe(session, topic_filter):
            return SUBSCRIPTION_REFUSED
        code: int = await super().add_subscription(subscription, session)
        subscribers = self._subscriptions.get(subscription[0])
        if code != SUBSCRIPTION_REFUSED:
            _held(session).add(topic_filter)
        if subscribers:
            self._index.add(subscription[0])
            if code != SUBSCRIPTION_REFUSED:
                # MQTT 3.8.4: subscribing again to the same filter replaces its QoS (amqtt kept the first).
                subscribers[:] = [
                    (other, code if other.client_id == session.client_id else qos) for other, qos in subscribers
                ]
        return code

    async def _may_subscribe(self, session: Session, topic_filter: str) -> bool:
        """The topic ACL and the per-client subscription limit; counts and logs a refusal."""
        principal = principal_of(session)
        decision = acl.DENY if principal is None else acl.may_subscribe(principal, topic_filter)
        if decision.verdict is acl.Verdict.VEHICLE_FLEET and principal is not None:
            security = self._auth.security
            fleet = None if security is None else await security.fleet_of(decision.vehicle_id)
            decision = acl.ALLOW if principal.sees(fleet) else acl.DENY
        if decision.verdict is not acl.Verdict.ALLOW:
            self._metrics.security.acl_denied["subscribe"].inc()
            log.warning(
                "mqtt subscription refused",
                client_id=session.client_id,
                username=session.username,
                topic_filter=topic_filter,
                reason="not_authorized",
            )
            return False
        held = _held(session)
        if topic_filter not in held and len(held) >= self._abuse.max_subscriptions_per_client:
            self._metrics.security.limit_violations["subscriptions"].inc()
            log.warning(
                "mqtt subscription refused",
                client_id=session.client_id,
                username=session.username,
                topic_filter=topic_filter,
                reason="too_many_subscriptions",
                limit=self._abuse.max_subscriptions_per_client,
            )
            return False
        return True

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        # amqtt's own subscription path still asks; publishes and subscriptions are checked
        # by `_deliver` and `_may_subscribe`, and a delivery matched a filter checked when made.
        return True

    async def _handle_subscription(
        self, client_session: Session, handler: Any, subscribe_waiter: asyncio.Future[Any]
    ) -> None:
        subscription = subscribe_waiter.result()
        codes = [await self.add_subscription(topic, client_session) for topic in subscription.topics]
        await handler.mqtt_acknowledge_subscription(subscription.packet_id, codes)
        for (topic_filter, _), code in zip(subscription.topics, codes, strict=True):
            if code == SUBSCRIPTION_REFUSED:
                continue
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_SUBSCRIBED, client_id=client_session.client_id, topic=topic_filter, qos=code
            )
            await self._send_retained(topic_filter, code, client_session, handler)

    async def _send_retained(self, topic_filter: str, granted_qos: int, session: Session, handler: Any) -> None:
        """Queue the retained messages matching a new subscription, RETAIN set, at the lower QoS.

        The sends are not awaited: a client slow to acknowledge must not hold up its own
        connection (amqtt waited for every acknowledgement).
        """
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            qos = min(granted_qos, retained.qos or QOS_0)
            send = handler.mqtt_publish(topic, retained.data, qos, retain=True)
            self._tasks_queue.append(asyncio.ensure_future(send))

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        # amqtt calls this on every connection for every filter of every client; retained
        # messages belong to a SUBSCRIBE only (`_send_retained`).
        return

    def _is_online(self, session: Session) -> bool:
        """Whether live messages go straight to this session's connection."""
        return bool(session.transitions.state == "connected")

    def _queue_offline(self, session: Session, topic: str, data: bytes, qos: int) -> None:
        """Keep a message for a persistent session whose client is away, dropping the oldest beyond the bound."""
        queue = session.retained_messages
        while queue.qsize() >= self._max_queued:
            queue.get_nowait()
            self._metrics.queued_dropped.inc()
        # No reference to the publisher's session: a queued message must not keep it alive.
        queue.put_nowait(RetainedApplicationMessage(None, topic, data, qos))

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        deleted: int = super()._del_subscription(a_filter, session)
        _held(session).discard(a_filter)
        if not self._subscriptions.get(a_filter):
            self._index.discard(a_filter)
        return deleted

    async def _del_all_subscriptions(self, session: Session) -> None:
        held = [
            topic_filter
            for topic_filter, subscribers in self._subscriptions.items()
            if any(other.client_id == session.client_id for other, _ in subscribers)
        ]
        await super()._del_all_subscriptions(session)
        for topic_filter in held:
            if not self._subscriptions.get(topic_filter):
                self._index.discard(topic_filter)

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[OutgoingApplicationMessage]]) -> None:
        """Broadcast what is queued, visiting only the filters that match each topic.

        amqtt broadcasts one message per pass of its loop (a task and a wait each), so
        under load the queue grows faster than it drains; a pass here takes a batch.
        """
        batch = [await self._broadcast_queue.get()]
        while len(batch) < BROADCAST_BATCH and not self._broadcast_queue.empty():
            batch.append(self._broadcast_queue.get_nowait())
        for broadcast in batch:
            await self._broadcast_one(broadcast, running_tasks)

    async def _broadcast_one(
        self, broadcast: dict[str, Any], running_tasks: deque[asyncio.Task[OutgoingApplicationMessage]]
    ) -> None:
        topic: str = broadcast["topic"]
        for topic_filter in self._index.match(topic):
            # Nothing here awaits, so the subscriptions cannot change under the loop.
            for target_session, sub_qos in self._subscriptions.get(topic_filter, ()):
                qos = min(broadcast.get("qos", sub_qos), sub_qos)
                if not self._is_online(target_session):
                    # MQTT 3.1.2.4: a persistent session keeps QoS 1 and 2 messages while offline.
                    if not target_session.clean_session and qos in (QOS_1, QOS_2):
                        self._queue_offline(target_session, topic, broadcast["data"], qos)
                    continue
                handler = self._get_handler(target_session)
                if handler is not None:
                    running_tasks.append(
                        asyncio.ensure_future(handler.mqtt_publish(topic, broadcast["data"], qos, retain=False))
                    )

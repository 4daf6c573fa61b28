"""What the broker does with each PUBLISH: refuse it, ingest it, route it.

This is the half of the amqtt subclass that handles messages; `hub_broker` adds the
connection lifecycle (presence, take-over, shutdown) on top of it.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.session import ApplicationMessage, Session

from broker import refusals, topics
from broker.handler import AckedMessage, resolve
from broker.metrics import BrokerMetrics
from broker.topics import Refusal
from twin.inbound import Channel, Inbound, InboundSink

log = structlog.get_logger(__name__)


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
    ) -> None:
        super().__init__(config)
        self._sink = sink
        self._metrics = metrics
        self._max_payload_bytes = max_payload_bytes

    @property
    def running(self) -> bool:
        return bool(self.transitions.state == "started")

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
        if len(data) > self._max_payload_bytes:
            self._refuse(session, vehicle_id, topic, Refusal.PAYLOAD_TOO_LARGE, len(data))
        elif topic.startswith("$") or not await self._topic_filtering(session, topic=topic, action=Action.PUBLISH):
            self._refuse(session, vehicle_id, topic, Refusal.TOPIC_NOT_ALLOWED, len(data))
        elif route is not None and route.refusal is not None:
            self._refuse(session, vehicle_id, topic, route.refusal, len(data))
        elif route is not None and route.kind is not None:
            await self._sink.submit(
                Inbound(
                    route.vehicle_id,
                    route.kind,
                    bytes(data),
                    received_at=time.time(),
                    qos=message.qos or 0,
                    ack=ack,
                    subtopic=route.subtopic,
                    client_id=session.client_id,
                    peer=peer_of(session),
                )
            )
            # Ingested messages still reach other subscribers (a dashboard on vehicles/+/telemetry).
            await self._route(session, message)
            return True
        else:
            await self._route(session, message)
        # MQTT 3.1.1 has no negative PUBACK: a refused message is acknowledged and dropped.
        resolve(ack)
        return True

    async def _route(self, session: Session, message: ApplicationMessage) -> None:
        await self._broadcast_message(session, message.topic, message.data)
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

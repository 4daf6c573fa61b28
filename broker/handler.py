"""amqtt's per-connection protocol handler, changed so that PUBACK waits for the commit.

amqtt acknowledges an incoming QoS 1 PUBLISH as soon as it is queued for routing.
fleethub acknowledges it only once its data is committed: each QoS 1 message carries a
future that the ingest pipeline resolves, and the handler sends PUBACK after it.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.session import INCOMING, IncomingApplicationMessage, OutgoingApplicationMessage

from twin.inbound import DisconnectReason

log = structlog.get_logger(__name__)

# Session attribute carrying why a connection is ending, when something other than the
# socket itself ended it. Read (and removed) once, when the broker reports the disconnect.
DISCONNECT_REASON: Final = "fleethub.disconnect_reason"


class AckedMessage(IncomingApplicationMessage):  # type: ignore[misc]  # amqtt ships no type information
    """An incoming PUBLISH; for QoS 1, `committed` gates its PUBACK.

    Resolving `committed` sends the PUBACK; cancelling it, or setting an exception,
    sends none, so the client publishes again.
    """

    __slots__ = ("committed",)

    def __init__(
        self,
        packet_id: int | None,
        topic: str,
        qos: int | None,
        data: bytes,
        retain: bool,
        committed: asyncio.Future[None] | None,
    ) -> None:
        super().__init__(packet_id, topic, qos, data, retain)
        self.committed = committed


def resolve(ack: asyncio.Future[None] | None) -> None:
    """Let the PUBACK go, unless the ack was already settled (e.g. cancelled on disconnect)."""
    if ack is not None and not ack.done():
        ack.set_result(None)


class HubProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no type information
    """Delays QoS 1 PUBACKs until commit and enforces the keep-alive.

    The broker re-classes handlers that amqtt already built (amqtt constructs them
    inside `init_from_connect`), so `__init__` never runs here: this class must not add
    instance state of its own. Per-connection facts live in `session.attributes`.
    """

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        header = publish_packet.variable_header
        packet_id = header.packet_id if header else None
        topic, data = publish_packet.topic_name, publish_packet.data
        if topic is None or data is None:
            return
        qos = publish_packet.qos
        committed = asyncio.get_running_loop().create_future() if qos == QOS_1 else None
        message = AckedMessage(packet_id, topic, qos, data, publish_packet.retain_flag, committed)
        message.publish_packet = publish_packet
        await self._handle_message_flow(message)

    async def _handle_qos1_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        if not (
            app_message.direction == INCOMING
            and isinstance(app_message, AckedMessage)
            and app_message.committed is not None
            and self.session is not None
        ):
            await super()._handle_qos1_message_flow(app_message)
            return
        await self.session.delivered_message_queue.put(app_message)
        # amqtt runs each PUBLISH in its own task, so waiting here holds back this one
        # PUBACK while the reader goes on reading: many messages stay in flight per client.
        # When the connection ends amqtt cancels this task, which cancels the future.
        try:
            await app_message.committed
        except Exception as exc:  # a failed commit means "no PUBACK", not a broken connection
            log.debug("mqtt puback withheld", client_id=self.session.client_id, error=repr(exc))
            return
        puback = PubackPacket.build(app_message.packet_id)
        await self._send_packet(puback)
        app_message.puback_packet = puback

    def handle_read_timeout(self) -> None:
        # amqtt's broker handler ignores a silent client forever; MQTT 3.1.1 (3.1.2.10)
        # wants it disconnected after 1.5 keep-alive periods (the broker sets the timeout).
        if self.session is not None:
            self.session.attributes[DISCONNECT_REASON] = DisconnectReason.KEEPALIVE_TIMEOUT
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

"""amqtt's per-connection protocol handler, changed so that acknowledgements mean something.

amqtt acknowledges an incoming QoS 1 PUBLISH (PUBACK) or QoS 2 PUBLISH (PUBREC) as soon
as it is queued for routing. fleethub acknowledges it only once its data is committed:
each such message carries a future that the ingest pipeline resolves, and the handler
answers after it. A QoS 2 packet id stays taken until PUBREL, so a resend is never
ingested twice.

Outgoing QoS 1 and 2 messages stay in the session's in-flight table until the client
acknowledges them, however long that takes and across reconnects; amqtt dropped them
after five seconds or when the connection ended, so they were never redelivered.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable
from typing import Final

import structlog
from amqtt.adapters import BufferReader, StreamWriterAdapter
from amqtt.errors import MQTTError, NoDataError, ProtocolHandlerError
from amqtt.events import MQTTEvents
from amqtt.mqtt import packet_class
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    MQTTFixedHeader,
)
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.mqtt.subscribe import SubscribePacket
from amqtt.mqtt.unsubscribe import UnsubscribePacket
from amqtt.session import (
    INCOMING,
    ApplicationMessage,
    IncomingApplicationMessage,
    OutgoingApplicationMessage,
    Session,
)

from twin import ACCEPTED, DisconnectReason, Verdict

log = structlog.get_logger(__name__)

# Session attribute carrying why a connection is ending, when something other than the
# socket itself ended it. Read (and removed) once, when the broker reports the disconnect.
DISCONNECT_REASON: Final = "fleethub.disconnect_reason"

# PUBACK's fixed header: type 4, remaining length 2 (the packet id follows).
_PUBACK: Final = bytes((PUBACK << 4, 2))

# The handler method for each packet type a connection may send after CONNECT, run as
# a task of its own as amqtt does (a PUBLISH waits for its commit before its PUBACK).
_HANDLERS: Final = {
    PUBLISH: "handle_publish",
    PUBACK: "handle_puback",
    PUBREC: "handle_pubrec",
    PUBREL: "handle_pubrel",
    PUBCOMP: "handle_pubcomp",
    SUBSCRIBE: "handle_subscribe",
    UNSUBSCRIBE: "handle_unsubscribe",
    PINGREQ: "handle_pingreq",
    DISCONNECT: "handle_disconnect",
    SUBACK: "handle_suback",
    UNSUBACK: "handle_unsuback",
    PINGRESP: "handle_pingresp",
}


class AckedMessage(IncomingApplicationMessage):  # type: ignore[misc]  # amqtt ships no type information
    """An incoming PUBLISH; for QoS 1 and 2, `committed` gates its PUBACK or PUBREC.

    Resolving `committed` sends the acknowledgement; cancelling it, or setting an
    exception, sends none, so the client publishes again.
    """

    __slots__ = ("committed",)

    def __init__(
        self,
        packet_id: int | None,
        topic: str,
        qos: int | None,
        data: bytes,
        retain: bool,
        committed: asyncio.Future[Verdict] | None,
    ) -> None:
        super().__init__(packet_id, topic, qos, data, retain)
        self.committed = committed


class Ended:
    """Queued behind everything the connection's reader took: the connection is over.

    `handler` says which connection: a persistent session's queue outlives it, and a
    late marker must not end the session's next connection.
    """

    __slots__ = ("handler", "packet")

    def __init__(self, handler: BrokerProtocolHandler, packet: DisconnectPacket | None) -> None:
        self.handler = handler
        self.packet = packet


def resolve(ack: asyncio.Future[Verdict] | None) -> None:
    """Let the PUBACK go, unless the ack was already settled (e.g. cancelled on disconnect)."""
    if ack is not None and not ack.done():
        ack.set_result(ACCEPTED)


class HubProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no type information
    """Delays PUBACK and PUBREC until commit, keeps unacknowledged deliveries, enforces the keep-alive.

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
        committed = asyncio.get_running_loop().create_future() if qos in (QOS_1, QOS_2) else None
        message = AckedMessage(packet_id, topic, qos, data, publish_packet.retain_flag, committed)
        message.publish_packet = publish_packet
        await self._handle_message_flow(message)

    async def _handle_qos1_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        if app_message.direction != INCOMING:
            await self._send_qos1(app_message)
            return
        if not (isinstance(app_message, AckedMessage) and app_message.committed is not None and self.session):
            await super()._handle_qos1_message_flow(app_message)
            return
        await self.session.delivered_message_queue.put(app_message)
        # amqtt runs each PUBLISH in its own task, so waiting here holds back this one
        # PUBACK while the reader goes on reading: many messages stay in flight per client.
        # When the connection ends amqtt cancels this task, which cancels the future.
        if not await _committed(app_message, self.session.client_id):
            return
        puback = PubackPacket.build(app_message.packet_id)
        await self._send_packet(puback)
        app_message.puback_packet = puback

    async def _handle_qos2_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        if app_message.direction != INCOMING:
            await self._send_qos2(app_message)
            return
        if not isinstance(app_message, AckedMessage) or self.session is None:
            # `handle_publish` makes every incoming PUBLISH an AckedMessage.
            return
        session = self.session
        packet_id = app_message.packet_id
        held = session.inflight_in.get(packet_id)
        if held is not None:
            # A resend of a message already taken (MQTT 4.3.3, method A): never ingest it
            # twice. Repeat the PUBREC if it went out; otherwise it goes after the commit.
            if held.pubrec_packet is not None:
                await self._send_packet(PubrecPacket.build(packet_id))
            return
        session.inflight_in[packet_id] = app_message
        await session.delivered_message_queue.put(app_message)
        committed = False
        try:
            committed = await _committed(app_message, session.client_id)
        finally:
            if not committed and session.inflight_in.get(packet_id) is app_message:
                # Not acknowledged: the client still owns the message and will send it again.
                del session.inflight_in[packet_id]
        if not committed:
            return
        pubrec = PubrecPacket.build(packet_id)
        app_message.pubrec_packet = pubrec
        await self._send_packet(pubrec)

    async def handle_pubrel(self, pubrel: PubrelPacket) -> None:
        # The packet id is released whether or not this connection saw the PUBLISH: a
        # client finishing the flow after a reconnect must get its PUBCOMP (MQTT 4.3.3).
        packet_id = pubrel.packet_id
        if self.session is not None:
            self.session.inflight_in.pop(packet_id, None)
        await self._send_packet(PubcompPacket.build(packet_id))

    async def _send_qos1(self, message: ApplicationMessage) -> None:
        session = self._attached()
        packet_id = message.packet_id
        session.inflight_out[packet_id] = message
        # A message sent before, on this connection or an earlier one, goes again with DUP set.
        packet = message.build_publish_packet(dup=message.publish_packet is not None)
        message.publish_packet = packet
        waiter: asyncio.Future[PubackPacket] = asyncio.get_running_loop().create_future()
        self._puback_waiters[packet_id] = waiter
        try:
            await self._send_packet(packet)
            message.puback_packet = await waiter
        finally:
            if self._puback_waiters.get(packet_id) is waiter:
                del self._puback_waiters[packet_id]
        # Only a PUBACK ends the flow: on a lost connection the message stays in flight
        # and is sent again when the session resumes (MQTT 4.4.0-1).
        session.inflight_out.pop(packet_id, None)

    async def _send_qos2(self, message: ApplicationMessage) -> None:
        session = self._attached()
        packet_id = message.packet_id
        session.inflight_out[packet_id] = message
        if message.pubrec_packet is None:
            packet = message.build_publish_packet(dup=message.publish_packet is not None)
            message.publish_packet = packet
            pubrec: asyncio.Future[PubrecPacket] = asyncio.get_running_loop().create_future()
            self._pubrec_waiters[packet_id] = pubrec
            try:
                await self._send_packet(packet)
                message.pubrec_packet = await pubrec
            finally:
                if self._pubrec_waiters.get(packet_id) is pubrec:
                    del self._pubrec_waiters[packet_id]
        # After PUBREC the message is the client's; what may still need resending is PUBREL.
        pubcomp: asyncio.Future[PubcompPacket] = asyncio.get_running_loop().create_future()
        self._pubcomp_waiters[packet_id] = pubcomp
        try:
            message.pubrel_packet = PubrelPacket.build(packet_id)
            await self._send_packet(message.pubrel_packet)
            message.pubcomp_packet = await pubcomp
        finally:
            if self._pubcomp_waiters.get(packet_id) is pubcomp:
                del self._pubcomp_waiters[packet_id]
        session.inflight_out.pop(packet_id, None)

    async def resend(self, message: ApplicationMessage) -> None:
        """Send an unacknowledged outgoing message again on this connection."""
        if message.qos == QOS_2:
            await self._send_qos2(message)
        else:
            await self._send_qos1(message)

    async def _retry_deliveries(self) -> None:
        # amqtt resends here and waits (up to 10 s) for every acknowledgement before the
        # connection is served, and replays incoming QoS 2 messages into ingest. The
        # broker resends outgoing messages itself without waiting (`resend`); incoming
        # QoS 2 ids wait for the client's PUBREL (`handle_pubrel`).
        return

    def _attached(self) -> Session:
        if self.session is None:
            msg = "the protocol handler is not attached to a session"
            raise RuntimeError(msg)
        return self.session

    def _init_session(self, session: Session) -> None:
        super()._init_session(session)
        # amqtt re-arms a write keep-alive timer on every packet it sends, only to call a
        # broker handler's no-op `handle_write_timeout`; without a timeout it arms none.
        self.keepalive_timeout = None

    async def _reader_loop(self) -> None:
        """amqtt's reader loop, leaner per packet; same dispatch, same ending.

        amqtt wraps every fixed-header read in `asyncio.wait_for` for the keep-alive (a
        task, a timer and a future per packet) and reads a packet's body field by field
        from the socket. Here one timer per connection watches the keep-alive, and the
        body is read at once and parsed from memory.
        """
        session = self._attached()
        ready = self._reader_ready
        if ready is None:
            msg = "Reader ready is not initialized."
            raise ProtocolHandlerError(msg)
        # Packet tasks, and the commits awaited by QoS 1 messages taken without one.
        running: collections.deque[asyncio.Future[Verdict]] = collections.deque()
        # Over TCP a PUBACK is one write; a WebSocket writer sends only when drained.
        direct_acks = isinstance(self.writer, StreamWriterAdapter)
        watch = _IdleWatch(session.keep_alive, self.handle_read_timeout) if session.keep_alive > 0 else None
        ready.set()
        try:
            while True:
                while running and running[0].done():
                    del running[0]
                reader = self.reader
                if reader is None:
                    break
                try:
                    if watch is not None:
                        watch.waiting()
                    header = await MQTTFixedHeader.from_stream(reader)
                    if watch is not None:
                        watch.busy()
                    if header is None:
                        break
                    name = _HANDLERS.get(header.packet_type)
                    if name is None and header.packet_type != CONNECT:
                        # Reserved packet types, and a CONNACK, which no client may send.
                        log.warning("mqtt protocol error", client_id=session.client_id, packet_type=header.packet_type)
                        await self.handle_connection_closed()
                        continue
                    body = await reader.read(header.remaining_length) if header.remaining_length else b""
                    if len(body) < header.remaining_length:
                        break
                    packet = await packet_class(header).from_stream(BufferReader(body), fixed_header=header)
                    await self.plugins_manager.fire_event(MQTTEvents.PACKET_RECEIVED, packet=packet, session=session)
                    if name is None:
                        # A second CONNECT: amqtt's handler ends the connection (MQTT-3.1.0-2).
                        await self.handle_connect(packet)
                        continue
                    if isinstance(packet, PublishPacket) and (
                        packet.qos == QOS_0 or (packet.qos == QOS_1 and direct_acks)
                    ):
                        # Queued before the next packet is read, so a full backlog pauses the reader.
                        committed = self._take_publish(session, packet)
                        if committed is not None:
                            running.append(committed)
                        continue
                    running.append(asyncio.create_task(getattr(self, name)(packet)))
                    if header.packet_type == PUBLISH:
                        # A QoS 2 PUBLISH reaches the backlog in its task: let it run before
                        # reading on, or buffered packets would all be read past a full backlog.
                        await asyncio.sleep(0)
                except MQTTError:
                    log.debug("mqtt packet discarded", client_id=session.client_id)
                except NoDataError:
                    break
                except asyncio.CancelledError:
                    break
                # amqtt's loop ends the connection on anything else, as does this one.
                except Exception as exc:
                    log.debug("mqtt reader stopped", client_id=session.client_id, error=repr(exc))
                    break
        finally:
            if watch is not None:
                watch.cancel()
        while running:
            running.popleft().cancel()
        await self.handle_connection_closed()
        self._reader_stopped.set()
        await self.stop()

    def _take_publish(self, session: Session, packet: PublishPacket) -> asyncio.Future[Verdict] | None:
        """Queue an incoming QoS 0 or 1 PUBLISH for routing; a QoS 1 one's PUBACK goes out when committed.

        The same flows as `handle_publish` and amqtt's QoS 0 and 1 flows, without a task
        and three coroutines per message: the PUBACK is written from the future's
        callback (one `write` of four bytes, so it cannot split another packet). When
        the connection ends the reader cancels the future, and no PUBACK is sent.
        """
        header = packet.variable_header
        topic, data = packet.topic_name, packet.data
        if topic is None or data is None:
            return None
        if packet.qos == QOS_0:
            if packet.dup_flag:
                log.warning("mqtt protocol error", client_id=session.client_id, detail="QoS 0 PUBLISH with DUP set")
                return None
            message = AckedMessage(None, topic, QOS_0, data, packet.retain_flag, None)
            message.publish_packet = packet
            session.delivered_message_queue.put_nowait(message)
            return None
        if header is None or header.packet_id is None:
            return None
        committed: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        message = AckedMessage(header.packet_id, topic, QOS_1, data, packet.retain_flag, committed)
        message.publish_packet = packet
        session.delivered_message_queue.put_nowait(message)
        committed.add_done_callback(functools.partial(self._puback_when_committed, header.packet_id))
        return committed

    def _puback_when_committed(self, packet_id: int, committed: asyncio.Future[Verdict]) -> None:
        if committed.cancelled():
            return
        if committed.exception() is not None:
            # A failed commit means "no acknowledgement": the client sends it again.
            log.debug("mqtt acknowledgement withheld", error=repr(committed.exception()))
            return
        writer = self.writer
        if writer is not None:
            writer.write(_PUBACK + packet_id.to_bytes(2, "big"))

    def handle_read_timeout(self) -> None:
        # amqtt's broker handler ignores a silent client forever; MQTT 3.1.1 (3.1.2.10)
        # wants it disconnected after 1.5 keep-alive periods (the broker sets the timeout).
        if self.session is not None:
            self.session.attributes[DISCONNECT_REASON] = DisconnectReason.KEEPALIVE_TIMEOUT
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._to_broker(Ended(self, None))

    # The broker serves each connection from one queue, the session's backlog: PUBLISHes,
    # SUBSCRIBEs, UNSUBSCRIBEs and the end, in the order the reader took them. amqtt
    # kept a queue and a waiting task for each (four tasks and an asyncio.wait per message).

    def _to_broker(self, item: object) -> None:
        if self.session is not None:
            self.session.delivered_message_queue.put_nowait(item)

    async def handle_subscribe(self, subscribe: SubscribePacket) -> None:
        if subscribe.variable_header is None or subscribe.payload is None:
            msg = "SUBSCRIBE packet: variable header or payload not initialized."
            raise MQTTError(msg)
        self._to_broker(Subscription(subscribe.variable_header.packet_id, subscribe.payload.topics))

    async def handle_unsubscribe(self, unsubscribe: UnsubscribePacket) -> None:
        if unsubscribe.variable_header is None or unsubscribe.payload is None:
            msg = "UNSUBSCRIBE packet: variable header or payload not initialized."
            raise MQTTError(msg)
        self._to_broker(UnSubscription(unsubscribe.variable_header.packet_id, unsubscribe.payload.topics))

    async def handle_disconnect(self, disconnect: DisconnectPacket | None) -> None:
        await super().handle_disconnect(disconnect)
        self._to_broker(Ended(self, disconnect))

    async def handle_connect(self, connect: ConnectPacket) -> None:
        # A second CONNECT is a protocol violation (MQTT-3.1.0-2): the connection ends.
        client_id = self.session.client_id if self.session else None
        log.warning("mqtt protocol error", client_id=client_id, detail="CONNECT on a connected session")
        await self.handle_connection_closed()


async def _committed(message: AckedMessage, client_id: str | None) -> bool:
    """Wait for ingest to commit `message`; False when it will not be acknowledged."""
    if message.committed is None:
        return True
    try:
        await message.committed
    except Exception as exc:  # a failed commit means "no acknowledgement", not a broken connection
        log.debug("mqtt acknowledgement withheld", client_id=client_id, error=repr(exc))
        return False
    return True


class _IdleWatch:
    """Calls `expired` when waiting for a packet's first byte has lasted `limit` seconds.

    Only that wait counts, as in amqtt: a reader paused inside a packet because ingest
    is behind is not a silent client.
    """

    __slots__ = ("_expired", "_limit", "_loop", "_since", "_timer")

    def __init__(self, limit: float, expired: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._expired = expired
        self._since: float | None = None
        self._timer = self._loop.call_later(limit, self._check)

    def waiting(self) -> None:
        self._since = self._loop.time()

    def busy(self) -> None:
        self._since = None

    def cancel(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        due = self._limit
        if self._since is not None:
            idle = now - self._since
            if idle >= self._limit:
                # amqtt's wait_for started over after a timeout; so does the watch.
                self._since = now
                self._expired()
            else:
                due = self._limit - idle
        self._timer = self._loop.call_later(due, self._check)

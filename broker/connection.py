"""One client connection: CONNECT, then its packets in order until it ends.

Reading is sequential: each packet is handled before the next is read, and handing a
message to ingest (`sink.submit`) waits while the pipeline is full, so a slow pipeline
becomes TCP backpressure on that one publisher. A QoS 1/2 message is acknowledged
(PUBACK, PUBREC) from its `ack` future's callback once ingest has committed it, so many
messages are in flight per client while the reader goes on.

Sending runs in a task of its own that drains the session's bounded queue, within the
client's receive maximum, and waits for the socket to drain: a client that stops
reading fills its queue, not the hub's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Final

import structlog

from broker import codec, filters, persistence, stores, topics
from broker.auth import LoginAttempt
from broker.codec import (
    Ack,
    Connack,
    Connect,
    Disconnect,
    PacketType,
    Properties,
    Publish,
    Reason,
    RetainHandling,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Version,
)
from broker.keepalive import IdleWatch
from broker.link import Link, LinkClosed
from broker.replies import DISCONNECT_REASON, LOGIN_REASON, REFUSAL_REASON, foreign_publish_property
from broker.session import Inflight, InflightState, Message, Outgoing, Session
from broker.topics import Refusal
from security import Principal, PrincipalKind
from twin import Channel, DisconnectReason, Inbound, MessageKind, Verdict

if TYPE_CHECKING:
    from broker.engine import Broker

log = structlog.get_logger("broker")

_PUBLISH: Final = PacketType.PUBLISH << 4


def _succeeded(future: asyncio.Future[None]) -> bool:
    return not future.cancelled() and future.exception() is None


async def _settled(durable: asyncio.Future[None]) -> None:
    """Wait for a store commit; a failed one is logged (the delivery goes ahead, at least once)."""
    try:
        await asyncio.shield(durable)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the store's failure, already counted by its writer
        log.warning("mqtt QoS 2 delivery not recorded before sending", error=str(exc))


class Closing(Exception):
    """Ends the read loop: the connection must close, for `reason`."""

    def __init__(self, reason: DisconnectReason, code: Reason | None = None, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.code = code
        self.detail = detail


class Connection:
    def __init__(self, broker: Broker, link: Link) -> None:
        self.broker = broker
        self.link = link
        self.version = Version.V311
        self.session: Session | None = None
        self.principal: Principal | None = None
        self.client_id = ""
        self.vehicle_id: str | None = None
        self.keep_alive = 0
        self.closed = asyncio.Event()
        self._end: DisconnectReason | None = None
        self._will: Message | None = None
        self._will_delay = 0
        self._acks: set[asyncio.Future[Verdict]] = set()
        self._aliases: dict[int, str] = {}
        self._wake = asyncio.Event()
        # The client's limits (MQTT 5; 3.1.1 clients get the broker's defaults).
        self._send_quota = broker.settings.max_inflight_messages
        self._client_max_packet = 0
        self._inbound_qos = 0
        self._sender: asyncio.Task[None] | None = None
        self._watch: IdleWatch | None = None
        # Counted in the connected-clients gauge (from serving until finished).
        self._counted = False
        self._reader: asyncio.Task[None] | None = None

    # -- the connection's life ------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; never raises (a failure ends this connection only)."""
        self._reader = asyncio.current_task()
        try:
            connect = await self._read_connect()
            if connect is None:
                return
            if not await self._login(connect):
                return
            await self._serve()
        except asyncio.CancelledError:
            self._end = self._end or DisconnectReason.SHUTDOWN
            raise
        except Exception:
            log.exception("mqtt connection failed", client_id=self.client_id, vehicle_id=self.vehicle_id)
        finally:
            await self._finish()

    def kick(self, reason: DisconnectReason) -> None:
        """End the connection from outside (take-over, revocation, shutdown): tell a v5 client why, then close."""
        if self._end is None:
            self._end = reason
        code = DISCONNECT_REASON.get(reason)
        if self.version is Version.V5 and code is not None and self.session is not None:
            reference = self.broker.settings.server_reference
            # MQTT 5: a client told the server is shutting down may move to the one named here.
            props = Properties(server_reference=reference or None) if reason is DisconnectReason.SHUTDOWN else None
            self._write(codec.encode(Disconnect(code, props or Properties()), self.version))
        self.link.close()

    def wake(self) -> None:
        self._wake.set()

    def _attached(self) -> Session:
        if self.session is None:
            msg = "the connection has no session before its CONNECT is accepted"
            raise RuntimeError(msg)
        return self.session

    async def _read_connect(self) -> Connect | None:
        broker = self.broker
        try:
            async with asyncio.timeout(broker.settings.connect_timeout_s):
                first, body, _ = await self._read_packet(first_packet=True)
        except TimeoutError:
            broker.refuse_connection("connect_timeout", self.link.host)
            return None
        except (LinkClosed, codec.CodecError):
            return None
        if first >> 4 != PacketType.CONNECT:
            broker.refuse_connection("protocol", self.link.host, detail="the first packet is not CONNECT")
            return None
        try:
            packet = codec.decode(first, body, Version.V311)
        except codec.UnsupportedProtocol as exc:
            broker.refuse_connection("unsupported_version", self.link.host, detail=exc.detail)
            # The level tells how the client reads a CONNACK: MQTT 5 has properties, older ones not.
            version = Version.V5 if exc.level >= Version.V5 else Version.V311
            self.link.write(codec.encode(Connack(Reason.UNSUPPORTED_PROTOCOL_VERSION), version))
            return None
        except codec.CodecError as exc:
            broker.refuse_connection("protocol", self.link.host, detail=exc.detail)
            return None
        if not isinstance(packet, Connect):
            return None
        self.version = packet.version
        return packet

    async def _login(self, connect: Connect) -> bool:
        broker = self.broker
        v5 = self.version is Version.V5
        client_id = connect.client_id
        assigned = ""
        if not client_id:
            if self.version is Version.V31 or (not connect.clean_start and not v5):
                # MQTT-3.1.3-8: an empty client id needs a clean session (3.1 needs an id at all).
                self._write(codec.encode(Connack(Reason.CLIENT_IDENTIFIER_NOT_VALID), self.version))
                return False
            client_id = assigned = f"auto-{uuid.uuid4().hex}"
        if v5 and connect.properties.authentication_method is not None:
            self._write(codec.encode(Connack(Reason.BAD_AUTHENTICATION_METHOD), self.version))
            return False
        login = await broker.auth.authenticate(
            LoginAttempt(client_id, connect.username, connect.password, self.link.host, self.link.ssl_object)
        )
        if login.principal is None:
            reason = LOGIN_REASON.get(login.refusal, Reason.NOT_AUTHORIZED)
            self._write(codec.encode(Connack(reason if v5 else Reason.NOT_AUTHORIZED), self.version))
            return False
        if broker.stopping:
            self._write(codec.encode(Connack(Reason.SERVER_UNAVAILABLE), self.version))
            return False
        self.principal = login.principal
        self.client_id = client_id
        self.vehicle_id = _vehicle_of(login.principal, connect.username, client_id)
        self.keep_alive = connect.keep_alive
        props = connect.properties
        server_keep_alive = None
        longest = broker.settings.max_keep_alive_s
        if v5 and longest and (self.keep_alive == 0 or self.keep_alive > longest):
            # MQTT 5 Server Keep Alive: the client must use the broker's, and is told so in CONNACK.
            self.keep_alive = server_keep_alive = longest
        if v5:
            self._send_quota = props.receive_maximum or 65_535
            self._client_max_packet = props.maximum_packet_size or 0
        if not broker.has_room_for(client_id):
            # Sessions are bounded: a new client id beyond the bound is refused, existing ones resume.
            self._write(codec.encode(Connack(Reason.QUOTA_EXCEEDED if v5 else Reason.SERVER_UNAVAILABLE), self.version))
            return False
        await broker.take_over(client_id)
        expiry = broker.session_expiry(connect, v5)
        session, present = broker.attach(client_id, login.principal, self.version, connect.clean_start, expiry, self)
        self.session = session
        self._will = self._will_of(connect)
        ack_props = Properties()
        if v5:
            settings = broker.settings
            ack_props = Properties(
                receive_maximum=settings.receive_maximum,
                maximum_packet_size=settings.max_packet_bytes,
                topic_alias_maximum=settings.topic_alias_maximum,
                assigned_client_identifier=assigned or None,
                server_keep_alive=server_keep_alive,
                session_expiry_interval=(int(expiry) if expiry != (props.session_expiry_interval or 0) else None),
            )
        self._write(codec.encode(Connack(Reason.SUCCESS, present, ack_props), self.version))
        return True

    def _will_of(self, connect: Connect) -> Message | None:
        will = connect.will
        if will is None:
            return None
        if will.topic.startswith((topics.PREFIX, "$")) or not filters.valid_topic_name(will.topic):
            # A will is published by the hub on the client's behalf, past ingest and the
            # topic rules: one under vehicles/ would speak for the hub or bypass ingest,
            # and presence already tells the hub when a vehicle drops (docs/broker.md).
            self.broker.quiet.warning(
                "mqtt will dropped",
                f"{self.link.host}",
                client_id=self.client_id,
                topic=will.topic,
                detail="a will may not target vehicles/ or $ topics",
            )
            return None
        props = will.properties
        self._will_delay = props.will_delay_interval or 0
        expires_at = time.time() + props.message_expiry_interval if props.message_expiry_interval else None
        props.will_delay_interval = None
        props.message_expiry_interval = None
        return Message(will.topic, will.payload, will.qos, will.retain, props, expires_at, self.client_id)

    async def _serve(self) -> None:
        broker = self.broker
        broker.connected(self)
        self._counted = True
        try:
            await self._presence(MessageKind.CONNECTED)
            self._sender = asyncio.create_task(self._send_loop())
            if self.keep_alive:
                # MQTT-3.1.2-24: a client silent for one and a half keep-alives is gone.
                self._watch = IdleWatch(self.keep_alive * 1.5, lambda: self.kick(DisconnectReason.KEEPALIVE_TIMEOUT))
            while True:
                try:
                    first, body, dropped = await self._read_packet()
                except LinkClosed:
                    return
                except codec.PacketTooLarge as exc:
                    self.broker.refuse(
                        self, self.vehicle_id or "", "", Refusal.PAYLOAD_TOO_LARGE, exc.size, route_notice=True
                    )
                    raise Closing(DisconnectReason.PROTOCOL_ERROR, Reason.PACKET_TOO_LARGE, exc.detail) from None
                try:
                    packet = codec.decode(first, body, self.version)
                except codec.CodecError as exc:
                    raise Closing(DisconnectReason.PROTOCOL_ERROR, exc.reason, exc.detail) from None
                if not await self._handle(packet, dropped):
                    return
        except Closing as closing:
            if self._end is None:
                self._end = closing.reason
            self.broker.quiet.warning(
                "mqtt protocol error",
                f"{self.link.host}",
                client_id=self.client_id,
                vehicle_id=self.vehicle_id,
                detail=closing.detail,
            )
            if self.version is Version.V5 and closing.code is not None:
                self._write(codec.encode(Disconnect(closing.code), self.version))

    async def _finish(self) -> None:
        broker = self.broker
        if self._watch is not None:
            self._watch.cancel()
        for ack in list(self._acks):
            # Not acknowledged: the client still owns the message and will send it again.
            ack.cancel()
        self._acks.clear()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        self.link.close()
        session = self.session
        try:
            if session is not None:
                reason = self._end or (
                    DisconnectReason.SHUTDOWN if broker.stopping else DisconnectReason.CONNECTION_LOST
                )
                if self._will is not None and reason is not DisconnectReason.CLEAN:
                    broker.publish_will(self.client_id, self._will, self._will_delay, session)
                # Incoming QoS 2 messages never acknowledged are the client's to resend.
                for packet_id, recorded in list(session.incoming.items()):
                    if not recorded:
                        del session.incoming[packet_id]
                broker.detach(self)
                await self._presence(MessageKind.DISCONNECTED, extra={"reason": reason.value})
        finally:
            if self._counted:
                broker.disconnected(self)
            await self.link.wait_closed()
            self.closed.set()

    # -- reading --------------------------------------------------------------------

    async def _read_packet(self, *, first_packet: bool = False) -> tuple[int, bytes, int]:
        """One packet: its first byte, its body, and how many bytes of an oversized PUBLISH were thrown away."""
        link = self.link
        settings = self.broker.settings
        watch = self._watch
        # Every packet has at least two bytes: the type and the first byte of its length.
        if watch is not None and not first_packet:
            watch.waiting()
            head = await link.read(2)
            watch.busy()
        else:
            head = await link.read(2)
        first, byte = head[0], head[1]
        length, shift = byte & 0x7F, 7
        while byte & 0x80:
            if shift > 21:
                msg = "the remaining length is longer than four bytes"
                raise codec.MalformedPacket(msg)
            byte = (await link.read(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
        self.broker.metrics.bytes_received.inc(length + 2)
        if length > settings.max_packet_bytes:
            raise codec.PacketTooLarge(length, settings.max_packet_bytes)
        bound = settings.read_bound
        if length > bound and first & 0xF0 == _PUBLISH:
            # Over the payload limit but under the packet limit: read the head (topic, packet
            # id, properties), throw the rest away as it arrives, and refuse it politely.
            body = await link.read(bound)
            await link.discard(length - bound)
            return first, body, length - bound
        return first, (await link.read(length) if length else b""), 0

    async def _handle(self, packet: codec.Packet, dropped: int) -> bool:
        """Handle one packet; False when it ends the connection (DISCONNECT)."""
        match packet:
            case Publish():
                await self._on_publish(packet, dropped)
            case Ack():
                self._on_ack(packet)
            case Subscribe():
                await self._on_subscribe(packet)
            case Unsubscribe():
                self._on_unsubscribe(packet)
            case codec.PingReq():
                self._write(b"\xd0\x00")
            case Disconnect():
                return self._on_disconnect(packet)
            case Connect():
                # MQTT-3.1.0-2: a second CONNECT is a protocol violation.
                raise Closing(DisconnectReason.PROTOCOL_ERROR, Reason.PROTOCOL_ERROR, "CONNECT on a connected session")
            case _:
                detail = f"{type(packet).__name__} is not sent by clients"
                raise Closing(DisconnectReason.PROTOCOL_ERROR, Reason.PROTOCOL_ERROR, detail)
        return True

    def _on_disconnect(self, packet: Disconnect) -> bool:
        self._end = DisconnectReason.CLEAN
        if packet.reason is Reason.DISCONNECT_WITH_WILL:
            self._end = DisconnectReason.CONNECTION_LOST
        elif packet.reason is Reason.SUCCESS:
            # MQTT-3.14.4-3: a normal DISCONNECT discards the will.
            self._will = None
        session = self.session
        expiry = packet.properties.session_expiry_interval
        if session is not None and expiry is not None and session.expiry_s > 0:
            session.expiry_s = self.broker.cap_expiry(expiry)
        return False

    # -- incoming messages ----------------------------------------------------------

    async def _on_publish(self, packet: Publish, dropped: int) -> None:
        broker = self.broker
        session = self._attached()
        props = packet.properties
        topic = packet.topic
        if self.version is Version.V5 and (wrong := foreign_publish_property(props)):
            # MQTT 5 3.3.2.3: only these may come with a client's PUBLISH; anything else would be passed on.
            raise Closing(DisconnectReason.PROTOCOL_ERROR, Reason.PROTOCOL_ERROR, f"PUBLISH with the property {wrong}")
        if self.version is Version.V5 and props.topic_alias is not None:
            alias = props.topic_alias
            if not 0 < alias <= broker.settings.topic_alias_maximum:
                raise Closing(DisconnectReason.PROTOCOL_ERROR, Reason.TOPIC_ALIAS_INVALID, f"topic alias {alias}")
            if topic:
                self._aliases[alias] = topic
            else:
                known = self._aliases.get(alias)
                if known is None:
                    detail = f"topic alias {alias} is not set"
                    raise Closing(DisconnectReason.PROTOCOL_ERROR, Reason.PROTOCOL_ERROR, detail)
                topic = known
            props.topic_alias = None
        if not filters.valid_topic_name(topic):
            # MQTT-3.3.2-2 (wildcards) and 4.7.3-1 (empty): the connection ends.
            detail = "PUBLISH with an empty topic" if not topic else f"PUBLISH to {topic!r}, which has wildcards"
            raise Closing(DisconnectReason.PROTOCOL_ERROR, Reason.TOPIC_NAME_INVALID, detail)
        if packet.qos == 2 and packet.packet_id in session.incoming:
            # A resend of a message already taken (MQTT 4.3.3, method A): never handled
            # twice. Repeat the PUBREC if it went out; otherwise it goes after the commit.
            if session.incoming[packet.packet_id]:
                self._write(codec.encode(Ack(PacketType.PUBREC, packet.packet_id), self.version))
            return
        if packet.qos:
            if self.version is Version.V5 and len(self._acks) >= broker.settings.receive_maximum:
                raise Closing(
                    DisconnectReason.PROTOCOL_ERROR, Reason.RECEIVE_MAXIMUM_EXCEEDED, "over the receive maximum"
                )
            if packet.qos == 2:
                session.incoming[packet.packet_id] = False
        broker.metrics.messages_received.inc()
        size = len(packet.payload) + dropped
        expires_at = time.time() + props.message_expiry_interval if props.message_expiry_interval else None
        message = Message(topic, packet.payload, packet.qos, packet.retain, props, expires_at, self.client_id)
        route = topics.parse(topic)
        refusal = broker.admit(self, message, route, size)
        if refusal is not None:
            broker.refuse(self, refusal[1], topic, refusal[0], size)
            self._acknowledge(packet, REFUSAL_REASON[refusal[0]], broker.refusal_detail(refusal[0], topic, size))
            return
        if route is None or route.kind is None:
            self._acknowledge(packet, Reason.SUCCESS, changes=broker.route(message))
            return
        if route.kind is MessageKind.TWIN_GET and props.response_topic is not None:
            self._expect_reply(route.vehicle_id, props.response_topic, props.correlation_data)
        # Every ingested message waits for the pipeline's verdict, QoS 0 too: other subscribers (a
        # dashboard) get it only once accepted, so a refused message reaches no one.
        ack: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        if packet.qos:
            self._acks.add(ack)
        ack.add_done_callback(lambda done: self._committed(packet, message, done))
        await broker.sink.submit(
            Inbound(
                route.vehicle_id,
                route.kind,
                packet.payload,
                received_at=time.time(),
                qos=packet.qos,
                ack=ack,
                subtopic=route.subtopic,
                client_id=self.client_id,
                peer=f"{self.link.host}:{self.link.port}",
            )
        )

    def _expect_reply(self, vehicle_id: str, response_topic: str, correlation: bytes | None) -> None:
        """Remember an MQTT 5 twin/get's response topic, if it is one the vehicle may read (its own topics)."""
        principal = self.principal
        own = response_topic.startswith(f"{topics.PREFIX}{vehicle_id}/")
        if principal is None or not own or not filters.valid_topic_name(response_topic):
            return
        if principal.kind is PrincipalKind.VEHICLE and principal.name != vehicle_id:
            return
        self.broker.expect_twin_reply(vehicle_id, response_topic, correlation)

    def _committed(self, packet: Publish, message: Message, ack: asyncio.Future[Verdict]) -> None:
        self._acks.discard(ack)
        if ack.cancelled() or ack.exception() is not None:
            # Not committed: no acknowledgement, the client sends it again.
            if packet.qos == 2 and self.session is not None:
                self.session.incoming.pop(packet.packet_id, None)
            return
        verdict = ack.result()
        if verdict.accepted:
            self._acknowledge(packet, Reason.SUCCESS, changes=self.broker.route(message))
        else:
            self._acknowledge(packet, Reason.PAYLOAD_FORMAT_INVALID, verdict.detail or verdict.reason)

    def _acknowledge(
        self, packet: Publish, reason: Reason, detail: str = "", changes: list[stores.Change] | None = None
    ) -> None:
        """PUBACK or PUBREC, once the broker store has committed what this message changed (if anything)."""
        changes = changes or []
        session = self._attached()
        if not packet.qos:
            self.broker.persist(changes)
            return
        if packet.qos == 2 and session.stored:
            # The id must be durable before PUBREC, so a resend after a restart is recognised.
            changes.append(stores.PutIncoming(session.client_id, packet.packet_id))
        kind = PacketType.PUBACK if packet.qos == 1 else PacketType.PUBREC
        if reason is Reason.SUCCESS or self.version is not Version.V5:
            # The common case, without building a packet: type, length 2, packet id.
            data = bytes((kind << 4, 2)) + packet.packet_id.to_bytes(2, "big")
        else:
            props = Properties(reason_string=detail) if detail else Properties()
            data = codec.encode(Ack(kind, packet.packet_id, reason, props), self.version)
        durable = self.broker.persist(changes)
        if durable is None:
            self._acked(packet, data, None)
        else:
            durable.add_done_callback(lambda done: self._acked(packet, data, done))

    def _acked(self, packet: Publish, data: bytes, durable: asyncio.Future[None] | None) -> None:
        session = self.session
        if durable is not None and (durable.cancelled() or durable.exception() is not None):
            # Not durable: no acknowledgement, so the client sends it again.
            if packet.qos == 2 and session is not None:
                session.incoming.pop(packet.packet_id, None)
            return
        if packet.qos == 2 and session is not None:
            session.incoming[packet.packet_id] = True
        self._write(data)

    def _on_ack(self, packet: Ack) -> None:
        session = self._attached()
        if packet.kind is PacketType.PUBREL:
            # The id is released whether or not this connection saw the PUBLISH: a client
            # finishing the flow after a reconnect gets its PUBCOMP (MQTT 4.3.3).
            found = session.incoming.pop(packet.packet_id, None) is not None
            reason = Reason.SUCCESS if found or self.version is not Version.V5 else Reason.PACKET_IDENTIFIER_NOT_FOUND
            pubcomp = codec.encode(Ack(PacketType.PUBCOMP, packet.packet_id, reason), self.version)
            released = self.broker.persist([stores.ReleaseIncoming(session.client_id, packet.packet_id)]) if (
                found and session.stored
            ) else None  # fmt: skip
            if released is None:
                self._write(pubcomp)
            else:
                released.add_done_callback(lambda done: None if done.exception() else self._write(pubcomp))
            return
        inflight = session.inflight.get(packet.packet_id)
        if inflight is None:
            return
        if packet.kind is PacketType.PUBREC:
            if packet.reason >= Reason.UNSPECIFIED_ERROR:
                # MQTT 5: the subscriber refused it; the exchange ends here.
                self._complete(session, packet.packet_id)
                return
            inflight.state = InflightState.PUBREL_SENT
            pubrel = codec.encode(Ack(PacketType.PUBREL, packet.packet_id), self.version)
            durable = self.broker.persist(persistence.sent(session, inflight)[1:]) if session.stored else None
            if durable is None:
                self._write(pubrel)
            else:
                # PUBREL goes out once its state is committed: after a restart it is PUBREL that is
                # resent, never the PUBLISH the subscriber already has.
                durable.add_done_callback(lambda done: self._write(pubrel) if _succeeded(done) else None)
            return
        expected = InflightState.PUBLISH_SENT if packet.kind is PacketType.PUBACK else InflightState.PUBREL_SENT
        if inflight.state is expected and (packet.kind is PacketType.PUBACK) == (inflight.outgoing.qos == 1):
            self._complete(session, packet.packet_id)

    def _complete(self, session: Session, packet_id: int) -> None:
        del session.inflight[packet_id]
        if session.stored:
            self.broker.persist([stores.AckInflight(session.client_id, packet_id)])
        self._wake.set()

    # -- subscriptions --------------------------------------------------------------

    async def _on_subscribe(self, packet: Subscribe) -> None:
        broker = self.broker
        session = self._attached()
        sub_id = packet.properties.subscription_identifiers[0] if packet.properties.subscription_identifiers else None
        reasons: list[Reason] = []
        granted: list[tuple[codec.Subscription, bool]] = []
        for subscription in packet.subscriptions:
            reason, new = await broker.subscribe(self, subscription, sub_id)
            reasons.append(reason)
            if reason <= Reason.GRANTED_QOS_2:
                granted.append((subscription, new))
        self._write(codec.encode(Suback(packet.packet_id, reasons), self.version))
        for subscription, new in granted:
            handling = subscription.retain_handling
            shared = filters.split_shared(subscription.topic_filter) is not None
            if shared or handling is RetainHandling.NEVER or (handling is RetainHandling.SEND_IF_NEW and not new):
                continue
            broker.send_retained(session, subscription, sub_id)
        for subscription, _ in granted:
            await self._subscribed(subscription.topic_filter)

    async def _subscribed(self, topic_filter: str) -> None:
        if self.vehicle_id is None:
            return
        delta = topics.downlink(self.vehicle_id, Channel.DELTA)
        # Any command id stands for all of them: a filter matching one matches every command topic.
        command = topics.downlink(self.vehicle_id, Channel.COMMAND, "0")
        # The subtopic names the delta channel when the filter covers it, however it is
        # spelt (`.../twin/delta`, `.../twin/+`, `.../#`), so ingest need not know wildcards.
        await self._presence(
            MessageKind.SUBSCRIBED,
            topic_filter.encode(),
            subtopic=Channel.DELTA.value if filters.matches(delta, topic_filter) else "",
            extra={"commands": "1"} if filters.matches(command, topic_filter) else None,
        )

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        reasons = [
            Reason.SUCCESS if self.broker.unsubscribe(self, f) else Reason.NO_SUBSCRIPTION_EXISTED
            for f in packet.topic_filters
        ]
        self._write(codec.encode(Unsuback(packet.packet_id, reasons), self.version))

    # -- sending --------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.broker.metrics.bytes_sent.inc(len(data))
        self.link.write(data)

    async def _send_loop(self) -> None:
        """Resend what was in flight, then drain the queue as the client's receive maximum allows."""
        session = self._attached()
        for resend in sorted(session.inflight.values(), key=lambda i: i.outgoing.seq):
            if resend.state is InflightState.PUBREL_SENT:
                self._write(codec.encode(Ack(PacketType.PUBREL, resend.packet_id), self.version))
            else:
                self._send(session, resend.outgoing, resend)
        high_water = self.broker.settings.write_buffer_bytes
        while True:
            await self._wake.wait()
            self._wake.clear()
            while session.queue:
                if session.queue[0].qos and len(session.inflight) >= self._send_quota:
                    break
                outgoing = session.dequeue()
                now = time.time()
                stored = session.stored and outgoing.qos > 0
                if outgoing.message.expires_at is not None and outgoing.message.expires_at <= now:
                    if stored:
                        self.broker.persist([stores.Dequeue(session.client_id, outgoing.seq)])
                    continue
                inflight: Inflight | None = None
                if outgoing.qos:
                    inflight = Inflight(outgoing, session.next_packet_id())
                    session.inflight[inflight.packet_id] = inflight
                data = self._encoded(session, outgoing, inflight)
                if data is None:
                    if stored:
                        self.broker.persist([stores.Dequeue(session.client_id, outgoing.seq)])
                    continue
                if stored and inflight is not None:
                    durable = self.broker.persist(persistence.sent(session, inflight))
                    if outgoing.qos == 2 and durable is not None:
                        # Exactly once: a QoS 2 delivery is recorded with its packet id before it goes
                        # out, so a restart in between cannot send it again under another id.
                        await _settled(durable)
                self._deliver(data, inflight)
                if self.link.buffered() > high_water:
                    await self.link.drain()

    def _send(self, session: Session, outgoing: Outgoing, inflight: Inflight | None) -> None:
        data = self._encoded(session, outgoing, inflight)
        if data is not None:
            self._deliver(data, inflight)

    def _encoded(self, session: Session, outgoing: Outgoing, inflight: Inflight | None) -> bytes | None:
        """The PUBLISH for `outgoing`; None (and out of flight) when over the client's maximum packet size."""
        packet = session.publish_packet(inflight, outgoing)
        data = codec.encode_publish(packet, self.version)
        if self._client_max_packet and len(data) > self._client_max_packet:
            # MQTT-3.1.2-25: never send a packet over the client's maximum; as if delivered.
            self.broker.metrics.too_large_for_client.inc()
            if inflight is not None:
                session.inflight.pop(inflight.packet_id, None)
            return None
        return data

    def _deliver(self, data: bytes, inflight: Inflight | None) -> None:
        if inflight is not None:
            inflight.sent = True
        self.broker.metrics.messages_sent.inc()
        self._write(data)

    # -- presence -------------------------------------------------------------------

    async def _presence(
        self, kind: MessageKind, payload: bytes = b"", subtopic: str = "", extra: dict[str, str] | None = None
    ) -> None:
        """Tell ingest what happened to a vehicle's connection; other clients have no presence."""
        if self.vehicle_id is None:
            return
        await self.broker.sink.submit(
            Inbound(
                self.vehicle_id,
                kind,
                payload,
                received_at=time.time(),
                subtopic=subtopic,
                client_id=self.client_id,
                peer=f"{self.link.host}:{self.link.port}",
                extra=extra or {},
            )
        )


def _vehicle_of(principal: Principal, username: str | None, client_id: str) -> str | None:
    """The vehicle a connection speaks for: its authenticated vehicle id, none for a user.

    A development (anonymous) client is taken at its word, as before authentication existed.
    """
    if principal.kind is PrincipalKind.DEV:
        return topics.vehicle_id_of(username, client_id)
    if principal.kind is PrincipalKind.VEHICLE:
        return principal.name
    return None

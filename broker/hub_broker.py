"""The embedded broker's connections: listeners, presence, take-over and shutdown.

amqtt serves each client in one task (`_client_message_loop`); this subclass replaces
that loop so that, per client, CONNECTED, every message, every SUBSCRIBED and finally
DISCONNECTED reach the sink in the order they happened, each `submit` awaited before
the next packet is handled (that wait is the backpressure on the publisher). What
happens to each message is `routing`'s part.

Plugin event hooks are not used for any of this: amqtt runs them as background tasks
whose exceptions are lost and which finish out of order.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.contexts import ListenerType
from amqtt.errors import AMQTTError, BrokerError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.session import ApplicationMessage, Session
from amqtt.utils import gen_client_id

from broker import session_state, topics
from broker.auth import PRINCIPAL, BrokerAuth, principal_of
from broker.errors import PortInUse
from broker.handler import DISCONNECT_REASON, Ended, HubProtocolHandler
from broker.metrics import BrokerMetrics
from broker.reader import Backlog, BoundedReader, read_bound
from broker.routing import peer_of
from broker.sessions import SessionBroker
from broker.topics import Refusal
from security import AbuseLimits, Principal, PrincipalKind
from twin import Channel, DisconnectReason, Inbound, InboundSink, MessageKind

log = structlog.get_logger(__name__)

# How long a newcomer waits for the connection it takes over to finish closing, and how
# long shutdown waits for connections to say goodbye before cancelling them.
TAKE_OVER_TIMEOUT: Final = 5.0
SHUTDOWN_GRACE: Final = 5.0
# Connections waiting to be accepted, per listener (the kernel caps it at net.core.somaxconn).
DEFAULT_LISTEN_BACKLOG: Final = 4096


@dataclass(slots=True, eq=False)
class _Connection:
    session: Session
    handler: BrokerProtocolHandler
    vehicle_id: str | None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class LoginRefused(AMQTTError):  # type: ignore[misc]  # amqtt ships no type information
    """Ends a connection whose login was refused (its CONNACK is already sent)."""


class _DropQuiet(logging.Filter):
    """amqtt logs every ended connection set-up; a refused login is already logged by `BrokerAuth`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to initialize client session: login refused")


class _DropPortInUse(logging.Filter):
    """amqtt logs a traceback for any start-up failure; PortInUse already says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        return not isinstance(failure, PortInUse)


class HubBroker(SessionBroker):
    def __init__(
        self,
        config: dict[str, Any],
        *,
        sink: InboundSink,
        metrics: BrokerMetrics,
        max_payload_bytes: int,
        max_queued_messages: int,
        session_expiry_s: float,
        auth: BrokerAuth | None = None,
        abuse: AbuseLimits | None = None,
        listen_backlog: int = DEFAULT_LISTEN_BACKLOG,
    ) -> None:
        session_state.install()
        super().__init__(
            config,
            sink=sink,
            metrics=metrics,
            max_payload_bytes=max_payload_bytes,
            max_queued_messages=max_queued_messages,
            session_expiry_s=session_expiry_s,
            auth=auth,
            abuse=abuse,
        )
        self._read_bound = read_bound(max_payload_bytes)
        self._listen_backlog = listen_backlog
        self._live: dict[str, _Connection] = {}
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._connected = 0
        self._stopping = False
        self._quiet_refusals = _DropQuiet()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        amqtt_log = logging.getLogger("amqtt.broker")
        quiet = _DropPortInUse()
        amqtt_log.addFilter(quiet)
        busy: PortInUse | None = None
        try:
            await super().start()
        except BrokerError as exc:
            # amqtt leaves the listeners that did bind open when a later one fails.
            for server in self._servers.values():
                await server.close_instance()
            if not isinstance(exc.__cause__, PortInUse):
                raise
            busy = exc.__cause__
        finally:
            amqtt_log.removeFilter(quiet)
        if busy is not None:
            raise busy
        amqtt_log.addFilter(self._quiet_refusals)

    async def shutdown(self) -> None:
        self._stopping = True
        logging.getLogger("amqtt.broker").removeFilter(self._quiet_refusals)
        for server in self._servers.values():
            server.instance.close()
        for connection in list(self._live.values()):
            await connection.handler.handle_connection_closed()
        # amqtt does not wait for its connection tasks; they still owe the sink a
        # DISCONNECTED and must not outlive the broker.
        if self._connection_tasks:
            _, pending = await asyncio.wait(self._connection_tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await super().shutdown()

    def bound_ports(self, listener_name: str) -> list[int]:
        server = self._servers.get(listener_name)
        if server is None or server.instance is None:
            return []
        return [sock.getsockname()[1] for sock in server.instance.sockets]

    @property
    def connected_clients(self) -> int:
        return self._connected

    def _is_online(self, session: Session) -> bool:
        # A resuming session counts as online only once its queue is drained and its
        # connection served, so nothing live overtakes what was queued for it.
        connection = self._live.get(session.client_id)
        return connection is not None and connection.session is session and super()._is_online(session)

    async def _create_server_instance(
        self,
        listener_name: str,
        listener_type: ListenerType,
        address: str | None,
        port: int,
        ssl_context: Any,
    ) -> Any:
        # amqtt keeps the brackets of an IPv6 bind address, which getaddrinfo rejects.
        host = address[1:-1] if address and address.startswith("[") else address
        try:
            if listener_type == ListenerType.TCP:
                # amqtt leaves asyncio's default backlog of 100 (see `mqtt.listen_backlog`).
                return await asyncio.start_server(
                    functools.partial(self.stream_connected, listener_name=listener_name),
                    host,
                    port,
                    reuse_address=True,
                    ssl=ssl_context,
                    backlog=self._listen_backlog,
                )
            return await super()._create_server_instance(listener_name, listener_type, host, port, ssl_context)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            kind = "ws" if listener_type == ListenerType.WS else "tcp"
            raise PortInUse(host or "*", port, kind) from exc

    # -- connections -----------------------------------------------------------------

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        try:
            await super().stream_connected(reader, writer, listener_name)
        finally:
            # amqtt leaves the socket open when a client fails before its session starts
            # (no CONNECT, bad CONNECT) or when the task is cancelled at shutdown.
            writer.close()

    async def _client_connected(self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connection_tasks.add(task)
        try:
            if self._stopping:
                await writer.close()
                return
            await super()._client_connected(listener_name, BoundedReader(reader, self._read_bound), writer)
        finally:
            if task is not None:
                self._connection_tasks.discard(task)

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        handler, session = await self._connect(reader, writer, remote_address, remote_port)
        # amqtt builds the handler inside a classmethod with no factory to override.
        handler.__class__ = HubProtocolHandler
        # As `HubProtocolHandler._init_session` would have: no write keep-alive timer.
        handler.keepalive_timeout = None
        if session.parent:
            # amqtt resumes a stored session only for a CONNECT with clean session = 0,
            # but keeps the stored flag.
            session.clean_session = False
        queue = session.delivered_message_queue
        if not isinstance(queue, Backlog):
            # A resumed persistent session keeps what it had queued, in order.
            backlog = Backlog()
            while not queue.empty():
                backlog.put_nowait(queue.get_nowait())
            session.delivered_message_queue = backlog
        if isinstance(reader, BoundedReader):
            reader.pause_while_full(session.delivered_message_queue)
        if session.keep_alive > 0:
            # MQTT 3.1.1 (3.1.2.10): a client is gone after one and a half keep-alives.
            session.keep_alive = math.ceil(session.keep_alive * 1.5)
        will_topic = session.will_topic or ""
        if session.will_flag and will_topic.startswith((topics.PREFIX, "$")):
            # amqtt publishes a will straight to subscribers, past the routing rules: a
            # will under vehicles/ could speak for the hub or bypass ingest. Presence
            # already tells the hub when a vehicle drops.
            log.warning(
                "mqtt will dropped",
                client_id=session.client_id,
                topic=will_topic,
                detail="a will may not target vehicles/ or $ topics",
            )
            session.will_flag = False
        return handler, session

    async def _connect(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        """amqtt's `_initialize_client_session`, with the login decided first.

        amqtt deletes the stored session of a clean CONNECT's client id, and copies a
        persistent CONNECT's credentials and will into the stored session, all before it
        authenticates: anyone could wipe or hijack a vehicle's session. Here nothing
        stored is touched until the client has logged in; a refused client gets its
        CONNACK and the connection ends.
        """
        try:
            handler, incoming = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        except MQTTError:
            await writer.close()
            raise
        except NoDataError as exc:
            raise AMQTTError(exc) from exc
        principal = await self._auth.authenticate(incoming)
        if principal is None:
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise LoginRefused(f"login refused for client id {incoming.client_id!r}")
        incoming.attributes[PRINCIPAL] = principal
        stored = self._sessions.get(incoming.client_id) if incoming.client_id else None
        if stored is not None and (incoming.clean_session or not _same_identity(stored[0], principal)):
            # A clean start, or another identity reusing the client id: it must not inherit
            # subscriptions it was never checked for.
            await self._delete_session(incoming.client_id)
            stored = None
        if incoming.clean_session and not incoming.client_id:
            incoming.client_id = gen_client_id()
        if incoming.clean_session or stored is None:
            incoming.parent = 0
            return handler, incoming
        existing: Session = stored[0]
        for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "username", "password"):
            setattr(existing, name, getattr(incoming, name))
        existing.attributes[PRINCIPAL] = principal
        existing.parent = 1
        return handler, existing

    def create_offline_session(self, client_id: str) -> tuple[BrokerProtocolHandler, Session]:
        handler, session = super().create_offline_session(client_id)
        handler.__class__ = HubProtocolHandler
        return handler, session

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        # The login was decided in `_connect`, before any stored session was touched.
        allowed = principal_of(session) is not None
        # amqtt has no hook between authentication and attaching the session, and its own
        # take-over only covers persistent sessions (a clean one leaves both connected).
        # Taking over here means only an authenticated newcomer can evict a connection.
        if allowed:
            await self._take_over(session.client_id)
        return allowed

    async def _take_over(self, client_id: str) -> None:
        previous = self._live.get(client_id)
        if previous is None:
            return
        previous.session.attributes[DISCONNECT_REASON] = DisconnectReason.TAKEN_OVER
        await previous.handler.handle_connection_closed()
        # Waiting keeps the old DISCONNECTED ahead of the new CONNECTED, and stops the old
        # loop from marking a shared (persistent) session disconnected under the newcomer.
        try:
            await asyncio.wait_for(previous.closed.wait(), TAKE_OVER_TIMEOUT)
        except TimeoutError:
            log.warning(
                "mqtt take-over slow: the old connection is still closing",
                client_id=client_id,
                waited_s=TAKE_OVER_TIMEOUT,
            )

    async def _client_message_loop(self, session: Session, handler: BrokerProtocolHandler) -> None:
        connection = _Connection(session, handler, _vehicle_of(session))
        session.attributes.pop(DISCONNECT_REASON, None)
        self._live[session.client_id] = connection
        self._connected += 1
        self._metrics.connected_clients.inc()
        try:
            if self._stopping:
                await handler.handle_connection_closed()
            await self._presence(connection, MessageKind.CONNECTED)
            await self._end(connection, await self._serve(connection))
        except Exception:
            log.exception("mqtt connection failed", client_id=session.client_id, vehicle_id=connection.vehicle_id)
            await self._handle_disconnect(session, handler, _settled(None))
        finally:
            self._connected -= 1
            self._metrics.connected_clients.dec()
            if self._live.get(session.client_id) is connection:
                del self._live[session.client_id]
            connection.closed.set()

    async def disconnect(self, which: Callable[[Principal], bool], reason: DisconnectReason) -> int:
        """Close every live connection whose principal `which` selects (revoked credentials); returns how many."""
        closing = [
            connection
            for connection in list(self._live.values())
            if (principal := principal_of(connection.session)) is not None and which(principal)
        ]
        for connection in closing:
            connection.session.attributes[DISCONNECT_REASON] = reason
            log.warning(
                "mqtt connection closed by the hub",
                client_id=connection.session.client_id,
                vehicle_id=connection.vehicle_id,
                reason=reason.value,
            )
            await connection.handler.handle_connection_closed()
        for connection in closing:
            try:
                await asyncio.wait_for(connection.closed.wait(), TAKE_OVER_TIMEOUT)
            except TimeoutError:
                log.warning("mqtt connection slow to close", client_id=connection.session.client_id)
        return len(closing)

    async def _serve(self, connection: _Connection) -> DisconnectPacket | None:
        """Handle one client's packets until it goes; return its DISCONNECT, if it sent one.

        Everything arrives through the session's backlog in the order the reader took it
        (see `HubProtocolHandler._to_broker`), so what was read before a disconnect
        reaches the sink before it.
        """
        session, handler = connection.session, connection.handler
        queue = session.delivered_message_queue
        while True:
            item = await queue.get()
            if isinstance(item, Ended):
                if item.handler is handler:
                    return item.packet
                # The end of an earlier connection of this persistent session.
                continue
            if isinstance(item, Subscription):
                await self._subscribe(connection, item)
            elif isinstance(item, UnSubscription):
                await self._handle_unsubscription(session, handler, _settled(item))
            elif not await self._deliver(session, item):
                session.attributes[DISCONNECT_REASON] = DisconnectReason.PROTOCOL_ERROR
                return None

    async def _end(self, connection: _Connection, packet: DisconnectPacket | None) -> None:
        session = connection.session
        reader = connection.handler.reader
        if isinstance(reader, BoundedReader) and reader.refused is not None:
            session.attributes[DISCONNECT_REASON] = DisconnectReason.PROTOCOL_ERROR
            self._refuse(session, connection.vehicle_id or "", "", Refusal.PAYLOAD_TOO_LARGE, reader.refused.size)
        reason = self._disconnect_reason(session, packet)
        # amqtt's own ending: the will message, stopping the handler, the session state.
        await self._handle_disconnect(session, connection.handler, _settled(packet))
        # The handler is stopped, so nothing more is queued: route what was read but not yet routed.
        queue = session.delivered_message_queue
        leftovers: list[ApplicationMessage] = []
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, ApplicationMessage):
                leftovers.append(item)
        for message in leftovers:
            await self._deliver(session, message)
        await self.end_clean_session(session)
        await self._presence(connection, MessageKind.DISCONNECTED, extra={"reason": reason.value})

    def _disconnect_reason(self, session: Session, packet: DisconnectPacket | None) -> DisconnectReason:
        told: DisconnectReason | None = session.attributes.pop(DISCONNECT_REASON, None)
        if told is not None:
            return told
        if isinstance(packet, DisconnectPacket):
            return DisconnectReason.CLEAN
        if self._stopping:
            return DisconnectReason.SHUTDOWN
        return DisconnectReason.CONNECTION_LOST

    async def _subscribe(self, connection: _Connection, subscription: Any) -> None:
        session = connection.session
        await self._handle_subscription(session, connection.handler, _settled(subscription))
        if connection.vehicle_id is None:
            return
        delta_topic = topics.downlink(connection.vehicle_id, Channel.DELTA)
        # Any command id stands for all of them: a filter matching one matches every command topic.
        command_topic = topics.downlink(connection.vehicle_id, Channel.COMMAND, "0")
        # amqtt has already sent the SUBACK; report only the filters it granted.
        for topic_filter, _qos in subscription.topics:
            granted = self._subscriptions.get(topic_filter, ())
            if any(other.client_id == session.client_id for other, _ in granted):
                # The subtopic names the delta channel when the filter covers it, however
                # it is spelt (`.../twin/delta`, `.../twin/+`, `.../#`), so ingest need not
                # know MQTT wildcards to push the current delta.
                covers_delta = self._matches(delta_topic, topic_filter)
                covers_commands = self._matches(command_topic, topic_filter)
                await self._presence(
                    connection,
                    MessageKind.SUBSCRIBED,
                    topic_filter.encode(),
                    subtopic=Channel.DELTA.value if covers_delta else "",
                    extra={"commands": "1"} if covers_commands else None,
                )

    async def _presence(
        self,
        connection: _Connection,
        kind: MessageKind,
        payload: bytes = b"",
        subtopic: str = "",
        extra: dict[str, str] | None = None,
    ) -> None:
        """Tell ingest what happened to a vehicle's connection; other clients have no presence."""
        if connection.vehicle_id is None:
            return
        await self._sink.submit(
            Inbound(
                connection.vehicle_id,
                kind,
                payload,
                received_at=time.time(),
                subtopic=subtopic,
                client_id=connection.session.client_id,
                peer=peer_of(connection.session),
                extra=extra or {},
            )
        )


def _same_identity(session: Session, principal: Principal) -> bool:
    """Whether a stored session last belonged to this principal (a session amqtt made offline has no owner)."""
    previous = principal_of(session)
    return previous is None or (previous.kind, previous.name) == (principal.kind, principal.name)


def _vehicle_of(session: Session) -> str | None:
    """The vehicle a connection speaks for: its authenticated vehicle id, none for a user.

    A development (anonymous) client is taken at its word, as before authentication existed.
    """
    principal = principal_of(session)
    if principal is None or principal.kind is PrincipalKind.DEV:
        return topics.vehicle_id_of(session.username, session.client_id)
    if principal.kind is PrincipalKind.VEHICLE:
        return principal.name
    return None


def _settled(result: Any) -> asyncio.Future[Any]:
    """A finished future, for amqtt methods that take the waiter they were woken by."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future

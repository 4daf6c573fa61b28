"""fleethub's MQTT server: listeners, connection limits, sessions, routing and the hub's own messages.

Each accepted connection is one `Connection` task; everything they share (sessions,
subscriptions, retained messages, the live connection of each client id) lives here and
is changed without awaiting, so no two connections see it half-changed.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import ssl
import time
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any, Final

import structlog
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from broker import acl, filters, persistence, refusals, stores, sys_topics, topics
from broker.auth import BrokerAuth
from broker.codec import Connect, Properties, Reason, Subscription, Version
from broker.connection import Connection
from broker.errors import PortInUse
from broker.link import Link, StreamLink, WebSocketLink
from broker.metrics import BrokerMetrics
from broker.persistence import Persistence
from broker.quiet_log import QuietLog
from broker.router import Router
from broker.session import Message, Outgoing, Overflow, Session, SessionLimits
from broker.settings import BrokerSettings, tls_context
from broker.topics import Refusal
from security import AbuseLimits, Principal, PrincipalKind, TokenBuckets
from twin import Channel, DisconnectReason, InboundSink

log = structlog.get_logger("broker")

# How long a newcomer waits for the connection it takes over to finish closing, and how
# long shutdown waits for connections to say goodbye before cancelling them.
TAKE_OVER_TIMEOUT: Final = 5.0
SHUTDOWN_GRACE: Final = 5.0
SWEEP_INTERVAL: Final = 1.0
# Vehicles with an MQTT 5 twin/get awaiting its document on a response topic, at most.
_MAX_PENDING_REPLIES: Final = 100_000


class Broker:
    def __init__(
        self,
        settings: BrokerSettings,
        *,
        sink: InboundSink,
        metrics: BrokerMetrics,
        auth: BrokerAuth,
        abuse: AbuseLimits | None = None,
        persistence: Persistence | None = None,
    ) -> None:
        self.settings = settings
        self.persistence = persistence
        self.sink = sink
        self.metrics = metrics
        self.auth = auth
        self.abuse = abuse or AbuseLimits()
        self.router = Router()
        self.sessions: dict[str, Session] = {}
        self.stopping = False
        self.started_at = time.time()
        self._limits = SessionLimits(settings.max_queued_messages, settings.max_queued_bytes, settings.slow_subscriber)
        self._message_rate = TokenBuckets(self.abuse.message_rate_per_s, self.abuse.message_burst)
        self._live: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._per_address: Tally[str] = Tally()
        self._open_links = 0
        self._fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._wills: dict[str, asyncio.TimerHandle] = {}
        self._servers: dict[str, asyncio.Server] = {}
        self._ws_server: WsServer | None = None
        self._housekeeping: list[asyncio.Task[None]] = []
        self._log = QuietLog()
        self.quiet = self._log
        # MQTT 5 request/response: where each vehicle asked for its next twin document (topic, correlation data).
        self._twin_replies: dict[str, tuple[str, bytes | None]] = {}
        self.running = False

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        host = settings.host
        try:
            self._servers["tcp"] = await self._listen(host, settings.port, None, "tcp")
            if settings.tls is not None:
                self._servers["tls"] = await self._listen(host, settings.tls.port, tls_context(settings.tls), "tls")
            if settings.ws_port is not None:
                try:
                    self._ws_server = await serve(
                        self._accept_ws,
                        host,
                        settings.ws_port,
                        subprotocols=[Subprotocol("mqtt")],
                        compression=None,
                        max_size=settings.max_packet_bytes + 8,
                        ping_interval=None,
                        backlog=settings.listen_backlog,
                    )
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    raise PortInUse(host or "*", settings.ws_port, "ws") from exc
        except BaseException:
            await self._close_listeners()
            raise
        self.running = True
        self.started_at = time.time()
        self._housekeeping.append(asyncio.create_task(self._sweep_loop()))
        if settings.sys_interval_s > 0:
            self._housekeeping.append(asyncio.create_task(self._sys_loop()))

    async def _listen(self, host: str, port: int, context: ssl.SSLContext | None, kind: str) -> asyncio.Server:
        try:
            return await asyncio.start_server(
                self._accept_stream, host, port, reuse_address=True, ssl=context, backlog=self.settings.listen_backlog
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(host or "*", port, kind) from exc

    async def shutdown(self) -> None:
        self.stopping = True
        self.running = False
        for server in self._servers.values():
            server.close()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=False)
        for connection in list(self._live.values()):
            connection.kick(DisconnectReason.SHUTDOWN)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in self._housekeeping:
            task.cancel()
        await asyncio.gather(*self._housekeeping, return_exceptions=True)
        for handle in self._wills.values():
            handle.cancel()
        self._wills.clear()
        await self._close_listeners()

    async def _close_listeners(self) -> None:
        for server in self._servers.values():
            server.close()
            await server.wait_closed()
        self._servers.clear()
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            self._ws_server = None

    def bound_ports(self, listener: str) -> list[int]:
        if listener == "ws":
            server: Any = self._ws_server
        else:
            server = self._servers.get(listener)
        if server is None:
            return []
        return [sock.getsockname()[1] for sock in server.sockets]

    @property
    def connected_clients(self) -> int:
        return len(self._live)

    # -- persistence ----------------------------------------------------------------

    def restore(self, snapshot: stores.Snapshot, now: float) -> None:
        """Take back what the broker store kept: retained messages and persistent sessions."""
        for stored in snapshot.retained:
            message = persistence.restored_retained(stored)
            if message is not None:
                self.router.retain(message)
        for kept in snapshot.sessions:
            rec = kept.record
            session = Session(rec.client_id, None, persistence.version_of(rec.protocol_version), self._limits)
            session.expiry_s = self.cap_expiry(rec.expiry_interval_s)
            persistence.restore_session(kept, session, now)
            for sub, sub_id in persistence.restored_subscriptions(kept):
                session.subscriptions[sub.topic_filter] = sub
                shared = filters.split_shared(sub.topic_filter)
                inner, group = (shared[1], shared[0]) if shared is not None else (sub.topic_filter, None)
                self.router.subscribe(session.client_id, (sub, sub_id), inner, group)
            self.sessions[session.client_id] = session
        self.router.continue_after(snapshot.last_seq)

    def persist(self, changes: list[stores.Change]) -> asyncio.Future[None] | None:
        """Hand `changes` to the store writer; None when there is nothing to wait for."""
        if self.persistence is None or not changes:
            return None
        return self.persistence.put(changes)

    def on_store_dropped(self, dropped: list[stores.Dropped]) -> None:
        """The store dropped queued messages to keep a session within its limits: so does memory."""
        by_client: dict[str, set[int]] = {}
        for item in dropped:
            by_client.setdefault(item.client_id, set()).add(item.seq)
        for client_id, seqs in by_client.items():
            session = self.sessions.get(client_id)
            if session is not None:
                self.metrics.queued_dropped.inc(session.discard(seqs))

    # -- accepting ------------------------------------------------------------------

    def _admit_link(self, host: str) -> str | None:
        """Why a new connection must be closed at once, or None to serve it."""
        if self.stopping:
            return "shutdown"
        if self._open_links >= self._fd_limit - self.settings.fd_headroom:
            # Leave file descriptors for the HTTP API, the database and existing sessions.
            return "fd_headroom"
        if self._per_address[host] >= self.settings.max_connections_per_address:
            return "per_address"
        return None

    async def _accept_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve_link(StreamLink(reader, writer))

    async def _accept_ws(self, websocket: ServerConnection) -> None:
        await self._serve_link(WebSocketLink(websocket))

    async def _serve_link(self, link: Link) -> None:
        refusal = self._admit_link(link.host)
        if refusal is not None:
            if refusal != "shutdown":
                self.refuse_connection(refusal, link.host)
            link.close()
            await link.wait_closed()
            return
        task = asyncio.current_task()
        if task is None:
            return
        self._tasks.add(task)
        self._open_links += 1
        self._per_address[link.host] += 1
        try:
            await Connection(self, link).run()
        finally:
            self._open_links -= 1
            self._per_address[link.host] -= 1
            if not self._per_address[link.host]:
                del self._per_address[link.host]
            self._tasks.discard(task)

    def refuse_connection(self, reason: str, host: str, detail: str = "") -> None:
        self.metrics.connections_refused[reason].inc()
        self._log.warning("mqtt connection closed before login", f"{reason}|{host}", peer=host, reason=reason,
                          **({"detail": detail} if detail else {}))  # fmt: skip

    # -- sessions -------------------------------------------------------------------

    def cap_expiry(self, requested: float) -> float:
        return min(float(requested), self.settings.session_expiry_s)

    def session_expiry(self, connect: Connect, v5: bool) -> float:
        """How long the session outlives its connection: as MQTT 5 asks (capped); 3.1.1 clean session 0: the setting."""
        if v5:
            return self.cap_expiry(connect.properties.session_expiry_interval or 0)
        return 0.0 if connect.clean_start else self.settings.session_expiry_s

    async def take_over(self, client_id: str) -> None:
        previous = self._live.get(client_id)
        if previous is None:
            return
        previous.kick(DisconnectReason.TAKEN_OVER)
        # Waiting keeps the old DISCONNECTED ahead of the new CONNECTED.
        try:
            await asyncio.wait_for(previous.closed.wait(), TAKE_OVER_TIMEOUT)
        except TimeoutError:
            log.warning("mqtt take-over slow: the old connection is still closing", client_id=client_id)

    def has_room_for(self, client_id: str) -> bool:
        """Whether a CONNECT for `client_id` may have a session: it has one, or there are fewer than the bound."""
        if client_id in self.sessions or len(self.sessions) < self.settings.max_sessions:
            return True
        self.metrics.connections_refused["sessions"].inc()
        limit = self.settings.max_sessions
        self._log.warning(
            "mqtt connection refused", "max_sessions", reason="max_sessions", limit=limit, client_id=client_id
        )
        return False

    def attach(
        self, client_id: str, principal: Principal, version: Version, clean: bool, expiry: float, connection: Connection
    ) -> tuple[Session, bool]:
        stored = self.sessions.get(client_id)
        if stored is not None and (clean or not _same_identity(stored, principal)):
            # A clean start, or another identity reusing the client id: it must not inherit
            # subscriptions it was never checked for.
            self._drop_session(stored)
            stored = None
        will = self._wills.pop(client_id, None)
        if will is not None:
            # MQTT 5 3.1.3.2.2: a delayed will is not sent when the session resumes.
            will.cancel()
        present = stored is not None
        session = stored or Session(client_id, principal, version, self._limits)
        self.sessions[client_id] = session
        session.principal = principal
        session.version = version
        session.expiry_s = expiry
        session.connected = True
        session.disconnected_at = None
        session.notify = connection.wake
        self._live[client_id] = connection
        if session.persistent:
            session.stored = True
            self.persist([persistence.record(session)])
        elif session.stored:
            # Resumed with session expiry 0: it ends with this connection and is not kept.
            session.stored = False
            self.persist([stores.DropSession(client_id)])
        if session.queue:
            connection.wake()
        return session, present

    def connected(self, connection: Connection) -> None:
        self.metrics.connected_clients.inc()

    def detach(self, connection: Connection) -> None:
        session = connection.session
        if session is None or self.sessions.get(session.client_id) is not session:
            return
        if self._live.get(session.client_id) is not connection:
            return
        session.connected = False
        session.notify = None
        session.disconnected_at = time.time()
        if not session.persistent:
            self._drop_session(session)
        elif session.stored:
            self.persist([persistence.record(session)])

    def disconnected(self, connection: Connection) -> None:
        self.metrics.connected_clients.dec()
        if self._live.get(connection.client_id) is connection:
            del self._live[connection.client_id]

    def _drop_session(self, session: Session) -> None:
        for topic_filter in list(session.subscriptions):
            self._unsubscribe(session, topic_filter)
        session.clear_queue()
        session.inflight.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if session.stored:
            session.stored = False
            self.persist([stores.DropSession(session.client_id)])

    def expire_sessions(self, now: float) -> None:
        for session in list(self.sessions.values()):
            if session.expired(now):
                self._drop_session(session)

    async def disconnect(self, which: Callable[[Principal], bool], reason: DisconnectReason) -> int:
        """Close every live connection whose principal `which` selects; returns how many."""
        closing = [c for c in list(self._live.values()) if c.principal is not None and which(c.principal)]
        for connection in closing:
            log.warning(
                "mqtt connection closed by the hub",
                client_id=connection.client_id,
                vehicle_id=connection.vehicle_id,
                reason=reason.value,
            )
            connection.kick(reason)
        for connection in closing:
            try:
                await asyncio.wait_for(connection.closed.wait(), TAKE_OVER_TIMEOUT)
            except TimeoutError:
                log.warning("mqtt connection slow to close", client_id=connection.client_id)
        return len(closing)

    def drop_sessions(self, which: Callable[[Session], bool]) -> int:
        """Forget stored sessions of absent clients that `which` selects (their grants changed)."""
        dropped = [s for s in list(self.sessions.values()) if not s.connected and which(s)]
        for session in dropped:
            self._drop_session(session)
        return len(dropped)

    # -- wills ----------------------------------------------------------------------

    def publish_will(self, client_id: str, will: Message, delay: float, session: Session) -> None:
        delay = min(delay, session.expiry_s) if session.persistent else 0
        if delay <= 0:
            self.persist(self.route(will))
            return
        previous = self._wills.pop(client_id, None)
        if previous is not None:
            previous.cancel()

        def fire() -> None:
            self._wills.pop(client_id, None)
            self.persist(self.route(will))

        self._wills[client_id] = asyncio.get_running_loop().call_later(delay, fire)

    # -- publishing -----------------------------------------------------------------

    def admit(
        self, connection: Connection, message: Message, route: topics.VehicleTopic | None, size: int
    ) -> tuple[Refusal, str] | None:
        """Whether a client's PUBLISH may go on; else the refusal and the vehicle to tell."""
        principal = connection.principal
        if principal is None:
            return Refusal.NOT_AUTHORIZED, ""
        own_id = principal.name if principal.kind is PrincipalKind.VEHICLE else ""
        # Notices go to the sender's own errors topic, never to a vehicle it tried to speak for.
        told = own_id if principal.kind is PrincipalKind.VEHICLE else (route.vehicle_id if route else "")
        if size > self.settings.max_payload_bytes:
            return Refusal.PAYLOAD_TOO_LARGE, told
        if own_id and not self._message_rate.take(own_id):
            self.metrics.security.limit_violations["message_rate"].inc()
            return Refusal.RATE_LIMITED, own_id
        if not acl.may_publish(principal, route):
            self.metrics.security.acl_denied["publish"].inc()
            return Refusal.NOT_AUTHORIZED, own_id
        if message.topic.startswith("$"):
            return Refusal.TOPIC_NOT_ALLOWED, told
        if route is not None and route.refusal is not None:
            return route.refusal, told
        return None

    def refuse(
        self,
        connection: Connection,
        vehicle_id: str,
        topic: str,
        reason: Refusal,
        size: int,
        *,
        route_notice: bool = True,
    ) -> None:
        """Count, log (aggregated) and explain a refused message (`topic` is empty if it was never read)."""
        self.metrics.messages_refused[reason].inc()
        self._log.warning(
            "mqtt message refused",
            f"{reason.value}|{connection.client_id}",
            vehicle_id=vehicle_id or None,
            reason=reason.value,
            topic=topic or None,
            size=size,
            client_id=connection.client_id,
        )
        if vehicle_id and route_notice and topics.is_vehicle_id(vehicle_id):
            notice = refusals.notice(reason, topic, size, self.settings.max_payload_bytes)
            self.send_nowait(topics.downlink(vehicle_id, Channel.ERRORS), notice, qos=1)

    def refusal_detail(self, reason: Refusal, topic: str, size: int) -> str:
        return refusals.detail(reason, topic, size, self.settings.max_payload_bytes)

    def route(self, message: Message) -> list[stores.Change]:
        """Retain (if asked) and queue `message` for every matching subscription.

        Returns the broker store changes this made (retained message, queued messages of
        persistent sessions): a publisher is acknowledged only once they are committed.
        """
        changes: list[stores.Change] = []
        if message.retain and not self.router.retain(
            message, self.settings.max_retained_messages, self.settings.max_retained_bytes
        ):
            # Still delivered to subscribers, not kept: retained messages are bounded like everything else.
            self.metrics.retained_refused.inc()
            self._log.warning(
                "mqtt retained message not kept", message.sender or "hub", topic=message.topic,
                client_id=message.sender or None, retained=len(self.router.retained),
                limit=self.settings.max_retained_messages,
            )  # fmt: skip
        elif message.retain and self.persistence is not None:
            changes.append(
                stores.Retain(persistence.retained_message(message))
                if message.payload
                else stores.ClearRetained(message.topic)
            )
        sessions = self.sessions
        for client_id, granted in self.router.targets(message.topic, sessions).items():
            session = sessions.get(client_id)
            if session is None:
                continue
            if message.sender == client_id:
                # MQTT 5 no-local: not back to the publisher through such a subscription.
                granted = [g for g in granted if not g[0].no_local]  # noqa: PLW2901
                if not granted:
                    continue
            outgoing = self.router.outgoing(message, granted)
            if not session.connected and (not session.persistent or outgoing.qos == 0):
                # MQTT 3.1.2.4: an absent client's persistent session keeps QoS 1 and 2 only.
                continue
            self._enqueue(session, outgoing, changes)
        return changes

    def _enqueue(self, session: Session, outgoing: Outgoing, changes: list[stores.Change] | None = None) -> None:
        overflow, dropped = session.enqueue(outgoing)
        if session.stored and outgoing.qos and changes is not None and self.persistence is not None:
            changes.append(persistence.enqueue(session, outgoing))
            changes.extend(stores.Dequeue(session.client_id, old.seq) for old in dropped if old.qos)
        if dropped:
            (self.metrics.slow_dropped if session.connected else self.metrics.queued_dropped).inc(len(dropped))
        if overflow is Overflow.DISCONNECT:
            connection = self._live.get(session.client_id)
            self.metrics.slow_disconnected.inc()
            if connection is not None:
                self._log.warning(
                    "mqtt slow subscriber disconnected", session.client_id, client_id=session.client_id,
                    queued=len(session.queue), queued_bytes=session.queued_bytes,
                )  # fmt: skip
                connection.kick(DisconnectReason.SLOW_CONSUMER)
            return
        if session.notify is not None:
            session.notify()

    def expect_twin_reply(self, vehicle_id: str, response_topic: str, correlation: bytes | None) -> None:
        """An MQTT 5 vehicle asked for its twin with a response topic: the next document goes there too."""
        self._twin_replies.pop(vehicle_id, None)
        if len(self._twin_replies) >= _MAX_PENDING_REPLIES:
            # Bounded: the oldest request is forgotten (its vehicle still gets twin/doc).
            del self._twin_replies[next(iter(self._twin_replies))]
        self._twin_replies[vehicle_id] = (response_topic, correlation)

    def send_to_vehicle(self, vehicle_id: str, channel: Channel, payload: bytes, qos: int, subtopic: str) -> None:
        """The hub talks to a vehicle on a channel's topic; MQTT 5 request/response is used where it helps.

        A command carries the topic its result goes to as Response Topic and its id as
        Correlation Data; a twin document asked for with a Response Topic is also sent there.
        """
        if not self.running:
            log.debug("mqtt send dropped", vehicle_id=vehicle_id, reason="broker is not running")
            return
        topic = topics.downlink(vehicle_id, channel, subtopic)
        props = Properties()
        if channel is Channel.COMMAND:
            props = Properties(response_topic=f"{topic}/result", correlation_data=subtopic.encode())
        changes = self.route(Message(topic, payload, qos, properties=props))
        if channel is Channel.DOCUMENT:
            reply = self._twin_replies.pop(vehicle_id, None)
            if reply is not None:
                response = Message(reply[0], payload, qos, properties=Properties(correlation_data=reply[1]))
                changes += self.route(response)
        self.persist(changes)

    def send_nowait(self, topic: str, payload: bytes, qos: int) -> None:
        """Queue a hub message for subscribers without waiting (each session's queue is bounded)."""
        if not self.running:
            log.debug("mqtt send dropped", topic=topic, reason="broker is not running")
            return
        self.persist(self.route(Message(topic, payload, qos)))

    def publish_from_hub(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None] | None:
        return self.persist(self.route(Message(topic, payload, qos, retain)))

    # -- subscriptions --------------------------------------------------------------

    async def subscribe(
        self, connection: Connection, subscription: Subscription, sub_id: int | None
    ) -> tuple[Reason, bool]:
        """Grant (QoS as reason) or refuse one filter; the flag says whether the subscription is new."""
        session, principal = connection.session, connection.principal
        if session is None or principal is None:
            return Reason.NOT_AUTHORIZED, False
        topic_filter = subscription.topic_filter
        shared = filters.split_shared(topic_filter)
        inner = shared[1] if shared is not None else topic_filter
        if not inner or not filters.valid_filter(inner) or (shared is not None and subscription.no_local):
            # MQTT-4.7.3-1, 4.7.1: an empty or malformed filter is refused (0x80 / 0x8F).
            self._refuse_filter(connection, topic_filter, "invalid_filter")
            return Reason.TOPIC_FILTER_INVALID, False
        if not await self._may_subscribe(principal, inner):
            self.metrics.security.acl_denied["subscribe"].inc()
            self._refuse_filter(connection, topic_filter, "not_authorized")
            return Reason.NOT_AUTHORIZED, False
        held = session.subscriptions
        if topic_filter not in held and len(held) >= self.abuse.max_subscriptions_per_client:
            self.metrics.security.limit_violations["subscriptions"].inc()
            self._refuse_filter(connection, topic_filter, "too_many_subscriptions")
            return Reason.QUOTA_EXCEEDED, False
        new = topic_filter not in held
        held[topic_filter] = subscription
        group = shared[0] if shared is not None else None
        self.router.subscribe(session.client_id, (subscription, sub_id), inner, group)
        if session.stored:
            self.persist([persistence.subscription(session.client_id, subscription, sub_id)])
        return Reason(subscription.qos), new

    async def _may_subscribe(self, principal: Principal, topic_filter: str) -> bool:
        decision = acl.may_subscribe(principal, topic_filter)
        if decision.verdict is acl.Verdict.VEHICLE_FLEET:
            security = self.auth.security
            fleet = None if security is None else await security.fleet_of(decision.vehicle_id)
            return principal.sees(fleet)
        return decision.verdict is acl.Verdict.ALLOW

    def _refuse_filter(self, connection: Connection, topic_filter: str, reason: str) -> None:
        self._log.warning(
            "mqtt subscription refused", f"{reason}|{connection.client_id}", client_id=connection.client_id,
            topic_filter=topic_filter, reason=reason,
        )  # fmt: skip

    def unsubscribe(self, connection: Connection, topic_filter: str) -> bool:
        session = connection.session
        return session is not None and self._unsubscribe(session, topic_filter)

    def _unsubscribe(self, session: Session, topic_filter: str) -> bool:
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        if session.stored:
            self.persist([stores.Unsubscribe(session.client_id, topic_filter)])
        shared = filters.split_shared(topic_filter)
        if shared is None:
            return self.router.unsubscribe(session.client_id, topic_filter, None)
        return self.router.unsubscribe(session.client_id, shared[1], shared[0])

    def send_retained(self, session: Session, subscription: Subscription, sub_id: int | None) -> None:
        """Queue the retained messages matching a new subscription, RETAIN set, at the lower QoS."""
        now = time.time()
        changes: list[stores.Change] = []
        for message in self.router.retained_for(subscription.topic_filter):
            if message.expires_at is not None and message.expires_at <= now:
                self.router.retain(Message(message.topic, b"", 0))
                continue
            qos = min(subscription.qos, message.qos)
            ids = (sub_id,) if sub_id else ()
            self._enqueue(session, Outgoing(message, qos, True, ids, self.router.next_seq()), changes)
        self.persist(changes)

    # -- housekeeping ---------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.expire_sessions(time.time())
            self.metrics.stored_sessions.set(len(self.sessions))
            self.metrics.queued_messages.set(sum(len(s.queue) for s in self.sessions.values()))
            self._log.flush()
            self.auth.flush_log()

    async def _sys_loop(self) -> None:
        while True:
            self.publish_sys()
            await asyncio.sleep(self.settings.sys_interval_s)

    def publish_sys(self) -> None:
        """`$SYS/broker/...` statistics for monitoring tools, retained (readable by global admins only)."""
        values = sys_topics.statistics(
            self.metrics,
            connected=len(self._live),
            sessions=len(self.sessions),
            retained=len(self.router.retained),
            uptime_s=time.time() - self.started_at,
        )
        for name, value in values.items():
            message = Message(f"$SYS/broker/{name}", value.encode(), 0, retain=True)
            # Statistics are not worth a store write: they are published again after a restart.
            self.router.retain(message)
            self.route(Message(message.topic, message.payload, 0))


def _same_identity(session: Session, principal: Principal) -> bool:
    """Whether a stored session belongs to `principal` (one restored from the store knows its owner by name)."""
    previous = session.principal
    if previous is not None:
        return (previous.kind, previous.name) == (principal.kind, principal.name)
    return session.owner is None or session.owner == f"{principal.kind.value}:{principal.name}"

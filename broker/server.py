"""The embedded MQTT broker as one async context manager."""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Self

import structlog
from prometheus_client import CollectorRegistry

from broker.auth import BrokerAuth
from broker.engine import Broker
from broker.metrics import BrokerMetrics
from broker.persistence import Persistence
from broker.session import Session, SlowPolicy
from broker.settings import BrokerSettings, TlsListener
from broker.stores import BrokerStore, BrokerStoreMetrics, StoreWriter, WriterSettings
from kernel import ConfigError
from security import AbuseLimits, Principal, PrincipalKind, SecurityService
from twin import Channel, DisconnectReason, InboundSink, VehicleChannel

# A persistent session outlives its connection this long (7 days), and holds at most
# this many QoS 1/2 messages for its absent client, dropping the oldest.
log = structlog.get_logger("broker")

DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
DEFAULT_MAX_QUEUED_MESSAGES = 1000
DEFAULT_LISTEN_BACKLOG = 4096

__all__ = ["BrokerChannel", "EmbeddedBroker", "TlsListener"]


class BrokerChannel:
    """Sends to one vehicle through the embedded broker, never waiting."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def send(self, vehicle_id: str, channel: Channel, payload: bytes, qos: int = 1, subtopic: str = "") -> None:
        try:
            self._broker.send_to_vehicle(vehicle_id, channel, payload, qos, subtopic)
        except Exception:
            # The caller is the ingest consumer or a command engine: a failed send is this message's
            # problem (logged), never theirs. Commands are resent by their engine; deltas on reconnect.
            log.exception("mqtt send to vehicle failed", vehicle_id=vehicle_id, channel=channel.value)


class EmbeddedBroker:
    """fleethub's MQTT server (3.1, 3.1.1 and 5 over TCP, TLS and WebSocket), feeding `sink`.

    Every PUBLISH on a vehicle's up topics and every vehicle's connect, subscribe and
    disconnect reach `sink` in order per client; a QoS 1 or 2 PUBLISH is acknowledged
    (PUBACK, PUBREC) once ingest resolves its `ack`. A persistent session is kept for
    `session_expiry_s` after its client leaves, its queue bounded by `max_queued_messages`
    and `max_queued_bytes`. Port 0 binds a free port; read it back from `port`.
    """

    def __init__(
        self,
        sink: InboundSink,
        *,
        host: str = "0.0.0.0",
        port: int = 1883,
        max_payload_bytes: int = 65536,
        allow_anonymous: bool = True,
        metrics: BrokerMetrics | None = None,
        ws_port: int | None = None,
        session_expiry_s: float = DEFAULT_SESSION_EXPIRY_S,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        security: SecurityService | None = None,
        abuse: AbuseLimits | None = None,
        tls: TlsListener | None = None,
        listen_backlog: int = DEFAULT_LISTEN_BACKLOG,
        max_packet_bytes: int = 1_048_576,
        max_queued_bytes: int = 1_048_576,
        connect_timeout_s: float = 10.0,
        max_connections_per_address: int = 1000,
        fd_headroom: int = 64,
        slow_subscriber: str = SlowPolicy.DROP_OLDEST.value,
        receive_maximum: int = 100,
        max_inflight_messages: int = 100,
        topic_alias_maximum: int = 64,
        sys_interval_s: float = 10.0,
        max_keep_alive_s: int = 0,
        server_reference: str = "",
        max_sessions: int = 200_000,
        max_retained_messages: int = 100_000,
        max_retained_bytes: int = 256 * 1024 * 1024,
        store: BrokerStore | None = None,
        store_writer: WriterSettings | None = None,
        store_metrics: BrokerStoreMetrics | None = None,
    ) -> None:
        _check_port("MQTT port", port)
        if ws_port is not None:
            _check_port("MQTT WebSocket port", ws_port)
        if tls is not None:
            _check_port("MQTT TLS port", tls.port)
            if tls.client_cert_auth and not tls.cafile:
                # Without a CA of its own the listener would trust every public CA's certificates.
                msg = "client-certificate login needs the CA that signs vehicle certificates (mqtt.tls_cafile)"
                raise ConfigError(msg)
        _at_least("payload limit", "max_payload_bytes", max_payload_bytes, 1)
        _at_least("maximum packet size", "max_packet_bytes", max_packet_bytes, max_payload_bytes)
        if session_expiry_s <= 0:
            msg = f"the MQTT session expiry must be positive (seconds), got {session_expiry_s}"
            raise ConfigError(msg)
        _at_least("queued messages per session", "max_queued_messages", max_queued_messages, 1)
        _at_least("queued bytes per session", "max_queued_bytes", max_queued_bytes, 1)
        _at_least("listen backlog", "listen_backlog", listen_backlog, 1)
        _at_least("connections per address", "max_connections_per_address", max_connections_per_address, 1)
        _at_least("file-descriptor headroom", "fd_headroom", fd_headroom, 0)
        _at_least("receive maximum", "receive_maximum", receive_maximum, 1)
        _at_least("in-flight messages per client", "max_inflight_messages", max_inflight_messages, 1)
        _at_least("topic alias maximum", "topic_alias_maximum", topic_alias_maximum, 0)
        _at_least("maximum keep-alive", "max_keep_alive_s", max_keep_alive_s, 0)
        _at_least("retained messages", "max_retained_messages", max_retained_messages, 1)
        _at_least("sessions", "max_sessions", max_sessions, 1)
        _at_least("retained bytes", "max_retained_bytes", max_retained_bytes, 1)
        if max_keep_alive_s > 65_535:
            msg = f"mqtt.max_keep_alive_s is at most 65535, got {max_keep_alive_s}"
            raise ConfigError(msg)
        if receive_maximum > 65_535 or topic_alias_maximum > 65_535:
            msg = "mqtt.receive_maximum and mqtt.topic_alias_maximum are at most 65535"
            raise ConfigError(msg)
        if connect_timeout_s <= 0:
            msg = f"the MQTT CONNECT timeout must be positive (seconds), got {connect_timeout_s}"
            raise ConfigError(msg)
        try:
            policy = SlowPolicy(slow_subscriber)
        except ValueError:
            choices = ", ".join(p.value for p in SlowPolicy)
            msg = f"setting 'mqtt.slow_subscriber' must be one of {choices}, got {slow_subscriber!r}"
            raise ConfigError(msg) from None
        self._settings = BrokerSettings(
            host=host,
            port=port,
            ws_port=ws_port,
            tls=tls,
            allow_anonymous=allow_anonymous,
            listen_backlog=listen_backlog,
            max_payload_bytes=max_payload_bytes,
            max_packet_bytes=max_packet_bytes,
            connect_timeout_s=connect_timeout_s,
            max_connections_per_address=max_connections_per_address,
            fd_headroom=fd_headroom,
            session_expiry_s=session_expiry_s,
            max_queued_messages=max_queued_messages,
            max_queued_bytes=max_queued_bytes,
            slow_subscriber=policy,
            max_inflight_messages=max_inflight_messages,
            receive_maximum=receive_maximum,
            topic_alias_maximum=topic_alias_maximum,
            sys_interval_s=sys_interval_s,
            max_keep_alive_s=max_keep_alive_s,
            server_reference=server_reference,
            max_sessions=max_sessions,
            max_retained_messages=max_retained_messages,
            max_retained_bytes=max_retained_bytes,
        )
        self._sink = sink
        # Without a registry of the caller's, count anyway so the code path is the same.
        self._metrics = metrics or BrokerMetrics(CollectorRegistry())
        self._security = security
        self._abuse = abuse
        self._store = store
        self._store_writer = store_writer
        self._store_metrics = store_metrics
        self._stack: contextlib.AsyncExitStack | None = None
        self._broker: Broker | None = None
        self._channel: BrokerChannel | None = None

    async def __aenter__(self) -> Self:
        if self._broker is not None:
            msg = "the embedded broker is already running"
            raise RuntimeError(msg)
        async with contextlib.AsyncExitStack() as stack:
            broker = await self._start(stack)
            self._stack = stack.pop_all()
        self._broker = broker
        self._channel = BrokerChannel(broker)
        return self

    async def _start(self, stack: contextlib.AsyncExitStack) -> Broker:
        """Restore what the store kept, then listen. The store writer outlives the broker on the way out."""
        settings = self._settings
        durable: Persistence | None = None
        snapshot = None
        if self._store is not None:
            store = await stack.enter_async_context(self._store)
            snapshot = await store.load(time.time())
            holder: list[Broker] = []
            writer = await stack.enter_async_context(
                StoreWriter(
                    store,
                    self._store_writer,
                    metrics=self._store_metrics,
                    on_dropped=lambda dropped: holder[0].on_store_dropped(dropped) if holder else None,
                )
            )
            durable = Persistence(writer)
        broker = Broker(
            settings,
            sink=self._sink,
            metrics=self._metrics,
            auth=BrokerAuth(
                self._security,
                allow_anonymous=settings.allow_anonymous,
                metrics=self._metrics.security,
                limits=self._abuse,
                client_cert_auth=settings.tls is not None and settings.tls.client_cert_auth,
            ),
            abuse=self._abuse,
            persistence=durable,
        )
        if snapshot is not None:
            broker.restore(snapshot, time.time())
            holder.append(broker)
        await broker.start()
        stack.push_async_callback(broker.shutdown)
        return broker

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._broker, self._channel = None, None
        if stack is not None:
            # The broker stops first (its last session changes are queued), then the writer commits them.
            await stack.aclose()

    @property
    def running(self) -> bool:
        """True between a successful start and the beginning of shutdown."""
        return self._broker is not None and self._broker.running

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0).

        With port 0 and a host that resolves to several addresses (e.g. "" for all
        interfaces) asyncio gives each socket its own port; this is the first one's.
        """
        return self._running().bound_ports("tcp")[0]

    @property
    def ws_port(self) -> int | None:
        """The WebSocket port actually bound, when a WebSocket listener was asked for."""
        if self._settings.ws_port is None:
            return None
        return self._running().bound_ports("ws")[0]

    @property
    def tls_port(self) -> int | None:
        """The TLS port actually bound, when a TLS listener was asked for."""
        if self._settings.tls is None:
            return None
        return self._running().bound_ports("tls")[0]

    async def disconnect_vehicle(self, vehicle_id: str) -> int:
        """Close the vehicle's connections now (its credentials were revoked)."""
        closed = await self._running().disconnect(
            lambda p: p.kind is PrincipalKind.VEHICLE and p.name == vehicle_id, DisconnectReason.REVOKED
        )
        self._metrics.security.disconnected.inc(closed)
        return closed

    async def disconnect_token(self, token_id: str) -> int:
        """Close the connections of users who logged in with this API token (it was revoked)."""
        closed = await self._running().disconnect(lambda p: p.token_id == token_id, DisconnectReason.REVOKED)
        self._metrics.security.disconnected.inc(closed)
        return closed

    async def disconnect_user(self, username: str) -> int:
        """A user was deleted or their grants changed: close their connections and forget their stored sessions.

        A client that reconnects logs in again and has every subscription checked against
        its grants as they are now, so nothing it may no longer see is kept for it.
        """
        broker = self._running()

        def theirs(principal: Principal | None) -> bool:
            return principal is not None and principal.kind is PrincipalKind.USER and principal.name == username

        closed = await broker.disconnect(theirs, DisconnectReason.REVOKED)
        broker.drop_sessions(lambda s: theirs(s.principal))
        self._metrics.security.disconnected.inc(closed)
        return closed

    @property
    def channel(self) -> VehicleChannel:
        """Where the twin service sends deltas, documents, errors and commands."""
        if self._channel is None:
            raise _not_running()
        return self._channel

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish a hub-originated message (an alert, an event) to every subscriber of `topic`."""
        if not topic or "#" in topic or "+" in topic:
            msg = f"cannot publish on {topic!r}: a topic name is non-empty and has no wildcards"
            raise ValueError(msg)
        if qos not in (0, 1, 2):
            msg = f"qos must be 0, 1 or 2, got {qos}"
            raise ValueError(msg)
        durable = self._running().publish_from_hub(topic, payload, qos, retain)
        if durable is not None:
            # A retained alert, or one queued for an absent persistent session, is durable on return;
            # if the store cannot take it the live subscribers still got it, and the caller goes on.
            try:
                await durable
            except Exception as exc:  # a store failure must not stop the alerting caller
                log.warning("mqtt hub message not stored", topic=topic, error=str(exc))

    def connected_clients(self) -> int:
        return self._running().connected_clients

    def stored_sessions(self) -> int:
        """Sessions held: connected clients' and persistent ones kept for absent clients."""
        return len(self._running().sessions)

    def sessions(self) -> list[Session]:
        return list(self._running().sessions.values())

    def _running(self) -> Broker:
        if self._broker is None:
            raise _not_running()
        return self._broker


def _not_running() -> RuntimeError:
    return RuntimeError("the embedded broker is not running; use it inside `async with`")


def _check_port(what: str, port: int) -> None:
    if not 0 <= port <= 65535:
        msg = f"{what} must be 0-65535 (0 picks a free port), got {port}"
        raise ConfigError(msg)


def _at_least(what: str, setting: str, value: float, minimum: float) -> None:
    if value < minimum:
        msg = f"the MQTT {what} (mqtt.{setting}) must be at least {minimum}, got {value}"
        raise ConfigError(msg)

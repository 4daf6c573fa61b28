"""The embedded MQTT broker as one async context manager."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from prometheus_client import CollectorRegistry

from broker import topics
from broker.auth import BrokerAuth
from broker.hub_broker import DEFAULT_LISTEN_BACKLOG, HubBroker
from broker.metrics import BrokerMetrics
from kernel import ConfigError
from security import AbuseLimits, PrincipalKind, SecurityService
from twin import Channel, DisconnectReason, InboundSink, VehicleChannel

# A persistent session outlives its connection this long (7 days), and holds at most
# this many QoS 1/2 messages for its absent client, dropping the oldest.
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
DEFAULT_MAX_QUEUED_MESSAGES = 1000

_TCP_LISTENER = "default"
_WS_LISTENER = "ws"
_TLS_LISTENER = "tls"


@dataclass(frozen=True, slots=True)
class TlsListener:
    """MQTT over TLS. With `client_cert_auth`, a client certificate signed by `cafile` whose
    subject CN is a provisioned vehicle id logs that vehicle in without a password."""

    port: int
    certfile: str
    keyfile: str
    cafile: str = ""
    client_cert_auth: bool = False


class BrokerChannel:
    """Sends to one vehicle through the embedded broker, never waiting."""

    def __init__(self, broker: HubBroker) -> None:
        self._broker = broker

    def send(self, vehicle_id: str, channel: Channel, payload: bytes, qos: int = 1, subtopic: str = "") -> None:
        self._broker.send_nowait(topics.downlink(vehicle_id, channel, subtopic), payload, qos)


class EmbeddedBroker:
    """amqtt serving MQTT (and optionally MQTT over WebSocket), feeding `sink`.

    Every PUBLISH on a vehicle's up topics and every vehicle's connect, subscribe and
    disconnect reach `sink` in order per client; a QoS 1 or 2 PUBLISH is acknowledged
    (PUBACK, PUBREC) once ingest resolves its `ack`. A persistent session is kept for
    `session_expiry_s` after its client leaves, queueing at most `max_queued_messages`.
    Port 0 binds a free port; read it back from `port`.
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
        if max_payload_bytes < 1:
            msg = f"the MQTT payload limit must be at least 1 byte, got {max_payload_bytes}"
            raise ConfigError(msg)
        if session_expiry_s <= 0:
            msg = f"the MQTT session expiry must be positive (seconds), got {session_expiry_s}"
            raise ConfigError(msg)
        if max_queued_messages < 1:
            msg = f"the MQTT queued messages per session must be at least 1, got {max_queued_messages}"
            raise ConfigError(msg)
        if listen_backlog < 1:
            msg = f"the MQTT listen backlog must be at least 1, got {listen_backlog}"
            raise ConfigError(msg)
        self._listen_backlog = listen_backlog
        self._session_expiry_s = session_expiry_s
        self._max_queued_messages = max_queued_messages
        self._sink = sink
        self._host = host
        self._port = port
        self._ws_port = ws_port
        self._max_payload_bytes = max_payload_bytes
        self._allow_anonymous = allow_anonymous
        # Without a registry of the caller's, count anyway so the code path is the same.
        self._metrics = metrics or BrokerMetrics(CollectorRegistry())
        self._security = security
        self._abuse = abuse
        self._tls = tls
        self._broker: HubBroker | None = None
        self._channel: BrokerChannel | None = None

    async def __aenter__(self) -> Self:
        if self._broker is not None:
            msg = "the embedded broker is already running"
            raise RuntimeError(msg)
        _quiet_amqtt_logging(websockets=self._ws_port is not None)
        broker = HubBroker(
            self._config(),
            sink=self._sink,
            metrics=self._metrics,
            max_payload_bytes=self._max_payload_bytes,
            max_queued_messages=self._max_queued_messages,
            session_expiry_s=self._session_expiry_s,
            auth=BrokerAuth(
                self._security,
                allow_anonymous=self._allow_anonymous,
                metrics=self._metrics.security,
                limits=self._abuse,
                client_cert_auth=self._tls is not None and self._tls.client_cert_auth,
            ),
            abuse=self._abuse,
            listen_backlog=self._listen_backlog,
        )
        await broker.start()
        self._broker = broker
        self._channel = BrokerChannel(broker)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        broker, self._broker, self._channel = self._broker, None, None
        if broker is not None:
            await broker.shutdown()

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
        return self._running().bound_ports(_TCP_LISTENER)[0]

    @property
    def ws_port(self) -> int | None:
        """The WebSocket port actually bound, when a WebSocket listener was asked for."""
        if self._ws_port is None:
            return None
        return self._running().bound_ports(_WS_LISTENER)[0]

    @property
    def tls_port(self) -> int | None:
        """The TLS port actually bound, when a TLS listener was asked for."""
        if self._tls is None:
            return None
        return self._running().bound_ports(_TLS_LISTENER)[0]

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
        await self._running().publish_from_hub(topic, payload, qos, retain)

    def connected_clients(self) -> int:
        return self._running().connected_clients

    def stored_sessions(self) -> int:
        """Sessions held: connected clients' and persistent ones kept for absent clients."""
        return self._running().stored_sessions

    def _running(self) -> HubBroker:
        if self._broker is None:
            raise _not_running()
        return self._broker

    def _config(self) -> dict[str, Any]:
        listeners: dict[str, Any] = {
            _TCP_LISTENER: {"type": "tcp", "bind": _bind(self._host, self._port)},
        }
        if self._ws_port is not None:
            listeners[_WS_LISTENER] = {"type": "ws", "bind": _bind(self._host, self._ws_port)}
        if self._tls is not None:
            listeners[_TLS_LISTENER] = {
                "type": "tcp",
                "bind": _bind(self._host, self._tls.port),
                "ssl": True,
                "certfile": self._tls.certfile,
                "keyfile": self._tls.keyfile,
                **({"cafile": self._tls.cafile} if self._tls.cafile else {}),
            }
        return {
            "listeners": listeners,
            # Only what fleethub wants: amqtt's defaults add an allow-everyone auth plugin,
            # a $SYS publisher and loggers that write at INFO per connection.
            # Logins and ACLs are decided by `BrokerAuth` and `broker.acl`, not through amqtt plugins.
            "plugins": {"broker.auth.VehicleAuthPlugin": {"allow_anonymous": self._allow_anonymous}},
            "timeout_disconnect_delay": 0,
        }


def _not_running() -> RuntimeError:
    return RuntimeError("the embedded broker is not running; use it inside `async with`")


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_port(what: str, port: int) -> None:
    if not 0 <= port <= 65535:
        msg = f"{what} must be 0-65535 (0 picks a free port), got {port}"
        raise ConfigError(msg)


def _quiet_amqtt_logging(*, websockets: bool) -> None:
    # amqtt logs at INFO on every connection, `transitions` on every session state change
    # and `websockets` (amqtt's WebSocket listener) on every WebSocket handshake. An
    # application that configured these loggers itself keeps its choice.
    names = ["amqtt", "transitions"]
    if websockets:
        names.append("websockets.server")
    for name in names:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)

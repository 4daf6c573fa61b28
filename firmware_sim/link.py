"""One vehicle's MQTT session on paho-mqtt, served by the asyncio event loop.

paho is used without its own network loop and without threads: the client's socket is
registered with the running loop (`add_reader`, and `add_writer` while paho has bytes
to send), and `tick()` drives keepalive. Hundreds of links therefore cost one event
loop, not hundreds of threads.

paho opens its TCP connection with a blocking `socket.create_connection`, which would
stall the loop (and, in `fleethub demo`, the hub running on it) for a round trip or a
whole timeout per vehicle. The link connects the socket with `loop.sock_connect` first
and hands it to paho through the one override below.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from firmware_sim.errors import SimError

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = structlog.get_logger(__name__)

# (address family, socket address) as `socket.getaddrinfo` gives them.
Endpoint = tuple[socket.AddressFamily, tuple[Any, ...]]


class BrokerRefused(SimError):
    """The broker answered CONNECT with a refusal (bad credentials, not authorised, ...)."""


class _Client(mqtt.Client):
    """paho's client, given a socket that is already connected."""

    connected_socket: socket.socket | None = None

    def _create_socket_connection(self) -> socket.socket:
        sock, self.connected_socket = self.connected_socket, None
        if sock is None:
            # Only reached when paho reconnects on its own (a broker asking for MQTT 3.1).
            return super()._create_socket_connection()
        return sock

    def drop(self) -> None:
        """Close the socket now, without DISCONNECT; paho has no public call for this."""
        self._sock_close()


def resolve(host: str, port: int) -> list[Endpoint]:
    """The broker's addresses, looked up once so reconnects never wait on DNS.

    A blocking lookup, on purpose: `loop.getaddrinfo` would start an executor thread that
    outlives the fleet, and the lookup happens once per fleet, not per vehicle.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]


class MqttLink:
    """An MQTT 3.1.1 session with `clean_session=False`, so subscriptions survive reconnects.

    `connect()` is one attempt; the owner decides when to retry. `on_connected` runs on
    every CONNACK that accepts the session, after the subscriptions were sent.
    """

    def __init__(
        self,
        client_id: str,
        endpoints: Sequence[Endpoint],
        *,
        keepalive_s: int,
        subscriptions: Sequence[tuple[str, int]],
        on_connected: Callable[[], None],
        on_message: Callable[[str, bytes], None],
        max_queued: int = 100,
        password: str | None = None,
        birth_and_will: bool = False,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one broker endpoint is needed")
        self.client_id = client_id
        self._endpoints = list(endpoints)
        self._subscriptions = list(subscriptions)
        self._on_connected = on_connected
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._log = log.bind(vehicle_id=client_id)

        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        # A vehicle's username is its id; a secure hub also wants its secret.
        client.username_pw_set(client_id, password)
        # QoS 1 messages wait here for PUBACK; a bound keeps a slow broker from growing memory.
        client.max_queued_messages_set(max_queued)
        self._status = f"vehicles/{client_id}/status" if birth_and_will else None
        if self._status is not None:
            client.will_set(self._status, b"offline", qos=1)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        # paho's own checks want a host; the socket it will use comes from `connect()`.
        host, port = str(self._endpoints[0][1][0]), int(self._endpoints[0][1][1])
        client.connect_async(host, port, keepalive_s)
        self._client = client

        self._fd: int | None = None
        self._connack: asyncio.Future[None] | None = None
        self._down = asyncio.Event()
        self._down.set()
        self._closed = asyncio.Event()
        self._closed.set()
        self.connected = False

    # -- the owner's side ---------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and wait for CONNACK; raise `OSError` or `BrokerRefused`.

        Bound it with `asyncio.timeout`: a cancelled attempt closes its socket.
        """
        try:
            sock = await self._open_socket()
            self._client.connected_socket = sock
            self._connack = self._loop.create_future()
            self._down.clear()
            try:
                self._client.reconnect()
            finally:
                if self._client.connected_socket is not None:
                    self._client.connected_socket = None
                    sock.close()
            await self._connack
        except BaseException:
            self.drop()
            raise
        finally:
            self._connack = None

    async def wait_disconnected(self) -> None:
        await self._down.wait()

    def publish(self, topic: str, payload: bytes, qos: int) -> bool:
        """Hand a message to paho; False when it was not accepted (offline, queue full)."""
        if not self.connected:
            return False
        return self._client.publish(topic, payload, qos).rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def tick(self) -> None:
        """Send a keepalive ping when one is due; call about once a second."""
        if self._fd is not None:
            self._client.loop_misc()

    def begin_close(self) -> None:
        """Send DISCONNECT; the socket closes once it is written (see `wait_closed`)."""
        if self._fd is None:
            return
        if self._client.disconnect() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.drop()

    async def wait_closed(self) -> None:
        """Wait for the socket to close; `drop()` closes it by force."""
        await self._closed.wait()

    def drop(self) -> None:
        """Close the connection at once, as a lost connection would."""
        if self._fd is not None:
            self._client.drop()
        self._went_down(ConnectionError("connection dropped"))

    # -- socket plumbing ----------------------------------------------------------------

    async def _open_socket(self) -> socket.socket:
        error = OSError(f"no address to connect to for {self.client_id}")
        for family, address in self._endpoints:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await self._loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            # Telemetry is many small packets; Nagle would hold each one back for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise error

    def _socket_open(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        self._fd = sock.fileno()
        self._closed.clear()
        self._loop.add_reader(self._fd, self._readable)

    def _socket_close(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = None
        self._closed.set()

    def _register_write(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        if self._fd is not None:
            self._loop.add_writer(self._fd, self._writable)

    def _unregister_write(self, client: mqtt.Client, userdata: Any, sock: SocketLike) -> None:
        if self._fd is not None:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            self._client.loop_read()
        except Exception:
            self._log.exception("mqtt read failed; dropping the connection")
            self.drop()

    def _writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception:
            self._log.exception("mqtt write failed; dropping the connection")
            self.drop()

    # -- paho callbacks -----------------------------------------------------------------

    def _paho_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            # paho closes the socket next and reports it through `_paho_disconnect`.
            self._fail_connack(BrokerRefused(f"broker refused the connection: {reason_code}"))
            return
        self.connected = True
        # Subscribing on every connect also covers a broker that lost the session.
        client.subscribe(self._subscriptions)
        if self._status is not None:
            # After the SUBSCRIBE on the same connection: a hub that sees "online" may send at once.
            client.publish(self._status, b"online", qos=1)
        try:
            self._on_connected()
        finally:
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(None)

    def _paho_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._went_down(ConnectionError(f"connection closed before CONNACK: {reason_code}"))

    def _paho_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload))
        except Exception:
            # A bad message must not cost the connection; the owner logs what it understands.
            self._log.exception("handling a message failed", topic=message.topic)

    def _went_down(self, error: Exception) -> None:
        self.connected = False
        self._fail_connack(error)
        self._down.set()

    def _fail_connack(self, error: Exception) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error)

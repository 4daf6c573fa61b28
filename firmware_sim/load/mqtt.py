"""A minimal MQTT 3.1.1 (or MQTT 5) client as an asyncio `Protocol`, for driving thousands of connections.

It speaks only what a telemetry unit needs: CONNECT/CONNACK, PUBLISH at QoS 0 and 1,
PUBACK both ways, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and DISCONNECT; as an MQTT 5
client it may send each topic once and then only a topic alias (what cellular links save). There are no
per-message futures or tasks: acknowledgements arrive as callbacks, so one process can
keep thousands of sessions busy. paho-mqtt costs a socket wrapper, locks and a Python
object graph per client; this costs one transport and a small buffer.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Final

CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
PINGREQ: Final = b"\xc0\x00"
PINGRESP: Final = 0xD0
DISCONNECT: Final = b"\xe0\x00"

_U16 = struct.Struct("!H")

CONNACK_REASONS: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class MqttError(Exception):
    """The broker refused the session or broke the protocol."""


class ConnectRefused(MqttError):
    """The broker answered CONNECT with a refusal code (bad credentials, not authorised)."""


def _string(value: str) -> bytes:
    raw = value.encode()
    return _U16.pack(len(raw)) + raw


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive_s: int = 60,
    clean: bool = True,
    version: int = 4,
) -> bytes:
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 sends a password only with a username")
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    # MQTT 5 has a properties field after the keep-alive; an empty one is a single zero byte.
    properties = b"\x00" if version == 5 else b""
    body = _string("MQTT") + bytes((version, flags)) + _U16.pack(keepalive_s) + properties + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return bytes((CONNECT,)) + _remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, qos: int, packet_id: int, properties: bytes = b"") -> bytes:
    """`topic` comes pre-encoded with its length prefix (see `topic_bytes`), as it is reused.

    `properties` is the MQTT 5 properties field, length included (empty for 3.1.1).
    """
    if qos:
        body_len = len(topic) + 2 + len(properties) + len(payload)
        return b"".join(
            (bytes((PUBLISH | 0x02,)), _remaining_length(body_len), topic, _U16.pack(packet_id), properties, payload)
        )
    body_len = len(topic) + len(properties) + len(payload)
    return b"".join((bytes((PUBLISH,)), _remaining_length(body_len), topic, properties, payload))


# MQTT 5 properties: topic alias 1 (identifier 0x23, two bytes), and none at all.
_ALIAS_1: Final = b"\x03\x23\x00\x01"
_NO_PROPERTIES: Final = b"\x00"
_EMPTY_TOPIC: Final = b"\x00\x00"


def topic_bytes(topic: str) -> bytes:
    return _string(topic)


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = _U16.pack(packet_id) + _string(topic_filter) + bytes((qos,))
    return bytes((SUBSCRIBE,)) + _remaining_length(len(body)) + body


AckCallback = Callable[[int], None]
MessageCallback = Callable[[str, bytes], None]
LostCallback = Callable[[Exception | None], None]


class MqttProtocol(asyncio.Protocol):
    """One MQTT session over one TCP connection.

    `on_ack(packet_id)` runs for every PUBACK, `on_message(topic, payload)` for every
    PUBLISH from the broker (QoS 1 ones are acknowledged first), `on_lost(exc)` once
    when the connection ends for any reason.
    """

    __slots__ = (
        "_alias_set",
        "_buf",
        "_connack",
        "_next_id",
        "_version",
        "on_ack",
        "on_lost",
        "on_message",
        "transport",
        "writable",
    )

    def __init__(
        self,
        on_ack: AckCallback | None = None,
        on_message: MessageCallback | None = None,
        on_lost: LostCallback | None = None,
        *,
        version: int = 4,
    ) -> None:
        self._version = version
        # MQTT 5 with aliases: the topic that alias 1 stands for, once sent.
        self._alias_set: bytes | None = None
        self.on_ack = on_ack
        self.on_message = on_message
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.writable = True
        self._buf = bytearray()
        self._connack: asyncio.Future[None] | None = None
        self._next_id = 0

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection's transport is a Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(exc or MqttError("connection closed before CONNACK"))
        if self.on_lost is not None:
            self.on_lost(exc)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            first = buf[pos]
            # Remaining length: one to four bytes of seven bits each, least significant first.
            length = 0
            shift = 0
            i = pos + 1
            complete = False
            while i < end and i - pos <= 4:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    complete = True
                    break
            if not complete:
                if i - pos > 4:
                    self._fail(MqttError("malformed remaining length"))
                    return
                break
            if end - i < length:
                break
            self._packet(first, bytes(buf[i : i + length]))
            pos = i + length
        if pos:
            del buf[:pos]

    # -- packets ------------------------------------------------------------------------

    def _packet(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBACK:
            if self.on_ack is not None:
                self.on_ack(_U16.unpack_from(body)[0])
        elif kind == PUBLISH:
            qos = (first >> 1) & 0x03
            (tlen,) = _U16.unpack_from(body)
            topic = body[2 : 2 + tlen].decode()
            at = 2 + tlen
            if qos:
                packet_id = body[at : at + 2]
                at += 2
                if self.transport is not None:
                    self.transport.write(b"\x40\x02" + packet_id)
            if self._version == 5:
                at = _skip_properties(body, at)
            if self.on_message is not None:
                self.on_message(topic, body[at:])
        elif kind == CONNACK:
            code = body[1] if len(body) > 1 else 255
            if self._connack is not None and not self._connack.done():
                if code == 0:
                    self._connack.set_result(None)
                else:
                    self._connack.set_exception(ConnectRefused(f"CONNACK refused: {CONNACK_REASONS.get(code, code)}"))
        # SUBACK and PINGRESP need no action.

    def _fail(self, exc: Exception) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # -- sending ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    async def handshake(
        self,
        client_id: str,
        *,
        username: str | None,
        keepalive_s: int,
        timeout_s: float,
        password: str | None = None,
    ) -> None:
        """Send CONNECT and wait for an accepting CONNACK."""
        if self.transport is None:
            raise MqttError("not connected")
        self._connack = asyncio.get_running_loop().create_future()
        self.transport.write(
            connect_packet(
                client_id, username=username, password=password, keepalive_s=keepalive_s, version=self._version
            )
        )
        await asyncio.wait_for(self._connack, timeout_s)

    def next_packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def publish(self, topic: bytes, payload: bytes, qos: int, *, alias: bool = False) -> int:
        """Send a PUBLISH; returns its packet id (0 for QoS 0).

        With `alias` (MQTT 5), the first PUBLISH of a topic sets alias 1 and later ones send the alias only.
        """
        packet_id = self.next_packet_id() if qos else 0
        if self.transport is None:
            return packet_id
        if self._version != 5:
            self.transport.write(publish_packet(topic, payload, qos, packet_id))
        elif not alias:
            self.transport.write(publish_packet(topic, payload, qos, packet_id, _NO_PROPERTIES))
        elif self._alias_set == topic:
            self.transport.write(publish_packet(_EMPTY_TOPIC, payload, qos, packet_id, _ALIAS_1))
        else:
            self._alias_set = topic
            self.transport.write(publish_packet(topic, payload, qos, packet_id, _ALIAS_1))
        return packet_id

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        if self.transport is not None:
            self.transport.write(subscribe_packet(self.next_packet_id(), topic_filter, qos))

    def ping(self) -> None:
        if self.transport is not None:
            self.transport.write(PINGREQ)

    def disconnect(self) -> None:
        """Say goodbye and close once the buffer is flushed."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(DISCONNECT)
            self.transport.close()

    def drop(self) -> None:
        """Vanish like a vehicle entering a tunnel: reset the connection, no DISCONNECT.

        A reset leaves no TIME_WAIT behind, so a reconnect storm does not run the
        client's ephemeral ports dry.
        """
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


def _skip_properties(body: bytes, at: int) -> int:
    """The position after an MQTT 5 properties field starting at `at`."""
    length = 0
    shift = 0
    while True:
        byte = body[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return at + length

"""The broker's state survives `fleethub serve` stopped with SIGTERM or SIGKILL and started again.

Real hub processes on one database file (or PostgreSQL schema), real MQTT clients: paho
for the ordinary flows, a raw-socket client where a test must stop half-way through a
QoS 2 exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import socket
import sqlite3
import struct
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker.stores import Message, Retain, SqliteBrokerStore
from kernel import SqliteDatabase
from tests.e2e.conftest import HubProcess

pytestmark = pytest.mark.e2e

# Development mode, explicitly: anonymous clients with no topic ACL, no API tokens.
DEV_MODE = {"FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true", "FLEETHUB_AUTH_ENABLED": "false"}
WAIT_S = 20.0
SIGNALS = [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGKILL, id="sigkill")]


class Hub:
    """Starts and stops `fleethub serve` on one database; a restart keeps the database."""

    def __init__(self, database: str, folder: Path) -> None:
        self.database = database
        # Run in the test's own folder: a default path (var/...) is then the test's, not the checkout's.
        self.folder = folder
        self.process: HubProcess | None = None
        self.port = 0
        self._all: list[HubProcess] = []

    def start(self) -> Hub:
        args = ["serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--database", self.database]
        self.process = HubProcess(args, env=DEV_MODE, cwd=self.folder)
        self._all.append(self.process)
        self.port = int(self.process.started()["mqtt_port"])
        return self

    def stop(self, sig: int) -> None:
        assert self.process is not None
        if sig == signal.SIGKILL:
            self.process.kill()
        else:
            assert self.process.stop(sig) == 0, self.process.text
        self.process = None

    def restart(self, sig: int) -> Hub:
        self.stop(sig)
        return self.start()

    def close(self) -> None:
        for process in self._all:
            process.kill()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub(request, tmp_path) -> Iterator[Hub]:
    database = request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/hub.db"
    started = Hub(database, tmp_path)
    try:
        yield started.start()
    finally:
        started.close()


@pytest.fixture
def sqlite_hub(tmp_path) -> Iterator[Hub]:
    started = Hub(f"sqlite:///{tmp_path}/hub.db", tmp_path)
    try:
        yield started.start()
    finally:
        started.close()


_open: list[Paho | Raw] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every client a test opened is closed, also when the test fails half-way."""
    yield
    while _open:
        client = _open.pop()
        with contextlib.suppress(OSError):
            client.close()


def run_id() -> str:
    return uuid.uuid4().hex[:8]


# -- paho clients ---------------------------------------------------------------------------


class Paho:
    """A paho client that records what it receives and its CONNACK's session-present flag."""

    def __init__(self, port: int, client_id: str, *, version: int = mqtt.MQTTv311, clean: bool = False, **kw) -> None:
        _open.append(self)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present: queue.Queue[bool] = queue.Queue()
        self.subacks: queue.Queue[int] = queue.Queue()
        if version == mqtt.MQTTv5:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version)
        else:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, clean_session=clean
            )
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda _c, _u, mid, _codes, _p: self.subacks.put(mid)
        self.client.on_connect = lambda _c, _u, flags, _rc, _p: self.session_present.put(flags.session_present)
        if version == mqtt.MQTTv5:
            self.client.connect("127.0.0.1", port, clean_start=clean, properties=kw.get("properties"))
        else:
            self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.present = self.session_present.get(timeout=WAIT_S)

    def subscribe(self, topic: str, qos: int = 1, **options) -> None:
        if options:
            result, mid = self.client.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos, **options))
        else:
            result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        # SUBACK before anything else is done with the subscription.
        assert self.subacks.get(timeout=WAIT_S) == mid

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, properties=None) -> None:
        """Publish and wait until the broker has acknowledged it (PUBACK, or PUBCOMP for QoS 2)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"{topic} not acknowledged"

    def next(self, wait_s: float = WAIT_S) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=wait_s)

    def take(self, count: int) -> list[mqtt.MQTTMessage]:
        return [self.next() for _ in range(count)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- a raw MQTT 3.1.1 client, for exchanges stopped half-way -------------------------------


class Raw:
    """Just enough MQTT 3.1.1 on a socket to leave a QoS 2 exchange unfinished on purpose."""

    def __init__(self, port: int, client_id: str, *, clean: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        _open.append(self)
        body = _string("MQTT") + bytes([4, 0x02 if clean else 0x00]) + struct.pack("!H", 60) + _string(client_id)
        self.send(0x10, body)
        kind, payload = self.read()
        assert (kind, payload[1]) == (0x20, 0), payload
        self.session_present = bool(payload[0] & 1)

    def send(self, first: int, body: bytes) -> None:
        self.sock.sendall(bytes([first]) + _varint(len(body)) + body)

    def read(self, wait_s: float = WAIT_S) -> tuple[int, bytes]:
        self.sock.settimeout(wait_s)
        first = self._exactly(1)[0]
        self.sock.settimeout(WAIT_S)
        length, shift = 0, 0
        while True:
            byte = self._exactly(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, self._exactly(length)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def subscribe(self, topic: str, qos: int) -> None:
        self.send(0x82, struct.pack("!H", 1) + _string(topic) + bytes([qos]))
        kind, payload = self.read()
        assert (kind, payload[2]) == (0x90, qos), payload

    def publish(self, topic: str, payload: bytes, *, qos: int, packet_id: int, dup: bool = False) -> None:
        self.send(0x30 | (0x08 if dup else 0) | qos << 1, _string(topic) + struct.pack("!H", packet_id) + payload)

    def ack(self, first: int, packet_id: int) -> None:
        self.send(first, struct.pack("!H", packet_id))

    def read_publish(self) -> tuple[bool, int, str, int, bytes]:
        """The next PUBLISH: (dup, qos, topic, packet id, payload)."""
        kind, body = self.read()
        assert kind & 0xF0 == 0x30, hex(kind)
        (topic_len,) = struct.unpack("!H", body[:2])
        topic = body[2 : 2 + topic_len].decode()
        (packet_id,) = struct.unpack("!H", body[2 + topic_len : 4 + topic_len])
        return bool(kind & 0x08), (kind >> 1) & 3, topic, packet_id, body[4 + topic_len :]

    def expect(self, first: int, packet_id: int) -> None:
        kind, body = self.read()
        assert (kind, body[:2]) == (first, struct.pack("!H", packet_id)), (hex(kind), body)

    def close(self) -> None:
        self.sock.close()


PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def nothing_more(receive: Callable[[float], object], wait_s: float = 1.0) -> None:
    """Nothing else arrives within `wait_s` (callers check a positive control first)."""
    with pytest.raises((queue.Empty, TimeoutError)):
        print("unexpected:", receive(wait_s))


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS)
def test_messages_acknowledged_for_an_absent_persistent_session_survive(hub, sig) -> None:
    """Three QoS 1 messages PUBACKed while their subscriber is away reach it after the restart, in order."""
    run = run_id()
    subscriber = Paho(hub.port, f"dash-{run}")
    subscriber.subscribe(f"alerts/{run}/#", qos=1)
    subscriber.close()
    publisher = Paho(hub.port, f"pub-{run}", clean=True)
    for n in range(3):
        publisher.publish(f"alerts/{run}/high/{n}", f"alert {n}".encode())
    publisher.close()

    hub.restart(sig)

    back = Paho(hub.port, f"dash-{run}")
    assert back.present is True
    assert [(m.topic, m.payload, m.qos) for m in back.take(3)] == [
        (f"alerts/{run}/high/{n}", f"alert {n}".encode(), 1) for n in range(3)
    ]
    # The subscription came back too: a message published after the restart arrives without subscribing.
    publisher = Paho(hub.port, f"pub-{run}", clean=True)
    publisher.publish(f"alerts/{run}/high/after", b"after")
    assert back.next().payload == b"after"
    nothing_more(back.next)
    back.close()
    publisher.close()


@pytest.mark.parametrize("sig", SIGNALS)
def test_retained_messages_survive_with_their_properties(sqlite_hub, sig) -> None:
    """A retained message keeps payload, QoS and MQTT 5 properties; a cleared one stays cleared."""
    hub, run = sqlite_hub, run_id()
    publisher = Paho(hub.port, f"pub-{run}", version=mqtt.MQTTv5, clean=True)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.UserProperty = [("site", "north")]
    props.MessageExpiryInterval = 3600
    publisher.publish(f"fleet/{run}/status", b'{"open": true}', qos=1, retain=True, properties=props)
    publisher.publish(f"fleet/{run}/cleared", b"soon gone", qos=1, retain=True)
    publisher.publish(f"fleet/{run}/cleared", b"", qos=1, retain=True)
    publisher.close()

    hub.restart(sig)

    subscriber = Paho(hub.port, f"sub-{run}", version=mqtt.MQTTv5, clean=True)
    subscriber.subscribe(f"fleet/{run}/#", qos=1)
    got = subscriber.next()
    assert (got.topic, got.payload, got.qos, got.retain) == (f"fleet/{run}/status", b'{"open": true}', 1, True)
    assert got.properties.ContentType == "application/json"
    assert got.properties.UserProperty == [("site", "north")]
    assert 0 < got.properties.MessageExpiryInterval <= 3600
    nothing_more(subscriber.next)
    subscriber.close()


@pytest.mark.parametrize("sig", SIGNALS)
def test_an_mqtt5_session_keeps_its_subscription_options(sqlite_hub, sig) -> None:
    """Session expiry, queued messages and no-local survive: the client's own messages still do not come back."""
    hub, run = sqlite_hub, run_id()
    connect = Properties(PacketTypes.CONNECT)
    connect.SessionExpiryInterval = 3600
    client = Paho(hub.port, f"v5-{run}", version=mqtt.MQTTv5, properties=connect)
    client.subscribe(f"ops/{run}/#", qos=1, noLocal=True)
    client.close()
    other = Paho(hub.port, f"other-{run}", clean=True)
    other.publish(f"ops/{run}/queued", b"while away")
    other.close()

    hub.restart(sig)

    back = Paho(hub.port, f"v5-{run}", version=mqtt.MQTTv5, properties=connect)
    assert back.present is True
    assert back.next().payload == b"while away"
    back.publish(f"ops/{run}/mine", b"my own")
    other = Paho(hub.port, f"other-{run}", clean=True)
    other.publish(f"ops/{run}/theirs", b"theirs")
    # Positive control first: the other client's message arrives; the client's own never does.
    assert back.next().payload == b"theirs"
    nothing_more(back.next)
    back.close()
    other.close()


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGTERM, id="sigterm"),
        pytest.param(signal.SIGKILL, id="sigkill"),
    ],
)
def test_outgoing_qos2_in_flight_is_resumed_with_its_packet_id(sqlite_hub, sig) -> None:
    """An unanswered QoS 2 PUBLISH is resent with DUP and the same packet id; then an unanswered PUBREL is resent."""
    hub, run = sqlite_hub, run_id()
    topic = f"q2/{run}/out"
    raw = Raw(hub.port, f"raw-sub-{run}")
    raw.subscribe(topic, qos=2)
    publisher = Paho(hub.port, f"pub-{run}", clean=True)
    publisher.publish(topic, b"exactly once", qos=2)
    dup, qos, got_topic, packet_id, payload = raw.read_publish()
    assert (dup, qos, got_topic, payload) == (False, 2, topic, b"exactly once")
    publisher.close()
    raw.close()

    hub.restart(sig)

    raw = Raw(hub.port, f"raw-sub-{run}")
    assert raw.session_present
    assert raw.read_publish() == (True, 2, topic, packet_id, b"exactly once")
    raw.ack(PUBREC, packet_id)
    raw.expect(PUBREL, packet_id)
    raw.close()

    hub.restart(sig)

    raw = Raw(hub.port, f"raw-sub-{run}")
    assert raw.session_present
    raw.expect(PUBREL, packet_id)
    raw.ack(PUBCOMP, packet_id)
    # Positive control, then nothing else: the exchange is over and the message came once.
    publisher = Paho(hub.port, f"pub-{run}", clean=True)
    publisher.publish(topic, b"next", qos=2)
    dup, _, _, next_id, payload = raw.read_publish()
    assert (dup, payload) == (False, b"next")
    raw.ack(PUBREC, next_id)
    raw.expect(PUBREL, next_id)
    raw.ack(PUBCOMP, next_id)
    nothing_more(raw.read)
    publisher.close()
    raw.close()


@pytest.mark.parametrize("sig", SIGNALS)
def test_incoming_qos2_awaiting_pubrel_is_delivered_once(sqlite_hub, sig) -> None:
    """A QoS 2 PUBLISH that got PUBREC before the restart is completed after it, and delivered exactly once."""
    hub, run = sqlite_hub, run_id()
    topic = f"q2/{run}/in"
    subscriber = Paho(hub.port, f"sub-{run}")
    subscriber.subscribe(topic, qos=2)
    # Away: the message is queued for it in the store, before PUBREC goes to the publisher.
    subscriber.close()
    raw = Raw(hub.port, f"raw-pub-{run}")
    raw.publish(topic, b"once", qos=2, packet_id=7)
    raw.expect(PUBREC, 7)
    raw.close()

    hub.restart(sig)

    raw = Raw(hub.port, f"raw-pub-{run}")
    assert raw.session_present
    # A client unsure whether its PUBLISH arrived may send it again with DUP: not a new message.
    raw.publish(topic, b"once", qos=2, packet_id=7, dup=True)
    raw.expect(PUBREC, 7)
    raw.ack(PUBREL, 7)
    raw.expect(PUBCOMP, 7)
    raw.close()
    back = Paho(hub.port, f"sub-{run}")
    assert back.present is True
    assert back.next().payload == b"once"
    publisher = Paho(hub.port, f"pub-{run}", clean=True)
    publisher.publish(topic, b"control", qos=1)
    assert back.next().payload == b"control"
    nothing_more(back.next)
    back.close()
    publisher.close()


def test_a_qos2_publish_waits_for_its_in_flight_record(sqlite_hub) -> None:
    """While the database cannot commit, a persistent subscriber gets no QoS 2 PUBLISH; once it can, it does."""
    hub, run = sqlite_hub, run_id()
    topic = f"q2/{run}/held"
    raw = Raw(hub.port, f"raw-sub-{run}")
    raw.subscribe(topic, qos=2)
    publisher = Paho(hub.port, f"pub-{run}", clean=True)
    # Another process holds SQLite's write lock: no commit can happen until it lets go.
    lock = sqlite3.connect(hub.database.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        publisher.client.publish(topic, b"held", qos=2)
        nothing_more(raw.read, wait_s=2.0)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # Positive control: with the lock gone the commit goes through, and then the PUBLISH.
    _, qos, got_topic, packet_id, payload = raw.read_publish()
    assert (qos, got_topic, payload) == (2, topic, b"held")
    raw.ack(PUBREC, packet_id)
    raw.expect(PUBREL, packet_id)
    raw.ack(PUBCOMP, packet_id)
    publisher.close()
    raw.close()


async def _store_directly(database: str, message: Message) -> None:
    async with SqliteDatabase(database) as db:
        await SqliteBrokerStore(db).apply([Retain(message)])


def test_a_stored_message_the_server_cannot_read_does_not_stop_it(tmp_path) -> None:
    """One retained message with unreadable stored properties is set aside; the hub starts and serves the rest."""
    run = run_id()
    database = f"sqlite:///{tmp_path}/hub.db"
    # Written to the store directly, as a damaged row (or one from another version) would be.
    asyncio.run(_store_directly(database, Message(f"fleet/{run}/good", b"good", 1, retain=True)))
    asyncio.run(_store_directly(database, Message(f"fleet/{run}/bad", b"bad", 1, retain=True, properties=b"\xff\xff")))
    hub = Hub(database, tmp_path)
    try:
        hub.start()
        subscriber = Paho(hub.port, f"sub-{run}", clean=True)
        subscriber.subscribe(f"fleet/{run}/good", qos=1)
        assert subscriber.next().payload == b"good"
    finally:
        hub.close()

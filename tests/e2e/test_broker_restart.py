"""A restart of `fleethub serve` (SIGTERM or SIGKILL) keeps what the broker acknowledged or retained."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

pytestmark = pytest.mark.e2e

DEV_MODE = {"FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true", "FLEETHUB_AUTH_ENABLED": "false"}


def _serve_args(db: str) -> list[str]:
    return ["serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--database", db,
            "--log-format", "json"]  # fmt: skip


class Client:
    """A paho client (3.1.1 or 5) recording what it is sent and which of its publishes were acknowledged."""

    def __init__(self, client_id: str, port: int, *, v5: bool = False, clean: bool = True, expiry: int = 0) -> None:
        self._lock = threading.Lock()
        self.received: list[mqtt.MQTTMessage] = []
        self.acked: set[int] = set()
        self.connected = threading.Event()
        self.session_present: bool | None = None
        protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
        self.paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            **({} if v5 else {"clean_session": clean}),
        )
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_publish = self._on_publish
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        self.paho.connect("127.0.0.1", port, clean_start=clean if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                          properties=props)  # fmt: skip
        self.paho.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_connect(self, client: object, userdata: object, flags: object, reason: object, props: object) -> None:
        self.session_present = bool(flags.session_present)  # type: ignore[attr-defined]
        self.connected.set()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(message)

    def _on_publish(self, client: object, userdata: object, mid: int, reason: object, props: object) -> None:
        with self._lock:
            self.acked.add(mid)

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [m.payload for m in self.received if m.topic == topic]

    def subscribe(self, topic: str, qos: int = 1) -> None:
        result, _ = self.paho.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        return info.mid

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def _wait(condition, wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {wait_s} s")
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_acknowledged_queued_and_retained_messages_survive_a_restart(run_hub, tmp_path, sig: int, v5: bool) -> None:
    """Messages PUBACKed for an absent persistent subscriber, and a retained message, are there after the restart."""
    db = f"sqlite:///{tmp_path / 'broker.db'}"
    run = uuid.uuid4().hex[:6]
    orders, status = f"depot/{run}/orders", f"depot/{run}/status"
    hub = run_hub(*_serve_args(db), env=DEV_MODE)
    port = hub.started()["mqtt_port"]
    subscriber = Client(f"dash-{run}", port, v5=v5, clean=False, expiry=3600)
    subscriber.subscribe(orders)
    time.sleep(0.3)
    subscriber.close()
    publisher = Client(f"ops-{run}", port)
    mids = [publisher.publish(orders, f"order {n}".encode()) for n in range(3)]
    mids.append(publisher.publish(status, b"gate open", retain=True))
    _wait(lambda: set(mids) <= publisher.acked, 10, "PUBACKs for the queued and retained messages")
    publisher.paho.loop_stop()
    if sig == signal.SIGKILL:
        hub.proc.send_signal(signal.SIGKILL)
        hub.proc.wait(10)
    else:
        assert hub.stop(signal.SIGTERM) == 0

    again = run_hub(*_serve_args(db), env=DEV_MODE)
    port = again.started()["mqtt_port"]
    resumed = Client(f"dash-{run}", port, v5=v5, clean=False, expiry=3600)
    assert resumed.session_present is True
    _wait(lambda: len(resumed.payloads(orders)) == 3, 10, "the three queued messages")
    assert resumed.payloads(orders) == [b"order 0", b"order 1", b"order 2"]
    newcomer = Client(f"new-{run}", port)
    newcomer.subscribe(status)
    _wait(lambda: newcomer.payloads(status) == [b"gate open"], 10, "the retained message")
    resumed.close()
    newcomer.close()
    assert again.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_qos2_in_flight_resumes_after_a_restart(run_hub, tmp_path, sig: int) -> None:
    """A QoS 2 delivery at PUBREL when the hub stops is completed after the restart, never delivered twice."""
    import asyncio
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "broker"))
    from wire_client import WireClient

    from broker.codec import Ack, PacketType, Publish, Subscribe, Subscription, Version

    db = f"sqlite:///{tmp_path / 'broker.db'}"
    run = uuid.uuid4().hex[:6]
    topic, cid = f"depot/{run}/gate", f"gate-{run}"

    async def before(port: int) -> int:
        sub, _ = await WireClient.connect(port, cid, version=Version.V311, clean=False)
        await sub.send(Subscribe(1, [Subscription(topic, 2)]))
        await sub.recv()
        pub, _ = await WireClient.connect(port, f"pub-{run}", version=Version.V311)
        await pub.send(Publish(topic, b"open", 2, packet_id=1))
        assert await pub.recv() == Ack(PacketType.PUBREC, 1)
        await pub.send(Ack(PacketType.PUBREL, 1))
        assert await pub.recv() == Ack(PacketType.PUBCOMP, 1)
        delivered = await sub.recv()
        assert isinstance(delivered, Publish)
        await sub.send(Ack(PacketType.PUBREC, delivered.packet_id))
        assert await sub.recv() == Ack(PacketType.PUBREL, delivered.packet_id)
        # The state change is committed in the next group commit, milliseconds away.
        await asyncio.sleep(1.0)
        await pub.close()
        await sub.close()
        return delivered.packet_id

    async def after(port: int, packet_id: int) -> None:
        sub, connack = await WireClient.connect(port, cid, version=Version.V311, clean=False)
        assert connack.session_present
        assert await sub.recv() == Ack(PacketType.PUBREL, packet_id)
        await sub.send(Ack(PacketType.PUBCOMP, packet_id))
        assert [p for p in await sub.recv_all(0.5) if isinstance(p, Publish)] == []
        await sub.close()

    hub = run_hub(*_serve_args(db), env=DEV_MODE)
    packet_id = asyncio.run(before(hub.started()["mqtt_port"]))
    if sig == signal.SIGKILL:
        hub.proc.send_signal(signal.SIGKILL)
        hub.proc.wait(10)
    else:
        assert hub.stop(signal.SIGTERM) == 0
    again = run_hub(*_serve_args(db), env=DEV_MODE)
    asyncio.run(after(again.started()["mqtt_port"], packet_id))
    assert again.stop(signal.SIGTERM) == 0

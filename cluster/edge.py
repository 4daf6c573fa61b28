"""The worker's connection to an external MQTT broker (paho-mqtt, MQTT 5, manual acknowledgement).

Vehicle messages arrive through shared subscriptions (`$share/{group}/vehicles/+/...`)
on a persistent session (clean start off, a session expiry), QoS 1. paho runs its own
network thread; every message is handed to the event loop as it is, and the worker
acknowledges it (`ack`) only once its data is committed — the broker keeps it, and
sends it again, until then. `receive_maximum` bounds how many the broker hands over
unacknowledged, which bounds everything the worker holds in memory for them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cluster.settings import ClusterSettings
from kernel import ConfigError
from twin import Channel

log = structlog.get_logger(__name__)

# What workers consume. `status` carries the birth and Last-Will messages (docs/scale.md).
FILTERS = (
    "vehicles/+/telemetry",
    "vehicles/+/twin/get",
    "vehicles/+/twin/rejected",
    "vehicles/+/commands/+/result",
    "vehicles/+/status",
)
# EMQX's presence events (`cluster.presence = "emqx"`): it publishes them under $SYS when a
# client connects, disconnects or (with client_subscribed enabled) subscribes.
EMQX_PRESENCE = (
    "$SYS/brokers/+/clients/+/connected",
    "$SYS/brokers/+/clients/+/disconnected",
    "$SYS/brokers/+/clients/+/subscribed",
)


def filters_of(settings: ClusterSettings) -> tuple[str, ...]:
    """The topic filters a worker subscribes to (each under `$share/{group}/`)."""
    return FILTERS + EMQX_PRESENCE if settings.presence == "emqx" else FILTERS


@dataclass(frozen=True, slots=True)
class Received:
    """One message from the broker; `generation` is the connection it came on."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    # The connection to acknowledge it on (None: the worker's own).
    source: ExternalBroker | None = None


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of an mqtt:// or mqtts:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
        raise ConfigError(f"setting 'cluster.broker' must be mqtt://host:port or mqtts://host:port, got {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"setting 'cluster.broker' has a bad port: {url!r}") from None
    return parts.hostname, port, tls


class ExternalBroker:
    """An async context manager around one paho client; also the hub's `VehicleChannel` and publisher."""

    def __init__(
        self,
        settings: ClusterSettings,
        client_id: str,
        on_message: Callable[[Received], None],
        *,
        consume: bool = True,
    ) -> None:
        """`consume=False` takes over a session only to empty it: no subscriptions, no reconnects."""
        self.settings = settings
        self.client_id = client_id
        self.host, self.port, self.tls = parse_broker_url(settings.broker)
        self._on_message = on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Event = asyncio.Event()
        self._generation = 0
        self._stopped = not consume
        # Messages handed over and not yet acknowledged; when the last one came (loop time).
        self.outstanding = 0
        self.last_message_at = 0.0
        self.connects = 0
        self.published = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            # A session taken over to be emptied is handed back if its worker returns.
            reconnect_on_failure=consume,
        )
        if settings.broker_username:
            client.username_pw_set(settings.broker_username, settings.broker_password or None)
        if self.tls:
            client.tls_set(ca_certs=settings.broker_cafile or None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(1, 5)
        # paho's own queue of outgoing messages is bounded: a broker that is away does not grow it forever.
        client.max_queued_messages_set(100_000)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_message = self._message_cb
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        self._client.connect_async(
            self.host, self.port, keepalive=self.settings.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=30)
        except TimeoutError:
            self._client.loop_stop()
            raise ConfigError(f"cannot connect to the MQTT broker at {self.settings.broker}") from None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # After `stop_consuming` the session ends with the connection (expiry 0): a broker that
        # hands shared messages to offline sessions (Mosquitto) then stops queuing for this one.
        # Otherwise it stays for session_expiry_s and a worker with the same id takes it back.
        props = None
        if self._stopped:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        await asyncio.to_thread(self._client.disconnect, properties=props)
        await asyncio.to_thread(self._client.loop_stop)

    def stop_consuming(self) -> None:
        """Unsubscribe: the broker sends nothing new; what is in flight is still acknowledged."""
        self._stopped = True
        group = self.settings.share_group
        self._client.unsubscribe([f"$share/{group}/{f}" for f in filters_of(self.settings)])

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- paho's thread -----------------------------------------------------------------

    def _connected_cb(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the worker", reason=str(reason))
            return
        self._generation += 1
        self.connects += 1
        group = self.settings.share_group
        if not self._stopped:
            client.subscribe([(f"$share/{group}/{f}", 1) for f in filters_of(self.settings)])
        else:
            # The session's subscriptions end; what it already holds is still delivered.
            client.unsubscribe([f"$share/{group}/{f}" for f in filters_of(self.settings)])
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.set)
        log.info("connected to the broker", broker=self.settings.broker, session_present=bool(flags.session_present))

    def _disconnected_cb(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.clear)
        log.warning("disconnected from the broker", reason=str(reason))

    def _message_cb(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), msg.qos, msg.mid, self._generation, self)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_message, received)

    # -- the event loop's side ---------------------------------------------------------

    def ack(self, msg: Received) -> None:
        """PUBACK `msg`, unless it came on an earlier connection (the broker sends that one again)."""
        if msg.qos > 0 and msg.generation == self._generation:
            self._client.ack(msg.mid, msg.qos)

    def send(self, vehicle_id: str, channel: Channel, payload: bytes, qos: int = 1, subtopic: str = "") -> None:
        topic = f"vehicles/{vehicle_id}/{channel.value}"
        if subtopic:
            topic = f"{topic}/{subtopic}"
        self._publish(topic, payload, qos, retain=False)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._publish(topic, payload, qos, retain)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            log.warning("outgoing MQTT queue full; message dropped", topic=topic)
            return
        self.published += 1

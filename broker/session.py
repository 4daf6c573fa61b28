"""What the broker holds for one client id: subscriptions, the outgoing queue, messages in flight.

A session outlives its connection when it is persistent (MQTT 3.1.1 clean session 0,
MQTT 5 session expiry above 0) until it expires. Its outgoing queue is bounded in
messages and bytes, for a connected client as for an absent one: past either bound the
oldest message goes (or, with the `disconnect` policy, a connected client is cut off),
and either way it is counted.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.codec import Properties, Publish, Subscription, Version
from security import Principal


@dataclass(slots=True)
class Message:
    """An application message on its way to subscribers."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: Properties = field(default_factory=Properties)
    # Epoch seconds after which it is not delivered (MQTT 5 message expiry), else None.
    expires_at: float | None = None
    # The client id of the publisher, for MQTT 5's no-local option ("" for the hub).
    sender: str = ""

    @property
    def size(self) -> int:
        return len(self.topic) + len(self.payload)


@dataclass(slots=True)
class Outgoing:
    """A message addressed to one session, at the QoS and with the flags of its subscription."""

    message: Message
    qos: int
    retain: bool
    subscription_ids: tuple[int, ...] = ()
    seq: int = 0


class InflightState(enum.Enum):
    PUBLISH_SENT = "publish_sent"
    PUBREL_SENT = "pubrel_sent"


@dataclass(slots=True)
class Inflight:
    outgoing: Outgoing
    packet_id: int
    state: InflightState = InflightState.PUBLISH_SENT
    # Sent before on this session (a resend carries DUP).
    sent: bool = False


class SlowPolicy(enum.Enum):
    """What happens when a connected subscriber's queue is full."""

    DROP_OLDEST = "drop_oldest"
    DISCONNECT = "disconnect"


class Overflow(enum.Enum):
    NONE = "none"
    DROPPED = "dropped"
    DISCONNECT = "disconnect"


@dataclass(slots=True)
class SessionLimits:
    max_messages: int
    max_bytes: int
    policy: SlowPolicy = SlowPolicy.DROP_OLDEST


class Session:
    def __init__(self, client_id: str, principal: Principal | None, version: Version, limits: SessionLimits) -> None:
        self.client_id = client_id
        self.principal = principal
        self.version = version
        self.limits = limits
        # Seconds the session outlives its connection; 0 ends it with the connection.
        self.expiry_s: float = 0.0
        self.disconnected_at: float | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.subscription_ids: dict[str, int] = {}
        self.queue: collections.deque[Outgoing] = collections.deque()
        self.queued_bytes = 0
        self.inflight: dict[int, Inflight] = {}
        # Incoming QoS 2 packet ids: False while ingest decides, True once PUBREC went out.
        self.incoming: dict[int, bool] = {}
        self.connected = False
        # Who the session belongs to, as "kind:name", for a session restored before its client logs in again.
        self.owner: str | None = None
        self.created_at = time.time()
        # Whether the broker store holds this session.
        self.stored = False
        # Wakes the connected client's sender when something is queued.
        self.notify: Callable[[], None] | None = None
        self._next_id = 0

    @property
    def persistent(self) -> bool:
        return self.expiry_s > 0

    def expired(self, now: float) -> bool:
        return not self.connected and self.disconnected_at is not None and now - self.disconnected_at >= self.expiry_s

    def enqueue(self, outgoing: Outgoing) -> tuple[Overflow, list[Outgoing]]:
        """Queue `outgoing`; returns what the bounds did and the older messages dropped for it."""
        self.queue.append(outgoing)
        self.queued_bytes += outgoing.message.size
        dropped: list[Outgoing] = []
        while len(self.queue) > 1 and (
            len(self.queue) > self.limits.max_messages or self.queued_bytes > self.limits.max_bytes
        ):
            if self.connected and self.limits.policy is SlowPolicy.DISCONNECT:
                # The client is cut off; until it is gone nothing more is queued for it.
                newest = self.queue.pop()
                self.queued_bytes -= newest.message.size
                return Overflow.DISCONNECT, dropped
            old = self.queue.popleft()
            self.queued_bytes -= old.message.size
            dropped.append(old)
        return (Overflow.DROPPED if dropped else Overflow.NONE), dropped

    def discard(self, seqs: set[int]) -> int:
        """Remove queued messages by seq (the store dropped them); returns how many were here."""
        kept = [o for o in self.queue if o.seq not in seqs]
        removed = len(self.queue) - len(kept)
        if removed:
            self.queue = collections.deque(kept)
            self.queued_bytes = sum(o.message.size for o in kept)
        return removed

    def dequeue(self) -> Outgoing:
        outgoing = self.queue.popleft()
        self.queued_bytes -= outgoing.message.size
        return outgoing

    def clear_queue(self) -> None:
        self.queue.clear()
        self.queued_bytes = 0

    def next_packet_id(self) -> int:
        """A packet id not in flight (1-65535, cycling)."""
        for _ in range(65_535):
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self.inflight:
                return self._next_id
        msg = "every packet id is in flight"
        raise RuntimeError(msg)

    def publish_packet(self, inflight: Inflight | None, outgoing: Outgoing, now: float | None = None) -> Publish:
        message = outgoing.message
        props = message.properties
        if message.expires_at is not None or outgoing.subscription_ids:
            props = Properties(**{f: getattr(props, f) for f in props.__struct_fields__})
            if message.expires_at is not None:
                left = message.expires_at - (now if now is not None else time.time())
                props.message_expiry_interval = max(0, int(left + 0.999))
            props.subscription_identifiers = list(outgoing.subscription_ids)
        return Publish(
            message.topic,
            message.payload,
            outgoing.qos,
            outgoing.retain,
            inflight is not None and inflight.sent,
            inflight.packet_id if inflight is not None else 0,
            props if self.version is Version.V5 else Properties(),
        )

"""The broker store seam: what the embedded MQTT broker keeps so that a restart loses nothing.

It holds retained messages per topic and persistent sessions per client id: the
session's protocol version and expiry, its subscriptions with their options, the QoS 1/2
queue of messages waiting for its client, the outgoing messages in flight with their
packet ids, and the incoming QoS 2 packet ids awaiting PUBREL.

Writes come as one ordered list of changes, applied in one transaction by `apply`: the
broker gathers the changes of many packets and flushes them together (see
`broker.stores.StoreWriter`), on the same group-commit cadence as ingest, so a store
commit costs one transaction per batch, not one per packet.

Ordering the broker must keep (the promise "nothing acknowledged is lost"):

- A QoS 1/2 PUBLISH that is queued for an offline persistent subscriber is acknowledged
  to its publisher (PUBACK, or PUBREC for QoS 2) only after the `apply` holding its
  `Enqueue` has returned. If the commit fails, the broker does not acknowledge; the
  publisher resends.
- A PUBLISH that sets or clears a retained message is acknowledged only after the
  `apply` holding its `Retain`/`ClearRetained` has returned.
- For an incoming QoS 2 PUBLISH, `PutIncoming` commits before PUBREC is sent and
  `ReleaseIncoming` before PUBCOMP, so a resent PUBLISH (DUP) after a restart is
  recognised and not delivered twice.
- An outgoing message is recorded (`PutInflight`) before, or in the same batch that,
  removes it from the queue (`Dequeue`), so it is never in neither place.
- A QoS 1 PUBLISH to a subscriber may go on the socket before that commit: if the hub
  dies first, the message is still queued and is sent again after the restart (at least
  once, as QoS 1 allows). A QoS 2 PUBLISH goes on the socket only after its `PutInflight`
  is committed, so after a restart it is resent with the same packet id and DUP set, and
  the subscriber can tell it is the same message (exactly once).
- `PutInflight` with state `PUBREL_SENT` is committed before PUBREL is sent;
  `AckInflight` follows PUBACK/PUBCOMP from the subscriber (an acknowledgement lost to a
  restart only means the message or PUBREL is resent, which the subscriber handles).
- Changes to subscriptions and to the session record may be flushed with the next batch;
  SUBACK need not wait for them unless the broker wants the subscription durable first.
- When a client takes its stored session back, its `PutSession` (with `expires_at` None)
  is handed to the writer at CONNECT, before anything else of the session: the writer's
  expiry sweep runs only after what was handed to it earlier has committed, so a session
  taken back in time is never swept.

Every implementation passes one contract suite
(tests/integration/broker/test_store_contract.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from types import TracebackType
from typing import Final, Protocol, Self

import msgspec

# MQTT 5's Session Expiry Interval that means "never expires" (MQTT-3.1.2-11's maximum).
NEVER_EXPIRES: Final = 0xFFFFFFFF


class Message(msgspec.Struct, frozen=True):
    """One application message as the broker will send it again.

    `properties` is the MQTT 5 PUBLISH properties that must survive (content type,
    payload format, user properties, response topic, correlation data), encoded by the
    broker; the store keeps it as opaque bytes. The Message Expiry Interval is not in it:
    it is `expires_at` (epoch seconds), so the broker can send the time that is left.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: bytes = b""
    expires_at: float | None = None

    @property
    def size(self) -> int:
        """What the message counts against a session's byte limit."""
        return len(self.topic.encode()) + len(self.payload) + len(self.properties)


class Subscription(msgspec.Struct, frozen=True):
    """A subscription with its MQTT 5 options (a 3.1.1 client's have the defaults)."""

    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    # 0: send retained messages at subscribe; 1: only if the subscription is new; 2: never.
    retain_handling: int = 0
    subscription_id: int | None = None


class SessionRecord(msgspec.Struct, frozen=True):
    """A persistent session's own fields.

    `protocol_version` is the CONNECT protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    `expiry_interval_s` is the session expiry interval (MQTT 5's property, or the
    broker's setting for a 3.x client with clean session 0); `NEVER_EXPIRES` never does.
    `expires_at` is when the store may drop the session: set when its client disconnects,
    None while the client is connected or when the session never expires. A session
    restored with `expires_at` None and a finite interval had its client connected when
    the hub stopped: the broker counts its expiry from the restart.
    """

    client_id: str
    protocol_version: int
    expiry_interval_s: int
    expires_at: float | None = None
    username: str | None = None
    created_at: float = 0.0


class InflightState(enum.Enum):
    """Where an outgoing QoS 1/2 message is in its exchange with the subscriber."""

    # PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2): resent with DUP after a restart.
    PUBLISH_SENT = "publish_sent"
    # PUBREC received and PUBREL sent, waiting for PUBCOMP: only PUBREL is resent.
    PUBREL_SENT = "pubrel_sent"


class Queued(msgspec.Struct, frozen=True):
    """A message waiting for its session's client. `seq` orders a session's messages.

    The broker assigns `seq`, increasing for each message it queues or sends (one counter
    for all sessions will do); `Snapshot.last_seq` is where it continues after a restart.
    """

    seq: int
    message: Message


class Inflight(msgspec.Struct, frozen=True):
    """An outgoing message sent with `packet_id` and not yet fully acknowledged."""

    seq: int
    packet_id: int
    state: InflightState
    message: Message


class StoredSession(msgspec.Struct, frozen=True):
    """Everything a persistent session holds, as restored at start."""

    record: SessionRecord
    subscriptions: list[Subscription]
    # Oldest first.
    queue: list[Queued]
    # In the order they were sent (by seq, then packet id): resend them in this order.
    inflight: list[Inflight]
    # Incoming QoS 2 packet ids that got PUBREC and wait for PUBREL, ascending.
    incoming: list[int]


class Snapshot(msgspec.Struct, frozen=True):
    """What the broker restores at start. Expired sessions and messages are left out."""

    retained: list[Message]
    sessions: list[StoredSession]
    # The highest `seq` the store holds (0 when none): the broker's counter starts above it.
    last_seq: int


# -- changes ------------------------------------------------------------------------------
# One kind of Struct per change; `apply` runs a list of them in order, in one transaction.
# A change to a session the store does not hold (dropped earlier, or never created) is
# ignored, so a batch never fails because a session went away while it was gathered.


class PutSession(msgspec.Struct, frozen=True):
    """Create the session, or replace its record (subscriptions, queue and in-flight stay)."""

    record: SessionRecord


class DropSession(msgspec.Struct, frozen=True):
    """Forget the session and everything it holds (clean start, expiry, takeover by a clean session)."""

    client_id: str


class Subscribe(msgspec.Struct, frozen=True):
    """Add the subscription, or replace the one with the same topic filter."""

    client_id: str
    subscription: Subscription


class Unsubscribe(msgspec.Struct, frozen=True):
    client_id: str
    topic_filter: str


class Enqueue(msgspec.Struct, frozen=True):
    """Queue a message for the session's client. A `seq` the session already holds is ignored."""

    client_id: str
    queued: Queued


class Dequeue(msgspec.Struct, frozen=True):
    """Take a message off the queue: sent (with `PutInflight` in the same batch), expired or dropped."""

    client_id: str
    seq: int


class PutInflight(msgspec.Struct, frozen=True):
    """Record an outgoing message as sent, or move it to `PUBREL_SENT` (keyed by packet id)."""

    client_id: str
    inflight: Inflight


class AckInflight(msgspec.Struct, frozen=True):
    """The exchange for `packet_id` is complete (PUBACK or PUBCOMP received)."""

    client_id: str
    packet_id: int


class PutIncoming(msgspec.Struct, frozen=True):
    """An incoming QoS 2 PUBLISH got PUBREC; its packet id waits for PUBREL."""

    client_id: str
    packet_id: int


class ReleaseIncoming(msgspec.Struct, frozen=True):
    """PUBREL received for an incoming QoS 2 packet id (PUBCOMP follows)."""

    client_id: str
    packet_id: int


class Retain(msgspec.Struct, frozen=True):
    """Set the retained message of `message.topic`, replacing the one before."""

    message: Message


class ClearRetained(msgspec.Struct, frozen=True):
    """A retained PUBLISH with an empty payload: the topic has no retained message any more."""

    topic: str


Change = (
    PutSession
    | DropSession
    | Subscribe
    | Unsubscribe
    | Enqueue
    | Dequeue
    | PutInflight
    | AckInflight
    | PutIncoming
    | ReleaseIncoming
    | Retain
    | ClearRetained
)


class QueueLimits(msgspec.Struct, frozen=True):
    """Per-session queue bounds. When an `Enqueue` goes over either, the oldest queued
    messages of that session are dropped until it is within both (the newest is kept even
    when it alone is larger than `max_bytes`); in-flight messages do not count."""

    max_messages: int = 1000
    max_bytes: int = 1_048_576


class Dropped(msgspec.Struct, frozen=True):
    """A queued message the store dropped to keep its session within `QueueLimits`."""

    client_id: str
    seq: int


class ApplyResult(msgspec.Struct, frozen=True):
    # Oldest first per session. The broker removes them from its own copy and counts them.
    dropped: list[Dropped] = msgspec.field(default_factory=list)


class Expired(msgspec.Struct, frozen=True):
    """What `expire` removed."""

    sessions: list[str] = msgspec.field(default_factory=list)
    retained: int = 0
    queued: int = 0


class StoreStats(msgspec.Struct, frozen=True):
    """Sizes for the metrics: persistent sessions, their queued messages, retained messages."""

    sessions: int
    queued_messages: int
    queued_bytes: int
    inflight: int
    retained: int


class BrokerStore(Protocol):
    """A durable home for the broker's retained messages and persistent sessions."""

    limits: QueueLimits

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def apply(self, changes: Sequence[Change]) -> ApplyResult:
        """Apply `changes` in order in one transaction: all of them are durable when this returns, or none.

        Raises `kernel.StoreError` when the database cannot be reached (retry later);
        other errors mean the batch itself is wrong.
        """
        ...

    async def load(self, now: float) -> Snapshot:
        """Everything to restore: retained messages and sessions not expired at `now`."""
        ...

    async def expire(self, now: float) -> Expired:
        """Remove sessions whose `expires_at` has passed, and retained and queued messages
        whose `expires_at` has passed (in-flight ones stay: they were sent in time)."""
        ...

    async def stats(self) -> StoreStats: ...

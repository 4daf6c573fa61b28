"""What the edge (the broker) hands to the twin pipeline, and what the pipeline hands back.

The twin package knows nothing of MQTT: the broker turns topics into a `MessageKind`
and a vehicle id, and turns a `Channel` back into a topic.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Final, Protocol


class MessageKind(enum.Enum):
    """What a vehicle said, or what happened to its connection."""

    TELEMETRY = "telemetry"
    TWIN_GET = "twin/get"
    TWIN_REJECTED = "twin/rejected"
    COMMAND_RESULT = "command/result"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    # The vehicle subscribed to a filter; `payload` is the filter, utf-8.
    SUBSCRIBED = "subscribed"


class DisconnectReason(enum.Enum):
    CLEAN = "clean"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    TAKEN_OVER = "taken_over"
    PROTOCOL_ERROR = "protocol_error"
    CONNECTION_LOST = "connection_lost"
    SHUTDOWN = "shutdown"
    # Its credentials were revoked (or its user's token): the hub closed the connection.
    REVOKED = "revoked"
    # It stopped reading while its outgoing queue filled (`mqtt.slow_subscriber = "disconnect"`).
    SLOW_CONSUMER = "slow_consumer"


class Channel(enum.Enum):
    """Where the hub talks to one vehicle; the broker maps each to a topic."""

    DELTA = "twin/delta"
    DOCUMENT = "twin/doc"
    ERRORS = "errors"
    COMMAND = "commands"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the pipeline decided about one inbound message, handed back to the broker.

    Accepted: its data is committed (the broker acknowledges it and routes it on).
    Refused: `reason` and `detail` say why (the broker acknowledges it, negatively where
    the protocol can, and does not route it). A message that is neither — its future
    cancelled or never resolved — was not committed and must not be acknowledged.
    """

    accepted: bool
    reason: str = ""
    detail: str = ""

    @classmethod
    def refused(cls, reason: str, detail: str) -> Verdict:
        return cls(False, reason, detail)


ACCEPTED: Final = Verdict(True)


@dataclass(slots=True)
class Inbound:
    """One thing for the ordered ingest consumer.

    `ack` is set for QoS 1 publishes: the pipeline resolves it with a `Verdict` once the
    message's data is committed (or the message was refused), and only then does the
    broker PUBACK.
    """

    vehicle_id: str
    kind: MessageKind
    payload: bytes
    received_at: float
    qos: int = 0
    ack: asyncio.Future[Verdict] | None = None
    # Extra addressing below the kind, e.g. the command id of a command result.
    subtopic: str = ""
    client_id: str = ""
    peer: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class InboundSink(Protocol):
    """Accepts inbound items in order; `submit` waits while the pipeline is full."""

    async def submit(self, item: Inbound) -> None: ...

    def try_submit(self, item: Inbound) -> bool:
        """Enqueue without waiting; False when the pipeline is full."""
        ...


class VehicleChannel(Protocol):
    """Sends a payload to one vehicle on one channel; never blocks the caller."""

    def send(self, vehicle_id: str, channel: Channel, payload: bytes, qos: int = 1, subtopic: str = "") -> None: ...

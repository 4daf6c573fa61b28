"""What a vehicle is told on `vehicles/{vid}/errors` when the broker drops its message."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from broker.topics import Refusal


class RefusalNotice(msgspec.Struct):
    error: str
    detail: str
    topic: str
    ts: str


_encoder = msgspec.json.Encoder()


def detail(reason: Refusal, topic: str, size: int, limit: int) -> str:
    match reason:
        case Refusal.PAYLOAD_TOO_LARGE:
            return f"the payload is {size} bytes; the hub accepts at most {limit} bytes per message"
        case Refusal.TOPIC_NOT_ALLOWED:
            return f"'{topic}' carries messages from the hub; a client may not publish on it"
        case Refusal.NOT_AUTHORIZED:
            return f"this client may not publish on '{topic}'; a vehicle publishes only under vehicles/{{its id}}/"
        case Refusal.RATE_LIMITED:
            return "over this vehicle's message rate; the message was dropped, slow down"
        case Refusal.UNKNOWN_TOPIC:
            return (
                f"the hub does not accept messages on '{topic}'; vehicles publish on "
                "vehicles/{vid}/telemetry, twin/get, twin/rejected and commands/{command_id}/result"
            )


def notice(reason: Refusal, topic: str, size: int, limit: int, now: datetime | None = None) -> bytes:
    """The JSON error document, timestamped in RFC 3339 UTC."""
    moment = now or datetime.now(UTC)
    ts = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _encoder.encode(RefusalNotice(reason.value, detail(reason, topic, size, limit), topic, ts))

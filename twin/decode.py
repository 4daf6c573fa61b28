"""Stage 1, decode and validate: a vehicle message's payload to what the twin handlers apply.

Pure: no twin, no store. Everything that can be refused from the payload alone is
refused here (`InvalidPayload` with the reason the vehicle is told), so the handlers
only see messages whose every number and time is in range.
"""

from __future__ import annotations

import msgspec

from kernel import InvalidPayload
from twin.inbound import Inbound, MessageKind
from twin.limits import Limits, check_patch
from twin.telemetry import Envelope, decode_object, split_envelope

_encode = msgspec.json.Encoder().encode


class TwinRequest(msgspec.Struct, frozen=True):
    """A `twin/get`: the vehicle asks for its document."""

    request_id: str | None


class Rejections(msgspec.Struct, frozen=True):
    """A `twin/rejected`: desired paths the vehicle cannot apply, with its reasons."""

    reasons: dict[str, str]


# What a decoded message carries; presence changes and command results carry nothing here.
Decoded = Envelope | TwinRequest | Rejections | None


def decode(item: Inbound, limits: Limits, max_clock_ahead_s: float) -> Decoded:
    """Decode and validate `item`'s payload, or raise `InvalidPayload` saying why not."""
    match item.kind:
        case MessageKind.TELEMETRY:
            obj = decode_object(item.payload, limits.max_depth + 1)
            check_patch(obj, limits)
            return split_envelope(obj, item.received_at, max_clock_ahead_s)
        case MessageKind.TWIN_GET:
            if not item.payload.strip():
                return TwinRequest(None)
            raw = decode_object(item.payload, limits.max_depth + 1).get("request_id")
            if raw is not None and not isinstance(raw, str):
                raise InvalidPayload("bad_request_id", "'request_id' must be a string")
            return TwinRequest(raw)
        case MessageKind.TWIN_REJECTED:
            obj = decode_object(item.payload, limits.max_depth + 1)
            check_patch(obj, limits)
            return Rejections({k: v if isinstance(v, str) else _encode(v).decode() for k, v in obj.items()})
    return None

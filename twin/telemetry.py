"""Decoding what vehicles publish: tolerant of extra fields, strict about the envelope."""

from __future__ import annotations

import msgspec

from kernel import InvalidPayload, parse_time
from twin.model import Json

_decode_json = msgspec.json.Decoder().decode


def decode_object(payload: bytes) -> dict[str, Json]:
    """Decode a payload that must be a JSON object."""
    try:
        value = _decode_json(payload)
    except msgspec.DecodeError as exc:
        raise InvalidPayload("not_json", f"payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidPayload("not_object", f"payload must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    match value:
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case None:
            return "null"
    return type(value).__name__


class Envelope(msgspec.Struct, frozen=True):
    ts: float
    seq: int | None
    data: dict[str, Json]


def split_envelope(obj: dict[str, Json], received_at: float, max_clock_ahead_s: float) -> Envelope:
    """Take `ts` and `seq` out of a telemetry object; the rest is reported data."""
    data = dict(obj)
    raw_ts = data.pop("ts", None)
    raw_seq = data.pop("seq", None)
    ts = received_at if raw_ts is None else parse_time(raw_ts)
    if ts > received_at + max_clock_ahead_s:
        raise InvalidPayload(
            "clock_ahead",
            f"'ts' is {ts - received_at:.0f} s ahead of the hub's clock "
            f"(more than {max_clock_ahead_s:.0f} s); fix the device clock",
        )
    seq: int | None = None
    if raw_seq is not None:
        if isinstance(raw_seq, bool) or not isinstance(raw_seq, int) or raw_seq < 0:
            raise InvalidPayload("bad_seq", "'seq' must be a non-negative integer")
        seq = raw_seq
    return Envelope(ts=ts, seq=seq, data=data)

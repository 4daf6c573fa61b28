"""Decoding what vehicles publish: tolerant of extra fields, strict about the envelope."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgspec

from twin.errors import InvalidPayload
from twin.model import Json

_decode_json = msgspec.json.Decoder().decode

# Device clocks that report milliseconds are common; no real epoch-seconds value is this large.
_MILLIS_THRESHOLD = 1e11


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


def parse_time(value: Any, *, field: str = "ts") -> float:
    """Epoch seconds (or milliseconds) as a number, or an RFC 3339 string, to epoch seconds."""
    if isinstance(value, bool):
        raise InvalidPayload("bad_timestamp", f"'{field}' must be epoch seconds or RFC 3339, got a boolean")
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts) or ts < 0:
            raise InvalidPayload("bad_timestamp", f"'{field}' must be a non-negative finite number")
        return ts / 1000.0 if ts > _MILLIS_THRESHOLD else ts
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidPayload("bad_timestamp", f"'{field}' is not an RFC 3339 time: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise InvalidPayload("bad_timestamp", f"'{field}' must be epoch seconds or RFC 3339")


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


def isoformat(ts: float | None) -> str | None:
    """Epoch seconds to RFC 3339 UTC with milliseconds, the one time format the hub emits."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

"""Decoding what vehicles publish: tolerant of extra fields, strict about the envelope."""

from __future__ import annotations

import msgspec

from kernel import InvalidPayload, LimitExceeded, deeper_than, parse_time
from twin.model import Json

_decode_json = msgspec.json.Decoder().decode


# `seq` is stored in a signed 64-bit column on every backend.
SEQ_MAX = 2**63 - 1


def decode_object(payload: bytes, max_depth: int) -> dict[str, Json]:
    """Decode a payload that must be a JSON object nested at most `max_depth` levels.

    The depth is measured before decoding: the decoder recurses once per level, and a
    few KB of brackets would exhaust the interpreter's recursion limit.
    """
    if deeper_than(payload, max_depth):
        raise LimitExceeded("too_deep", f"payload nests deeper than {max_depth} levels")
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
        if isinstance(raw_seq, bool) or not isinstance(raw_seq, int) or not 0 <= raw_seq <= SEQ_MAX:
            raise InvalidPayload("bad_seq", f"'seq' must be an integer from 0 to {SEQ_MAX}")
        seq = raw_seq
    return Envelope(ts=ts, seq=seq, data=data)

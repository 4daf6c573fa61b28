"""Time as the hub reads, parses and writes it.

Times are epoch seconds (floats) everywhere inside the hub; RFC 3339 UTC with
milliseconds is the one format it emits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kernel.errors import InvalidPayload

# A source of the current time in epoch seconds (`time.time`), or of a monotonic one;
# parts take one so tests can drive time by hand.
Clock = Callable[[], float]

# Device clocks that report milliseconds are common; no real epoch-seconds value is this large.
_MILLIS_THRESHOLD = 1e11
# The last second of year 9999: later times cannot be formatted or stored as a timestamp.
TIME_MAX = 253_402_300_799.0


def parse_time(value: Any, *, field: str = "ts") -> float:
    """Epoch seconds (or milliseconds) as a number, or an RFC 3339 string, to epoch seconds."""
    if isinstance(value, bool):
        raise InvalidPayload("bad_timestamp", f"'{field}' must be epoch seconds or RFC 3339, got a boolean")
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts) or ts < 0:
            raise InvalidPayload("bad_timestamp", f"'{field}' must be a non-negative finite number")
        return _in_range(ts / 1000.0 if ts > _MILLIS_THRESHOLD else ts, field)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidPayload("bad_timestamp", f"'{field}' is not an RFC 3339 time: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return _in_range(parsed.timestamp(), field)
    raise InvalidPayload("bad_timestamp", f"'{field}' must be epoch seconds or RFC 3339")


def _in_range(ts: float, field: str) -> float:
    if not 0 <= ts <= TIME_MAX:
        raise InvalidPayload("bad_timestamp", f"'{field}' must lie between 1970 and the end of 9999")
    return ts


def isoformat(ts: float | None) -> str | None:
    """Epoch seconds to RFC 3339 UTC with milliseconds, the one time format the hub emits."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

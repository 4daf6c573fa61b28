"""Times at the API's edge: RFC 3339 out, RFC 3339 or epoch seconds in, always within a sane range."""

from __future__ import annotations

import math

from kernel import InvalidPayload, isoformat, parse_time

# 9999-12-31T23:59:59Z: the last second `datetime` (and so RFC 3339 output) can hold.
MAX_EPOCH_S = 253_402_300_799.0


def rfc3339(ts: float) -> str:
    """Epoch seconds as the RFC 3339 UTC text every response carries."""
    return isoformat(min(max(ts, 0.0), MAX_EPOCH_S)) or ""


def query_time(value: str | float | None, name: str) -> float | None:
    """A time from a query or body (RFC 3339, or epoch seconds), or None; a 400 for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            value = number if math.isfinite(number) else value
    try:
        ts = parse_time(value, field=name)
    except (InvalidPayload, OverflowError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, InvalidPayload) else f"'{name}' is not a time: {str(value)[:64]!r}"
        raise InvalidPayload("bad_query", detail) from None
    if not 0 <= ts <= MAX_EPOCH_S:
        raise InvalidPayload("bad_query", f"'{name}' must be between 1970 and 9999 (RFC 3339 or epoch seconds)")
    return ts

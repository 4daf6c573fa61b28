"""Which channel hears of what, when: routing rules, quiet hours and the rate of each channel. Pure."""

from __future__ import annotations

import datetime as dt
import fnmatch
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifications.model import Channel, QuietHours, severity_rank


def routes(channel: Channel, *, fleet: str, severity: str, rule: str, event: str) -> bool:
    """Whether an alert event goes to this channel."""
    b = channel.body
    return (
        b.enabled
        and (b.fleet is None or b.fleet == fleet)
        and severity_rank(severity) >= severity_rank(b.min_severity)
        and event in b.events
        and (not b.rules or any(fnmatch.fnmatchcase(rule, pattern) for pattern in b.rules))
    )


def zone(name: str) -> ZoneInfo:
    """The time zone `name`; ValueError naming it when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Madrid") from None


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def quiet(hours: QuietHours | None, now: float) -> bool:
    """Whether `now` falls in the quiet hours (which may span midnight: 22:00-07:00)."""
    if hours is None:
        return False
    local = dt.datetime.fromtimestamp(now, zone(hours.tz))
    minute = local.hour * 60 + local.minute
    start, end = _minutes(hours.start), _minutes(hours.end)
    if start == end:
        return False
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


class TokenBucket:
    """`rate_per_hour` deliveries an hour on average, `burst` at once."""

    def __init__(self, rate_per_hour: float, burst: int, now: float) -> None:
        self.rate_per_s = rate_per_hour / 3600.0
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def next_token_at(self, now: float) -> float:
        missing = max(0.0, 1.0 - self.tokens)
        return now + missing / self.rate_per_s

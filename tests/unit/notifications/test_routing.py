"""Routing, quiet hours, rates and signatures: the pure parts of notifications."""

import datetime as dt

import msgspec
import pytest

from notifications import Channel, ChannelBody, ChannelKind, QuietHours, TokenBucket, quiet, routes, sign, verify


def channel(**body) -> Channel:
    defaults = {"kind": ChannelKind.CHAT, "url": "http://x/"}
    return Channel("c", ChannelBody(**{**defaults, **body}), 0.0, 0.0)


def test_routes_by_fleet_severity_rule_and_event():
    """A channel hears only its fleet, its severities and up, its rules (patterns) and its events."""
    c = channel(fleet="north", min_severity="major", rules=["maintenance.*"], events=["raised", "cleared"])
    ok = {"fleet": "north", "severity": "critical", "rule": "maintenance.oil.overdue", "event": "raised"}
    assert routes(c, **ok)
    assert not routes(c, **{**ok, "fleet": "south"})
    assert not routes(c, **{**ok, "severity": "warning"})
    assert not routes(c, **{**ok, "rule": "low_soc"})
    assert not routes(c, **{**ok, "event": "acknowledged"})
    assert not routes(channel(enabled=False), **ok)


def test_quiet_hours_span_midnight_in_the_channel_time_zone():
    """22:00-07:00 in Madrid is quiet at 23:30 and 06:59 there, not at 07:00 or noon."""
    hours = QuietHours(start="22:00", end="07:00", tz="Europe/Madrid")
    madrid = dt.timezone(dt.timedelta(hours=1))  # December: CET

    def at(h: int, m: int) -> float:
        return dt.datetime(2026, 12, 6, h, m, tzinfo=madrid).timestamp()

    assert quiet(hours, at(23, 30))
    assert quiet(hours, at(6, 59))
    assert not quiet(hours, at(7, 0))
    assert not quiet(hours, at(12, 0))
    assert not quiet(None, at(23, 30))


def test_token_bucket_allows_bursts_then_the_rate():
    """A bucket of 2 at 3600/h gives two at once, then one a second."""
    bucket = TokenBucket(3600, 2, 0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert not bucket.take(0.5)
    assert bucket.take(1.01)


def test_signature_verifies_and_detects_tampering():
    """The HMAC header verifies against its body and secret, and fails for another body or secret."""
    header = sign("s" * 20, 1_700_000_000, b'{"a":1}')
    assert verify("s" * 20, header, b'{"a":1}')
    assert not verify("s" * 20, header, b'{"a":2}')
    assert not verify("t" * 20, header, b'{"a":1}')


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "email"}, "recipients"),
        ({"kind": "webhook", "url": "http://x/"}, "secret"),
        ({"kind": "chat"}, "url"),
        ({"kind": "chat", "url": "http://x/", "min_severity": "loud"}, "min_severity"),
    ],
)
def test_channel_bodies_are_checked(body, reason):
    """A channel without what its kind needs, or with an unknown severity, is refused when decoded."""
    with pytest.raises(msgspec.ValidationError, match=reason):
        msgspec.convert(body, ChannelBody)

"""The in-memory EvalContext used by tests and backtests."""

from __future__ import annotations

from rules import MISSING, EvalContext, MemoryContext, Source


def test_reads_each_part_of_the_twin() -> None:
    """value() reads reported, desired or tags; absent and null are MISSING."""
    ctx = MemoryContext(reported={"a": {"b": 1, "n": None}}, desired={"a": 2}, tags={"a": "t"})
    assert ctx.value(("a", "b"), Source.REPORTED) == 1
    assert ctx.value(("a",), Source.DESIRED) == 2
    assert ctx.value(("a",), Source.TAGS) == "t"
    assert ctx.value(("a", "n"), Source.REPORTED) is MISSING
    assert ctx.value(("a", "b", "c"), Source.REPORTED) is MISSING
    assert ctx.value(("x",), Source.DESIRED) is MISSING


def test_previous_defaults_to_current() -> None:
    """Without `before`, the previous state is the current one: nothing changed."""
    ctx = MemoryContext(reported={"a": 1}, reported_ts={"a": 5.0})
    assert (ctx.previous(("a",)), ctx.previous_reported_at(("a",))) == (1, 5.0)
    other = MemoryContext(reported={"a": 1}, before={}, reported_ts={"a": 5.0}, before_ts={})
    assert (other.previous(("a",)), other.previous_reported_at(("a",))) == (MISSING, None)


def test_reported_at_of_a_prefix_is_the_newest_under_it() -> None:
    """A path's own timestamp wins; otherwise the newest key below it; never a sibling's."""
    ctx = MemoryContext(reported_ts={"gps.lat": 10.0, "gps.lon": 12.0, "gpsx": 99.0, "soc": 1.0})
    assert ctx.reported_at(("gps",)) == 12.0
    assert ctx.reported_at(("gps", "lat")) == 10.0
    assert ctx.reported_at(("speed",)) is None


def test_connection_and_clock() -> None:
    """connected(), connected_since() and now come from the fields given."""
    ctx = MemoryContext(is_connected=True, since=100.0, now=160.0)
    assert (ctx.connected(), ctx.connected_since(), ctx.now) == (True, 100.0, 160.0)


def test_satisfies_the_protocol() -> None:
    """MemoryContext is an EvalContext (checked statically by mypy too)."""
    ctx: EvalContext = MemoryContext()
    assert ctx.connected() is None

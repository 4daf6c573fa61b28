"""Each function of the table, with explicit values and timestamps."""

from __future__ import annotations

import math

import pytest

from rules import FUNCTIONS, MISSING, Compiler, MemoryContext, compile_rule

COMPILER = Compiler()


def value(source: str, ctx: MemoryContext) -> object:
    """The raw value of an expression of any type."""
    return COMPILER.compile(source, condition=False).value(ctx)


def matches(result: object, expected: object) -> bool:
    """MISSING and booleans match only themselves; numbers and strings match by equality."""
    if expected is MISSING or isinstance(expected, bool):
        return result is expected
    return result == expected


PLAIN = MemoryContext(reported={"x": -2.5, "y": 7, "z": 3, "s": "text", "b": True})


def test_the_table_lists_exactly_the_documented_functions() -> None:
    """The function table is the whole list; nothing else can be called."""
    assert sorted(FUNCTIONS) == sorted(
        [
            "abs",
            "min",
            "max",
            "round",
            "clamp",
            "prev",
            "delta",
            "rate",
            "changed",
            "age",
            "no_data_for",
            "connected",
            "distance_m",
            "inside",
            "entered",
            "left",
        ]
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("abs(x)", 2.5),
        ("abs(y)", 7.0),
        ("abs(s)", MISSING),
        ("abs(b)", MISSING),
        ("min(x, y)", -2.5),
        ("min(y, z, 10)", 3.0),
        ("max(x, y, z)", 7.0),
        ("max(x, absent)", MISSING),
        ("round(x)", -2.0),
        ("round(3.5)", 4.0),
        ("round(2.5)", 2.0),
        ("round(3.14159, 2)", 3.14),
        ("round(1234, -2)", 1200.0),
        ("round(1.5, 0.5)", MISSING),
        ("round(1.5, 1e9)", 1.5),
        ("round(1.7e308, -308)", MISSING),
        ("round(absent, 1)", MISSING),
        ("clamp(y, 0, 5)", 5.0),
        ("clamp(x, 0, 5)", 0.0),
        ("clamp(z, 0, 5)", 3.0),
        ("clamp(z, 5, 0)", MISSING),
        ("clamp(z, absent, 5)", MISSING),
    ],
)
def test_numeric_functions(source: str, expected: object) -> None:
    """abs, min, max, round (half to even) and clamp; MISSING in, MISSING out."""
    result = value(source, PLAIN)
    assert matches(result, expected)


TEMPERATURE = MemoryContext(
    reported={"battery": {"temp_c": 58.0}, "soc": 40, "mode": "drive", "gone": None},
    before={"battery": {"temp_c": 52.0}, "soc": 40, "mode": "park", "gone": 1, "new": None},
    reported_ts={"battery.temp_c": 1_000.0, "soc": 990.0, "mode": 1_000.0},
    before_ts={"battery.temp_c": 988.0, "soc": 990.0, "mode": 900.0},
    now=1_030.0,
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("prev(battery.temp_c)", 52.0),
        ("prev(mode)", "park"),
        ("prev(absent)", MISSING),
        ("delta(battery.temp_c)", 6.0),
        ("delta(soc)", 0.0),
        ("delta(mode)", MISSING),
        ("delta(absent)", MISSING),
        ("rate(battery.temp_c)", 0.5),
        ("rate(soc)", MISSING),
        ("rate(absent)", MISSING),
        ("changed(battery.temp_c)", True),
        ("changed(soc)", False),
        ("changed(mode)", True),
        ("changed(gone)", True),
        ("changed(absent)", False),
        ("age(battery.temp_c)", 30.0),
        ("age(soc)", 40.0),
        ("age(battery)", 30.0),
        ("age(absent)", MISSING),
    ],
)
def test_functions_of_the_previous_state(source: str, expected: object) -> None:
    """prev, delta, rate, changed and age read the update's before and after, by device time."""
    result = value(source, TEMPERATURE)
    assert matches(result, expected)


def test_changed_compares_kind_as_well_as_value() -> None:
    """1 and 1.0 are the same number, but 1 and true are a change."""
    ctx = MemoryContext(reported={"a": 1, "b": 1, "c": {"k": [1]}}, before={"a": 1.0, "b": True, "c": {"k": [1]}})
    assert [value(f"changed({name})", ctx) for name in "abc"] == [False, True, False]


def test_changed_when_a_field_appears() -> None:
    """A field reported for the first time has changed."""
    ctx = MemoryContext(reported={"a": 1}, before={})
    assert value("changed(a)", ctx) is True


def test_rate_needs_time_to_have_passed() -> None:
    """Equal or reversed device timestamps give MISSING, never a division by zero."""
    same_time = MemoryContext(reported={"v": 5}, before={"v": 1}, reported_ts={"v": 10.0}, before_ts={"v": 10.0})
    backwards = MemoryContext(reported={"v": 5}, before={"v": 1}, reported_ts={"v": 10.0}, before_ts={"v": 12.0})
    no_time = MemoryContext(reported={"v": 5}, before={"v": 1})
    assert [value("rate(v)", ctx) for ctx in (same_time, backwards, no_time)] == [MISSING] * 3


def test_age_is_never_negative() -> None:
    """A device clock ahead of the hub gives an age of 0, not a negative one."""
    ctx = MemoryContext(reported={"v": 1}, reported_ts={"v": 1_100.0}, now=1_000.0)
    assert value("age(v)", ctx) == 0.0


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (MemoryContext(reported_ts={"gps.lat": 700.0, "gps.lon": 690.0}, now=1_000.0, since=100.0), 300.0),
        (MemoryContext(reported_ts={"soc": 990.0}, now=1_000.0, since=400.0), 600.0),
        (MemoryContext(reported_ts={"gps": 900.0}, now=1_000.0), 100.0),
        (MemoryContext(now=1_000.0), MISSING),
    ],
)
def test_no_data_for(ctx: MemoryContext, expected: object) -> None:
    """Seconds since the newest key under the path was reported, else since connecting."""
    result = value('no_data_for("gps")', ctx)
    assert matches(result, expected)


def test_no_data_for_in_a_rule() -> None:
    """The issue's silent-tracker rule fires after five minutes without GPS."""
    rule = compile_rule('no_data_for("gps") > 5m')
    reported = {"gps": {"lat": 1.0, "lon": 2.0}}
    quiet = MemoryContext(reported=reported, reported_ts={"gps.lat": 1_000.0}, now=1_301.0)
    recent = MemoryContext(reported=reported, reported_ts={"gps.lat": 1_000.0}, now=1_299.0)
    assert (rule.evaluate(quiet), rule.evaluate(recent)) == (True, False)


@pytest.mark.parametrize(("state", "expected"), [(True, True), (False, False), (None, MISSING)])
def test_connected(state: bool | None, expected: object) -> None:
    """connected() is the hub's view of the connection; unknown is MISSING."""
    assert value("connected()", MemoryContext(is_connected=state)) is expected


def test_distance_m_is_haversine() -> None:
    """One degree of longitude on the equator is about 111.2 km."""
    result = value("distance_m(0, 0, 0, 1)", PLAIN)
    assert isinstance(result, float)
    assert math.isclose(result, 111_195.08, abs_tol=0.01)


@pytest.mark.parametrize(
    "source",
    ["distance_m(91, 0, 0, 0)", "distance_m(0, 181, 0, 0)", "distance_m(0, 0, absent, 0)", "distance_m(s, 0, 0, 0)"],
)
def test_distance_m_of_invalid_positions_is_missing(source: str) -> None:
    """Coordinates off the map or missing give MISSING."""
    assert value(source, PLAIN) is MISSING


def test_time_functions_mark_the_rule() -> None:
    """uses_time is set exactly when a result can change with the clock alone."""
    assert compile_rule("age(soc) > 1m").uses_time
    assert compile_rule('no_data_for("gps") > 1m').uses_time
    assert compile_rule("not connected()").uses_time
    assert not compile_rule("rate(soc) > 1 and delta(soc) < 0 and changed(soc)").uses_time

"""Evaluation of operators and literals, and the one rule for missing values."""

from __future__ import annotations

import pytest

from rules import MISSING, MemoryContext, compile_rule

TWIN = MemoryContext(
    reported={
        "soc": 12,
        "speed": 42.5,
        "zero": 0,
        "charging": False,
        "locked": True,
        "name": "veh-1",
        "battery": {"temp_c": 55.0, "cells": [3.9, 4.0]},
        "nothing": None,
        "text_number": "15",
        "huge": 10**400,
    },
    desired={"charge_limit": 80},
    tags={"depot": "north", "model": "Model 3"},
)


def value(source: str, ctx: MemoryContext = TWIN) -> object:
    return compile_rule(source).value(ctx)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("soc + 3 == 15", True),
        ("soc - 20 == -8", True),
        ("soc * 2 == 24", True),
        ("soc / 8 == 1.5", True),
        ("soc % 5 == 2", True),
        ("-7 % 3 == 2", True),
        ("7 % -3 == -2", True),
        ("-soc == -12", True),
        ("0.1 + 0.2 > 0.3", True),
        ("speed > soc", True),
        ("soc >= 12 and soc <= 12", True),
        ("soc < 12 or soc > 12", False),
        ("soc == 12.0", True),
        ("soc != 13", True),
        ('name == "veh-1"', True),
        ('name != "veh-2"', True),
        ('name < "vei"', True),
        ('"b" > "a"', True),
        ("charging == false", True),
        ("locked != charging", True),
        ("true and true", True),
        ("true and false", False),
        ("false or true", True),
        ("not charging", True),
        ("not locked", False),
        ("soc in [1, 12, 30]", True),
        ("soc not in [1, 30]", True),
        ('tags.depot in ["north", "south"]', True),
        ('tags.model not in ["Model 3"]', False),
        ("locked in [true]", True),
        ("desired.charge_limit == 80", True),
        ("desired.charge_limit > soc", True),
        ('tags.depot == "north"', True),
        ("battery.temp_c > 50", True),
        ("(soc + 3) * 2 == 30", True),
        ("soc in [10 + 2]", True),
        ("soc in [speed, 12]", True),
    ],
)
def test_operators(source: str, expected: object) -> None:
    """Each operator computes what Python would on the same numbers, strings and booleans."""
    assert value(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("30s == 30", True),
        ("5m == 300", True),
        ("2h == 7200", True),
        ("1d == 86400", True),
        ("5m > 3", True),
        ("1.5h == 90m", True),
        ("1h + 30m == 5400", True),
        ("2 * 5m == 10m", True),
        ("-5m < 0", True),
    ],
)
def test_durations_are_seconds(source: str, expected: bool) -> None:
    """Durations compare and combine as numbers of seconds."""
    assert value(source) is expected


def test_bare_field_value_is_the_raw_twin_value() -> None:
    """`value` of a lone field is the twin's value; `evaluate` is true only for true."""
    assert value("locked") is True
    assert compile_rule("locked").evaluate(TWIN) is True
    assert compile_rule("soc").evaluate(TWIN) is False  # a number is not a condition at run time
    assert value("soc") == 12


class TestMissing:
    """A missing or unusable value is MISSING; a rule that depends on it does not hold."""

    @pytest.mark.parametrize(
        "source",
        [
            "absent < 15",
            "absent >= 15",
            "absent == 15",
            "absent != 15",
            "nothing == 1",
            "nothing != 1",
            'absent == "x"',
            'absent != "x"',
            "absent == true",
            "absent in [1, 2]",
            "absent not in [1, 2]",
            "absent in []",
            "not (absent < 15)",
            "not absent",
            "absent and true",
            "false or absent",
            "absent + 1 > 0",
            "-absent < 0",
            "abs(absent) >= 0",
            "max(absent, 1) >= 1",
            "desired.absent == 1",
            "tags.absent == 1",
            "battery.absent.deeper == 1",
            "soc.below_a_number == 1",
        ],
    )
    def test_anything_depending_on_a_missing_field_is_missing(self, source: str) -> None:
        """Comparisons, arithmetic, functions, `in` and `not` of MISSING are MISSING."""
        rule = compile_rule(source)
        assert rule.value(TWIN) is MISSING
        assert rule.evaluate(TWIN) is False

    @pytest.mark.parametrize(
        "source",
        [
            "text_number < 20",
            "text_number == 15",
            "text_number != 15",
            "charging == 0",
            "soc == true",
            'soc == "12"',
            "soc < name",
            "charging < locked",
            "not soc",
            "soc and true",
            "battery > 1",
            "battery == battery",
            "battery.cells == 1",
            "name + 1 > 0",
            "huge > 0",
            "huge == huge",
            "text_number in [15]",
            'soc in ["12"]',
            "soc in [name]",
        ],
    )
    def test_wrong_types_at_run_time_are_missing(self, source: str) -> None:
        """A value of the wrong type, an object, an array or an enormous int is unusable."""
        assert value(source) is MISSING

    @pytest.mark.parametrize(
        "source",
        [
            "soc / 0 == 1",
            "soc % 0 == 1",
            "soc / zero > 0",
            "1e300 * 1e300 > 0",
            "-1e300 * 1e300 < 0",
            "1e308 + 1e308 > 0",
        ],
    )
    def test_arithmetic_failures_are_missing(self, source: str) -> None:
        """Division by zero and overflow give MISSING, never an exception or infinity."""
        assert value(source) is MISSING

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("false and absent", False),
            ("absent and false", False),
            ("true or absent", True),
            ("absent or true", True),
            ("absent < 1 or soc == 12", True),
            ("absent < 1 and soc == 13", False),
        ],
    )
    def test_and_or_are_three_valued(self, source: str, expected: bool) -> None:
        """A known operand decides `and`/`or` even when the other is MISSING."""
        assert value(source) is expected

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("absent == null", True),
            ("absent != null", False),
            ("nothing == null", True),
            ("soc == null", False),
            ("soc != null", True),
            ("null == absent", True),
            ("battery == null", False),
            ("text_number == null", False),
            ("soc / 0 == null", True),
            ("abs(absent) == null", True),
            ("(absent < 1) == null", True),
            ("null == null", True),
            ("null != null", False),
            ("not (absent == null)", False),
        ],
    )
    def test_comparing_with_null_tests_for_missing(self, source: str, expected: bool) -> None:
        """`x == null` is true exactly when x is MISSING, and never itself MISSING."""
        assert value(source) is expected


def test_evaluation_never_raises_on_strange_twins() -> None:
    """Twins holding arbitrary JSON, or non-mappings where objects were expected, are just data."""
    strange = MemoryContext(
        reported={"soc": [1, 2], "battery": "not an object", "name": {"a": None}},
        desired={"charge_limit": float("nan")},
        tags={"depot": float("inf")},
    )
    for source in [
        "soc < 15",
        "battery.temp_c > 1",
        'name == "x"',
        "desired.charge_limit > 1",
        "desired.charge_limit == desired.charge_limit",
        "tags.depot > 0",
        "delta(soc) > 0",
        "changed(name)",
    ]:
        result = compile_rule(source).value(strange)
        assert result is MISSING or result is True or result is False


def test_one_compiled_rule_evaluates_many_twins() -> None:
    """A compiled rule holds no state between evaluations."""
    rule = compile_rule("soc < 15 and not charging")
    twins = [
        MemoryContext(reported={"soc": 10, "charging": False}),
        MemoryContext(reported={"soc": 10, "charging": True}),
        MemoryContext(reported={"soc": 20, "charging": False}),
        MemoryContext(reported={"charging": False}),
    ]
    assert [rule.evaluate(twin) for twin in twins] == [True, False, False, False]

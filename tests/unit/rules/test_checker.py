"""The type checker: what it accepts, what it refuses, and what it learns about a rule."""

from __future__ import annotations

import pytest

from rules import Compiler, RuleTypeError, compile_rule


@pytest.mark.parametrize(
    "source",
    [
        "soc < 15 and not charging",
        "battery.temp_c > 60 or (battery.temp_c > 50 and rate(battery.temp_c) > 0.5)",
        'left("depot-north") and speed > 5',
        "tyres.front_left.kpa < 180 and delta(tyres.front_left.kpa) < 0",
        'no_data_for("gps") > 5m',
        'speed > 120 and inside("city-center")',
        "5m > 3",
        "age(soc) + 1 > 2m",
        "charging",
        "prev(charging)",
        "prev(soc) > soc",
        "prev(mode) == mode",
        'tags.depot in ["north", "south"]',
        "soc in [1, 2.5, 5m]",
        "x in [y, 1]",
        "x == y",
        "x < y",
        '"a" < "b"',
        "true != false",
        "x == null",
        "null != round(x)",
        "min(a, b, c, d) > 0",
        "round(x, 2) == 1.5",
        "connected() and not changed(gps.lat)",
        "distance_m(gps.lat, gps.lon, 19.4, -99.1) < 500",
        'no_data_for("reported.gps") > 0',
        "desired.charge_limit != charge_limit",
    ],
)
def test_well_typed_rules_compile(source: str) -> None:
    """The issue's examples and every documented form type-check."""
    compile_rule(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("foo(1) > 0", "unknown function 'foo'"),
        ("eval(x)", "unknown function 'eval'"),
        ("abs()", "abs() takes 1 argument, got 0"),
        ("clamp(1, 2) > 0", "clamp() takes 3 arguments, got 2"),
        ("connected(x)", "connected() takes no arguments, got 1"),
        ('abs("x") > 0', "argument 1 of abs() must be a number, got a string"),
        ("max(1, true) > 0", "argument 2 of max() must be a number, got a boolean"),
        ("round(1, x == 1) > 0", "argument 2 of round() must be a number, got a boolean"),
        ("delta(soc + 1) > 0", "argument 1 of delta() must be a reported field, like soc"),
        ("rate(tags.x) > 0", "argument 1 of rate() must be a reported field, like soc"),
        ('changed("soc")', "argument 1 of changed() must be a reported field, like soc"),
        (
            'no_data_for("desired.x") > 0',
            'argument 1 of no_data_for() must be a reported field path as a string, like "gps"',
        ),
        ('no_data_for("a b") > 0', "argument 1 of no_data_for(): 'a b' is not a field path"),
        ('no_data_for("x.__class__") > 0', "argument 1 of no_data_for(): names starting with '__' are not allowed"),
        ('no_data_for("true") > 0', "argument 1 of no_data_for(): 'true' is a keyword"),
        ('inside("") ', "'' is not a zone name"),
        ("inside(1)", 'argument 1 of inside() must be a zone name as a string, like "depot-north"'),
        ('"a" + "b" == "ab"', "'+' needs a number, got a string"),
        ("-true", "'-' needs a number, got a boolean"),
        ("not 1", "'not' needs a boolean, got a number"),
        ("1 and x", "'and' needs a boolean, got a number"),
        ('x or "y"', "'or' needs a boolean, got a string"),
        ('1 == "1"', "cannot compare a number with a string using '=='"),
        ("true == 1", "cannot compare a boolean with a number using '=='"),
        ("x < true", "booleans cannot be ordered using '<'"),
        ('5m != "x"', "cannot compare a duration with a string using '!='"),
        ('x in [1, "a"]', "list items must all be of one type: a number and a string"),
        ('1 in ["a"]', "cannot compare a number with a string in this list"),
        ("x in [null]", "null can only be compared with == or !=, like x == null"),
        ("null in [1]", "null can only be compared with == or !=, like x == null"),
        ("null + 1 == 2", "null can only be compared with == or !=, like x == null"),
        ("null", "null can only be compared with == or !=, like x == null"),
        ("1 + 1", "a rule must be a condition that is true or false, got a number"),
        ('"soc"', "a rule must be a condition that is true or false, got a string"),
        ("age(soc)", "a rule must be a condition that is true or false, got a duration"),
    ],
)
def test_type_errors(source: str, message: str) -> None:
    """Unknown functions, wrong arguments and mismatched types are refused before running."""
    with pytest.raises(RuleTypeError) as caught:
        compile_rule(source)
    assert caught.value.message.startswith(message)


def test_fields_collects_every_reported_path_read() -> None:
    """fields lists reported paths read directly or through functions; desired and tags apart."""
    rule = compile_rule(
        'soc < 15 and delta(tyres.fl.kpa) < 0 and age(battery) > 1m and no_data_for("gps") > 5m '
        'and desired.charge_limit > 1 and tags.depot == "north" and prev(reported.tags) == 1'
    )
    assert rule.fields == {("soc",), ("tyres", "fl", "kpa"), ("battery",), ("gps",), ("tags",)}
    assert rule.desired_fields == {("charge_limit",)}
    assert rule.tag_fields == {("depot",)}
    assert rule.zones_used == frozenset()
    assert rule.uses_time


def test_compiled_rule_keeps_its_source() -> None:
    """The compiled rule remembers its text, for messages and the API."""
    rule = compile_rule("soc < 15")
    assert rule.source == "soc < 15"
    assert repr(rule) == "CompiledExpr('soc < 15')"


def test_value_expressions_need_condition_false() -> None:
    """The compiler can compile a non-boolean expression when asked, for displayed values."""
    expression = Compiler().compile("round(battery.temp_c, 1)", condition=False)
    assert expression.fields == {("battery", "temp_c")}


def test_known_zones_are_checked() -> None:
    """With known zones, only those may be named; zones_used lists them."""
    rule = compile_rule('inside("a") or entered("b")', zones={"a", "b", "c"})
    assert rule.zones_used == {"a", "b"}
    with pytest.raises(RuleTypeError, match="unknown zone 'd'; known zones: a, b, c"):
        compile_rule('left("d")', zones={"a", "b", "c"})

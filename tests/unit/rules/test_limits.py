"""Limits on rule size, held by the compiler, and the compiler's settings."""

from __future__ import annotations

import msgspec
import pytest

from rules import Compiler, Limits, Position, RuleConfigError, RuleSyntaxError, compile_rule


def test_defaults_are_documented_values() -> None:
    """The defaults are the ones docs/rules-language.md lists."""
    assert Limits() == Limits(
        max_source_length=4096,
        max_depth=32,
        max_nodes=500,
        max_list_length=100,
        max_path_length=16,
        max_message_length=1024,
    )


def test_source_length() -> None:
    """A rule longer than max_source_length is refused at the first character past the limit."""
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule("soc < 15 and " + "x" * 5000)
    assert caught.value.message == "rule is too long: 5013 characters, the limit is 4096"
    assert (caught.value.line, caught.value.column) == (1, 4097)
    compile_rule("soc < 15 or " + "x" * 4000)


def test_depth_by_parentheses() -> None:
    """Deep nesting is refused before it can exhaust Python's stack."""
    compile_rule("(" * 30 + "x" + ")" * 30)
    with pytest.raises(RuleSyntaxError, match="rule is nested too deeply: more than 32 levels"):
        compile_rule("(" * 40 + "x" + ")" * 40)


def test_depth_by_operator_chains() -> None:
    """A left-deep chain of operators counts as nesting too."""
    compile_rule(" + ".join(["x"] * 30) + " > 0")
    with pytest.raises(RuleSyntaxError, match="nested too deeply"):
        compile_rule(" + ".join(["x"] * 40) + " > 0")


def test_depth_by_prefix_operators() -> None:
    """`not not not ...` and `- - - ...` nest."""
    with pytest.raises(RuleSyntaxError, match="nested too deeply"):
        compile_rule("not " * 40 + "x")
    with pytest.raises(RuleSyntaxError, match="nested too deeply"):
        compile_rule("- " * 40 + "x > 0")


def test_long_and_or_chains_do_not_nest() -> None:
    """`a or b or c ...` is one node with many operands, so long alternatives are fine."""
    compile_rule(" or ".join(f"x{i} == {i}" for i in range(60)))


def test_node_count() -> None:
    """More than max_nodes parts is refused."""
    with pytest.raises(RuleSyntaxError, match="rule is too large: more than 500 parts"):
        compile_rule(" or ".join(f"x == {i}" for i in range(200)))


def test_list_length() -> None:
    """An `in` list longer than max_list_length is refused at the first extra item."""
    compile_rule(f"x in [{', '.join(map(str, range(100)))}]")
    with pytest.raises(RuleSyntaxError, match="list is too long: more than 100 items"):
        compile_rule(f"x in [{', '.join(map(str, range(101)))}]")


def test_path_length() -> None:
    """A field path of more than max_path_length names is refused at the first extra name."""
    compile_rule(".".join(["a"] * 16) + " > 1")
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(".".join(["a"] * 17) + " > 1")
    assert (caught.value.message, caught.value.column) == ("field path is too long: more than 16 names", 33)


def test_limits_belong_to_the_compiler() -> None:
    """A compiler built with tighter limits enforces them; the default one is unaffected."""
    tight = Compiler(limits=Limits(max_source_length=24, max_depth=3, max_nodes=5, max_list_length=2))
    for source, message in [
        ("soc < 15 and x or y == 10", "too long"),
        ("(((x)))", "nested too deeply"),
        ("a or b or c or d or e", "too large"),
        ("- - - - x", "nested too deeply"),
        ("x in [1,2,3]", "list is too long"),
    ]:
        with pytest.raises(RuleSyntaxError, match=message):
            tight.compile(source)
    compile_rule("soc < 15 and x or y == 10")
    assert compile_rule("x", limits=Limits(max_nodes=1)).source == "x"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_depth": 0}, "limit 'max_depth' must be 1-100, got 0"),
        ({"max_depth": 1000}, "limit 'max_depth' must be 1-100, got 1000"),
        ({"max_nodes": -1}, "limit 'max_nodes' must be 1-10000, got -1"),
        ({"max_source_length": 10**6}, "limit 'max_source_length' must be 1-65536"),
        ({"max_list_length": 0}, "limit 'max_list_length' must be 1-10000"),
    ],
)
def test_limits_are_validated(settings: dict[str, int], message: str) -> None:
    """Limits outside their ceilings are a configuration error, built in code (naming the range) or decoded."""
    with pytest.raises(RuleConfigError, match=message):
        Limits(**settings)
    name = next(iter(settings))
    with pytest.raises(msgspec.ValidationError, match=rf"Expected `int` [<>]= -?\d+ - at `\$\.{name}`"):
        msgspec.convert(settings, Limits)


def test_unknown_limit_is_refused() -> None:
    """A misspelt limit in configuration is an error, not ignored."""
    with pytest.raises(msgspec.ValidationError, match="max_dept"):
        msgspec.convert({"max_dept": 5}, Limits)


@pytest.mark.parametrize(
    ("lat", "message"),
    [
        ("desired.lat", "position 'lat' must be a reported field, got 'desired.lat'"),
        ("gps lat", "position 'lat': 'gps lat' is not a field path"),
        ("", "position 'lat': '' is not a field path"),
    ],
)
def test_position_is_validated(lat: str, message: str) -> None:
    """The position setting must name reported fields."""
    with pytest.raises(RuleConfigError, match=message):
        Position(lat=lat)

"""Golden tests: the exact text a user sees for common mistakes, caret included."""

from __future__ import annotations

import pytest

from rules import RuleSyntaxError, RuleTypeError, compile_rule

GOLDEN = [
    (
        "soc < 15 and foo(x)",
        """\
unknown function 'foo' at line 1, column 14
  soc < 15 and foo(x)
               ^""",
    ),
    (
        "soc <",
        """\
unexpected end of rule; expected a value at line 1, column 6
  soc <
       ^""",
    ),
    (
        "(soc < 15",
        """\
expected ')' to close the '(' opened at 1:1, got the end of the rule at line 1, column 10
  (soc < 15
           ^""",
    ),
    (
        "1 < soc < 5",
        """\
comparisons cannot be chained; join them with 'and', like 'a < b and b < c' at line 1, column 9
  1 < soc < 5
          ^""",
    ),
    (
        '5 < "low"',
        """\
cannot compare a number with a string using '<' at line 1, column 3
  5 < "low"
    ^""",
    ),
    (
        'battery.temp_c + "x" > 5',
        """\
'+' needs a number, got a string at line 1, column 18
  battery.temp_c + "x" > 5
                   ^""",
    ),
    (
        "abs(1, 2) > 0",
        """\
abs() takes 1 argument, got 2 at line 1, column 8
  abs(1, 2) > 0
         ^""",
    ),
    (
        "min(soc) < 5",
        """\
min() takes at least 2 arguments, got 1 at line 1, column 1
  min(soc) < 5
  ^""",
    ),
    (
        "inside(zone)",
        """\
argument 1 of inside() must be a zone name as a string, like "depot-north" at line 1, column 8
  inside(zone)
         ^""",
    ),
    (
        "soc + 1",
        """\
a rule must be a condition that is true or false, got a number at line 1, column 5
  soc + 1
      ^""",
    ),
    (
        "soc < 15 && charging",
        """\
unexpected '&&'; write 'and' at line 1, column 10
  soc < 15 && charging
           ^""",
    ),
    (
        'tags.model == "Model 3',
        """\
unterminated string; close it with the quote it opened with at line 1, column 15
  tags.model == "Model 3
                ^""",
    ),
    (
        'no_data_for("gps") > 5min',
        """\
unknown duration unit 'min' in '5min'; use s, m, h or d at line 1, column 22
  no_data_for("gps") > 5min
                       ^""",
    ),
    (
        "no_data_for(gps) > 5m",
        """\
argument 1 of no_data_for() is a path written as a string: no_data_for("gps") at line 1, column 13
  no_data_for(gps) > 5m
              ^""",
    ),
    (
        "soc < 15\n  and foo > bar(1)",
        """\
unknown function 'bar' at line 2, column 13
    and foo > bar(1)
              ^""",
    ),
    (
        "prev(5) > 1",
        """\
argument 1 of prev() must be a reported field, like soc at line 1, column 6
  prev(5) > 1
       ^""",
    ),
    (
        "charging == True",
        """\
'True' is reserved; write 'true' at line 1, column 13
  charging == True
              ^""",
    ),
    (
        "desired > 5",
        """\
'desired' alone is the whole desired document; name a key in it, like desired.charge_limit at line 1, column 1
  desired > 5
  ^""",
    ),
    (
        "soc > null",
        """\
null can only be compared with == or !=, like x == null at line 1, column 7
  soc > null
        ^""",
    ),
    (
        "charging < true",
        """\
booleans cannot be ordered using '<' at line 1, column 10
  charging < true
           ^""",
    ),
    (
        'tags.depot in ["north", 5]',
        """\
list items must all be of one type: a string and a number at line 1, column 25
  tags.depot in ["north", 5]
                          ^""",
    ),
    (
        "soc.max(1)",
        """\
'soc.max' is a field, not a function; there are no methods at line 1, column 8
  soc.max(1)
         ^""",
    ),
    (
        "soc[0] > 1",
        """\
unexpected '['; there is no indexing at line 1, column 4
  soc[0] > 1
     ^""",
    ),
    (
        "x = 5",
        """\
unexpected '='; write '==' to compare at line 1, column 3
  x = 5
    ^""",
    ),
    (
        "x in 5",
        """\
'in' needs a list on its right, like x in [1, 2] at line 1, column 6
  x in 5
       ^""",
    ),
    (
        "soc < 15 speed",
        """\
expected an operator or the end of the rule, got name 'speed' at line 1, column 10
  soc < 15 speed
           ^""",
    ),
    (
        "\tsoc < 'a' + 1",
        """\
'+' needs a number, got a string at line 1, column 8
  \tsoc < 'a' + 1
  \t      ^""",
    ),
]


@pytest.mark.parametrize(("source", "expected"), GOLDEN, ids=[source for source, _ in GOLDEN])
def test_error_text_is_exact(source: str, expected: str) -> None:
    """Each mistake gets its message, position, source line and caret, exactly."""
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source)
    assert str(caught.value) == expected


def test_unknown_zone_lists_known_ones() -> None:
    """With the known zone names given, an unknown zone is an error that names them."""
    with pytest.raises(RuleTypeError) as caught:
        compile_rule('inside("nowhere")', zones=["depot-north", "city-center"])
    assert str(caught.value) == (
        "unknown zone 'nowhere'; known zones: city-center, depot-north at line 1, column 8\n"
        '  inside("nowhere")\n'
        "         ^"
    )


def test_unknown_zone_when_none_are_defined() -> None:
    """An empty collection of known zones refuses every zone name."""
    with pytest.raises(RuleTypeError, match="no zones are defined"):
        compile_rule('inside("depot")', zones=[])


def test_type_errors_are_syntax_errors() -> None:
    """Callers catch one type: a type error is a RuleSyntaxError with a position."""
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule("abs() > 1")
    error = caught.value
    assert isinstance(error, RuleTypeError)
    assert (error.message, error.line, error.column, error.source) == (
        "abs() takes 1 argument, got 0",
        1,
        1,
        "abs() > 1",
    )


def test_error_as_dict_for_the_api() -> None:
    """as_dict gives the message, the position and the excerpt with its caret."""
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule("soc <")
    assert caught.value.as_dict() == {
        "message": "unexpected end of rule; expected a value",
        "line": 1,
        "column": 6,
        "excerpt": "soc <\n     ^",
    }


def test_long_line_is_shown_around_the_caret() -> None:
    """A long line is cut to a window around the column, marked with '...'."""
    source = "soc > 1 and " * 20 + "foo(1)"
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source)
    _, shown, caret = str(caught.value).split("\n")
    assert shown.startswith("  ...")
    assert shown[caret.index("^") :].startswith("foo(1)")


def test_invisible_characters_are_shown_as_question_marks() -> None:
    """Control and bidi characters never reach the reader's terminal; the caret stays aligned."""
    source = 'tags.x == "\u202e" or foo(1)'
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source)
    text = str(caught.value)
    assert "\u202e" not in text
    assert "U+202E" in text

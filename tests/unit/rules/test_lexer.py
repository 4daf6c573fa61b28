"""The lexer: tokens, literal values and positions."""

from __future__ import annotations

import pytest

from rules import RuleSyntaxError
from rules.lexer import TokenKind, tokenize


def kinds_and_values(source: str) -> list[tuple[TokenKind, object]]:
    return [(token.kind, token.value if token.value is not None else token.text) for token in tokenize(source)]


def test_tokens_of_a_typical_rule() -> None:
    """Names, operators, keywords and numbers come out in order, ending with END."""
    assert kinds_and_values("soc < 15 and not charging") == [
        (TokenKind.NAME, "soc"),
        (TokenKind.OPERATOR, "<"),
        (TokenKind.NUMBER, 15.0),
        (TokenKind.KEYWORD, "and"),
        (TokenKind.KEYWORD, "not"),
        (TokenKind.NAME, "charging"),
        (TokenKind.END, ""),
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), ("1.5h", 5400.0), ("0s", 0.0)],
)
def test_duration_literals_are_seconds(text: str, seconds: float) -> None:
    """A number directly followed by s, m, h or d is a duration in seconds."""
    (token, _end) = tokenize(text)
    assert (token.kind, token.value, token.text) == (TokenKind.DURATION, seconds, text)


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0.0), ("42", 42.0), ("3.25", 3.25), ("1e3", 1000.0), ("2.5E-1", 0.25)]
)
def test_number_literals(text: str, value: float) -> None:
    """Integers, decimals and exponents are numbers (floats)."""
    (token, _end) = tokenize(text)
    assert (token.kind, token.value) == (TokenKind.NUMBER, value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"north"', "north"),
        ("'Model 3'", "Model 3"),
        (r'"a\"b"', 'a"b'),
        (r"'it\'s'", "it's"),
        (r'"back\\slash"', "back\\slash"),
        (r'"tab\tnew\nline"', "tab\tnew\nline"),
        ('"zürich"', "zürich"),
        ('""', ""),
    ],
)
def test_string_literals_and_escapes(text: str, value: str) -> None:
    """Either quote works; only the documented escapes are decoded; non-ASCII is fine in strings."""
    (token, _end) = tokenize(text)
    assert (token.kind, token.value) == (TokenKind.STRING, value)


def test_two_character_operators_win_over_one() -> None:
    """`<=`, `>=`, `==`, `!=` are single tokens."""
    texts = [token.text for token in tokenize("a<=b>=c==d!=e<f>g")]
    assert texts == ["a", "<=", "b", ">=", "c", "==", "d", "!=", "e", "<", "f", ">", "g", ""]


def test_positions_count_lines_and_columns_from_one() -> None:
    """Each token knows its line and column; newlines start a new line at column 1."""
    tokens = tokenize("soc < 15\n  and\tx")
    assert [(token.text, token.line, token.column) for token in tokens] == [
        ("soc", 1, 1),
        ("<", 1, 5),
        ("15", 1, 7),
        ("and", 2, 3),
        ("x", 2, 7),
        ("", 2, 8),
    ]


def test_comments_run_to_the_end_of_the_line() -> None:
    """`#` starts a comment; the next line is read again."""
    texts = [token.text for token in tokenize("soc < 15 # low battery\nand x")]
    assert texts == ["soc", "<", "15", "and", "x", ""]


def test_keywords_and_names() -> None:
    """The seven keywords are keywords; other words (including function names) are names."""
    tokens = tokenize("and or not in true false null abs gps")
    assert [token.kind for token in tokens[:7]] == [TokenKind.KEYWORD] * 7
    assert [token.kind for token in tokens[7:9]] == [TokenKind.NAME] * 2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("5min", "unknown duration unit 'min' in '5min'; use s, m, h or d"),
        ("5ms", "unknown duration unit 'ms' in '5ms'; use s, m, h or d"),
        ("0x1F", "invalid number '0x1F'"),
        ("1_000", "invalid number '1_000'"),
        ("9007199254740993", "number '9007199254740993' is out of range (integers up to 2**53)"),
        ("1e400", "number '1e400' is out of range"),
        ('"abc', "unterminated string; close it with the quote it opened with"),
        ('"ab\ncd"', "unterminated string; close it with the quote it opened with"),
        (r'"\q"', "unknown escape '\\q' in string; use \\\\, \\\", \\', \\n or \\t"),
        ('"a\x00b"', "character U+0000 is not allowed in a string"),
        ("a || b", "unexpected '||'; write 'or'"),
        ("!a", "unexpected '!'; write 'not'"),
        ("a ; b", "unexpected character ';'"),
        ("a @ b", "unexpected character '@'"),
        ("naïve", "unexpected character 'ï' (U+00EF); rules are written in ASCII outside strings"),
        ("None", "'None' is reserved; write 'null'"),
        ("x is null", "'is' is reserved; write '==' or '!='"),
    ],
)
def test_lexical_errors(source: str, message: str) -> None:
    """Bad characters and literals are refused with a specific message."""
    with pytest.raises(RuleSyntaxError) as caught:
        tokenize(source)
    assert caught.value.message == message

"""Turns the text of a rule into tokens, each with its line and column (both from 1).

Only ASCII is allowed outside string literals, so look-alike letters, invisible
characters and bidi overrides are refused where they could change what a rule means.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Final

from rules.errors import RuleSyntaxError, describe_char, quote
from rules.paths import KEYWORDS, NAME, name_problem

DURATION_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# Integer literals beyond this are refused: they could not be told apart as floats.
_MAX_EXACT = 2**53
_MAX_EXACT_DIGITS = len(str(_MAX_EXACT))

_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORD_TAIL: Final = re.compile(r"[A-Za-z0-9_]*")
_OPERATORS_2: Final = frozenset({"==", "!=", "<=", ">="})
_OPERATORS_1: Final = frozenset("+-*/%<>()[],.")
_ESCAPES: Final = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}
_WHITESPACE: Final = frozenset(" \t\r\n")
_HINTS: Final = {
    "&&": "write 'and'",
    "||": "write 'or'",
    "&": "write 'and'",
    "|": "write 'or'",
    "!": "write 'not'",
    "=": "write '==' to compare",
}


class TokenKind(enum.Enum):
    NUMBER = "number"
    DURATION = "duration"
    STRING = "string"
    NAME = "name"
    KEYWORD = "keyword"
    OPERATOR = "operator"
    END = "end of rule"


@dataclass(frozen=True, slots=True)
class Token:
    """One token. `value` is the number (seconds for a duration) or the decoded string."""

    kind: TokenKind
    text: str
    line: int
    column: int
    value: float | str | None = None

    def describe(self) -> str:
        """The token as an error message names it."""
        if self.kind is TokenKind.END:
            return "the end of the rule"
        if self.kind in (TokenKind.OPERATOR, TokenKind.KEYWORD):
            return f"'{self.text}'"
        return f"{self.kind.value} {quote(self.text)}"


def tokenize(source: str) -> list[Token]:
    """The tokens of `source`, ending with an END token. Raises `RuleSyntaxError`."""
    return _Lexer(source).run()


class _Lexer:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        source = self.source
        while self.pos < len(source):
            char = source[self.pos]
            if char in _WHITESPACE:
                if char == "\n":
                    self.line += 1
                    self.line_start = self.pos + 1
                self.pos += 1
            elif char == "#":
                self._comment()
            elif (number := _NUMBER.match(source, self.pos)) is not None:
                self._number(number)
            elif (name := NAME.match(source, self.pos)) is not None:
                self._name(name)
            elif char in "\"'":
                self._string(char)
            else:
                self._operator(char)
        self.tokens.append(Token(TokenKind.END, "", self.line, self._column()))
        return self.tokens

    def _column(self, pos: int | None = None) -> int:
        return (self.pos if pos is None else pos) - self.line_start + 1

    def _error(self, message: str, pos: int | None = None) -> RuleSyntaxError:
        return RuleSyntaxError(message, self.line, self._column(pos), self.source)

    def _add(self, kind: TokenKind, end: int, value: float | str | None = None) -> None:
        text = self.source[self.pos : end]
        self.tokens.append(Token(kind, text, self.line, self._column(), value))
        self.pos = end

    def _comment(self) -> None:
        end = self.source.find("\n", self.pos)
        end = len(self.source) if end < 0 else end
        for pos in range(self.pos, end):
            char = self.source[pos]
            if not (char.isprintable() or char in "\t\r"):
                raise self._error(f"character {describe_char(char)} is not allowed in a comment", pos)
        self.pos = end

    def _number(self, match: re.Match[str]) -> None:
        digits = match.group()
        tail = _WORD_TAIL.match(self.source, match.end())
        suffix = tail.group() if tail is not None else ""
        if not suffix:
            self._add(TokenKind.NUMBER, match.end(), self._value(digits))
            return
        unit = DURATION_UNITS.get(suffix)
        if unit is None:
            text = digits + suffix
            if suffix[0].isalpha() and suffix.isalpha():
                message = f"unknown duration unit {quote(suffix)} in {quote(text)}; use s, m, h or d"
            else:
                message = f"invalid number {quote(text)}"
            raise self._error(message)
        seconds = self._value(digits) * unit
        if not math.isfinite(seconds):
            raise self._error(f"duration {quote(digits + suffix)} is out of range")
        self._add(TokenKind.DURATION, match.end() + len(suffix), seconds)

    def _value(self, digits: str) -> float:
        if digits.isdigit() and (len(digits) > _MAX_EXACT_DIGITS or int(digits) > _MAX_EXACT):
            raise self._error(f"number {quote(digits)} is out of range (integers up to 2**53)")
        value = float(digits)
        if not math.isfinite(value):
            raise self._error(f"number {quote(digits)} is out of range")
        return value

    def _name(self, match: re.Match[str]) -> None:
        word = match.group()
        if word in KEYWORDS:
            self._add(TokenKind.KEYWORD, match.end())
            return
        problem = name_problem(word)
        if problem is not None:
            raise self._error(problem)
        self._add(TokenKind.NAME, match.end())

    def _string(self, quote_char: str) -> None:
        source = self.source
        pos = self.pos + 1
        chars: list[str] = []
        while True:
            if pos >= len(source) or source[pos] == "\n":
                raise self._error("unterminated string; close it with the quote it opened with")
            char = source[pos]
            if char == quote_char:
                break
            if char == "\\":
                escape = source[pos + 1 : pos + 2]
                decoded = _ESCAPES.get(escape)
                if decoded is None:
                    if escape in ("", "\n"):
                        raise self._error("unterminated string; close it with the quote it opened with")
                    shown = (
                        f"'\\{escape}'"
                        if escape.isascii() and escape.isprintable()
                        else f"'\\' followed by {describe_char(escape)}"
                    )
                    raise self._error(f"unknown escape {shown} in string; use \\\\, \\\", \\', \\n or \\t", pos)
                chars.append(decoded)
                pos += 2
            elif not char.isprintable():
                raise self._error(f"character {describe_char(char)} is not allowed in a string", pos)
            else:
                chars.append(char)
                pos += 1
        self._add(TokenKind.STRING, pos + 1, "".join(chars))

    def _operator(self, char: str) -> None:
        pair = self.source[self.pos : self.pos + 2]
        if pair in _OPERATORS_2:
            self._add(TokenKind.OPERATOR, self.pos + 2)
            return
        if pair in _HINTS:
            raise self._error(f"unexpected '{pair}'; {_HINTS[pair]}")
        if char in _OPERATORS_1:
            self._add(TokenKind.OPERATOR, self.pos + 1)
            return
        if char in _HINTS:
            raise self._error(f"unexpected '{char}'; {_HINTS[char]}")
        if not char.isascii():
            raise self._error(f"unexpected character {describe_char(char)}; rules are written in ASCII outside strings")
        raise self._error(f"unexpected character {describe_char(char)}")

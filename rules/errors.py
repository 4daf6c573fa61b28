"""The errors of the rules package, and how a rule error shows where it is.

`RuleSyntaxError` carries the line and column of the problem and renders the
offending source line with a caret under it, so the same text works in a terminal,
a log line and an HTTP problem document.
"""

from __future__ import annotations

from kernel import FleethubError

# How much of a long source line an error shows around the caret.
_EXCERPT_WIDTH = 80
_ELLIPSIS = "..."


class RuleError(FleethubError):
    """A rule, a zone, a message template or a rules setting was refused."""


class RuleConfigError(RuleError, ValueError):
    """A zone, a limit or a compiler setting is invalid.

    It is also a `ValueError`, so msgspec reports it as a validation error with the
    offending path when the value is decoded from configuration or a request body.
    """


class RuleSyntaxError(RuleError):
    """The text of a rule or message template is not valid; names where and why.

    `str()` gives the message, the source line and a caret under the column:

        unknown function 'foo' at line 1, column 14
          soc < 15 and foo(x)
                       ^
    """

    def __init__(self, message: str, line: int, column: int, source: str) -> None:
        super().__init__(message, line, column, source)
        self.message = message
        self.line = line
        self.column = column
        self.source = source

    def __str__(self) -> str:
        shown, caret = excerpt(self.source, self.line, self.column)
        return f"{self.message} at line {self.line}, column {self.column}\n  {shown}\n  {caret}"

    def as_dict(self) -> dict[str, str | int]:
        """The error as plain data, for an API response."""
        shown, caret = excerpt(self.source, self.line, self.column)
        return {
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "excerpt": f"{shown}\n{caret}",
        }


class RuleTypeError(RuleSyntaxError):
    """The rule parses but does not type-check (unknown function, wrong argument, ...)."""


def excerpt(source: str, line: int, column: int) -> tuple[str, str]:
    """The source line (or a window of it) and a caret line pointing at `column`.

    Characters a terminal would not show as themselves (control characters, bidi
    overrides, zero-width marks) are replaced by '?', one for one, so that the caret
    stays aligned and the error text cannot rewrite the reader's terminal.
    """
    lines = source.split("\n")
    text = lines[line - 1] if 1 <= line <= len(lines) else ""
    text = text.removesuffix("\r")
    index = min(max(column - 1, 0), len(text))
    start = 0
    if len(text) > _EXCERPT_WIDTH:
        start = max(0, min(index - _EXCERPT_WIDTH // 2, len(text) - _EXCERPT_WIDTH))
    end = start + _EXCERPT_WIDTH
    shown = _printable(text[start:end])
    before = _printable(text[start:index])
    pad = "".join("\t" if char == "\t" else " " for char in before)
    if start > 0:
        shown = _ELLIPSIS + shown
        pad = " " * len(_ELLIPSIS) + pad
    if end < len(text):
        shown += _ELLIPSIS
    return shown, pad + "^"


def quote(text: str, limit: int = 40) -> str:
    """`text` in single quotes for an error message, escaped and shortened."""
    if len(text) > limit:
        text = text[:limit] + _ELLIPSIS
    escaped = "".join(char if char.isprintable() and char not in "'\\" else _escape(char) for char in text)
    return f"'{escaped}'"


def describe_char(char: str) -> str:
    """A character for an error message: 'x' when printable ASCII, else its code point."""
    code = f"U+{ord(char):04X}"
    if char.isascii() and char.isprintable():
        return f"'{char}'"
    if char.isprintable():
        return f"'{char}' ({code})"
    return code


def _escape(char: str) -> str:
    if char in "'\\":
        return "\\" + char
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() or char == "\t" else "?" for char in text)

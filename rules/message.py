"""Alert message templates: text with `{field.path}` placeholders, checked when the rule is saved.

    Battery at {battery.temp_c} C on {tags.depot} (limit {desired.temp_limit})

A placeholder is a field path exactly as a rule writes it; `{{` and `}}` are
literal braces. There are no format specs or expressions, and the template is never
given to `str.format`: it is parsed here, once. A missing value renders as `?`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from rules.context import MISSING, EvalContext, Path, Source
from rules.errors import RuleSyntaxError, quote
from rules.paths import parse_path
from rules.settings import Limits

UNKNOWN: Final = "?"
MAX_VALUE_LENGTH: Final = 200
"""Characters of one rendered value; longer values are cut and end in '...'."""

# Floats that are whole numbers below this render without a decimal point.
_WHOLE_LIMIT = 1e15
_DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One `{...}`: `key` is its text as written, which `render_values` looks up."""

    key: str
    source: Source
    path: Path


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """A parsed template: literal text and placeholders, in order."""

    template: str
    parts: tuple[str | Placeholder, ...]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(part for part in self.parts if isinstance(part, Placeholder))

    @property
    def fields(self) -> frozenset[Path]:
        """The reported paths the message shows."""
        return frozenset(part.path for part in self.placeholders if part.source is Source.REPORTED)

    def collect(self, ctx: EvalContext) -> dict[str, object]:
        """The placeholders' current values from a twin, keyed by placeholder text."""
        values: dict[str, object] = {}
        for part in self.placeholders:
            value = ctx.value(part.path, part.source)
            values[part.key] = MISSING if value is None else value
        return values

    def render(self, ctx: EvalContext) -> str:
        """The message with the twin's current values."""
        return self.render_values(self.collect(ctx))

    def render_values(self, values: Mapping[str, object]) -> str:
        """The message with values keyed by placeholder text; absent keys render as '?'."""
        return "".join(
            part if isinstance(part, str) else format_value(values.get(part.key, MISSING)) for part in self.parts
        )


def parse_message(template: str, *, limits: Limits | None = None) -> MessageTemplate:
    """Parse and check a template. Raises `RuleSyntaxError` pointing at the bad placeholder."""
    limits = limits or _DEFAULT_LIMITS
    if len(template) > limits.max_message_length:
        raise _error(
            f"message is too long: {len(template)} characters, the limit is {limits.max_message_length}",
            template,
            limits.max_message_length,
        )
    parts: list[str | Placeholder] = []
    text: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        pair = template[index : index + 2]
        if pair in ("{{", "}}"):
            text.append(char)
            index += 2
        elif char == "}":
            raise _error("single '}' in message; write '}}' for a literal brace", template, index)
        elif char == "{":
            end = template.find("}", index)
            if end < 0:
                raise _error("unclosed '{' in message; write '{{' for a literal brace", template, index)
            if text:
                parts.append("".join(text))
                text.clear()
            parts.append(_placeholder(template, index, end))
            index = end + 1
        else:
            text.append(char)
            index += 1
    if text:
        parts.append("".join(text))
    return MessageTemplate(template, tuple(parts))


def render_message(template: str, values: Mapping[str, object]) -> str:
    """Render `template` with `values` keyed by placeholder text. Raises `RuleSyntaxError`."""
    return parse_message(template).render_values(values)


def format_value(value: object) -> str:
    """One value as a message shows it: JSON-like, `?` when missing, never very long."""
    if value is MISSING or value is None:
        return UNKNOWN
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is float:
        if not math.isfinite(value):
            return UNKNOWN
        text = str(int(value)) if value.is_integer() and abs(value) < _WHOLE_LIMIT else repr(value)
    elif type(value) is str:
        text = "".join(char if char.isprintable() else " " for char in value)
    else:
        try:
            text = msgspec.json.encode(value).decode()
        except (TypeError, ValueError, OverflowError):
            return UNKNOWN
    if len(text) > MAX_VALUE_LENGTH:
        text = text[:MAX_VALUE_LENGTH] + "..."
    return text


def _placeholder(template: str, start: int, end: int) -> Placeholder:
    key = template[start + 1 : end]
    if not key:
        raise _error("empty placeholder '{}'; name a field, like {soc}", template, start)
    if ":" in key or "!" in key:
        raise _error(
            f"placeholder {quote(key)} has a format spec; write only a field path, like {{soc}}", template, start
        )
    try:
        source, path = parse_path(key)
    except ValueError as exc:
        raise _error(f"invalid placeholder: {exc}", template, start) from None
    return Placeholder(key, source, path)


def _error(message: str, template: str, index: int) -> RuleSyntaxError:
    line = template.count("\n", 0, index) + 1
    column = index - (template.rfind("\n", 0, index) + 1) + 1
    return RuleSyntaxError(message, line, column, template)

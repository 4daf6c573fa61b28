"""Rule definitions: what an operator writes, and the compiled form the engine evaluates.

A definition is data (a msgspec Struct, strict), loaded from a TOML file or an API
body and persisted as JSON. Compiling it checks every expression and the message
template at once and reports every problem, each with its line and column.

```toml
[rules.battery-hot]
when = "battery.temp_c > 60"
for = "30s"
clear_when = "battery.temp_c < 50"
severity = "critical"
message = "Battery at {battery.temp_c} C"
selector = {fleet = "default", tags = {depot = "north"}}
cooldown = "5m"
```
"""

from __future__ import annotations

import enum
import math
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Final

import msgspec

from rules.compiler import CompiledExpr, Compiler
from rules.context import Path
from rules.errors import RuleConfigError, RuleError, RuleSyntaxError, quote
from rules.message import MessageTemplate
from rules.zones import ZoneSet
from twin import VehicleSelector

RULE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_DURATION_S: Final = 366 * 86400.0

Duration = float | str
"""Seconds as a number, or text with a unit: "30s", "5m", "2h", "1d"."""


class Severity(enum.Enum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"


def parse_duration(value: Duration | None, name: str) -> float:
    """A duration setting in seconds; None is 0. Raises `RuleConfigError` naming the setting."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise RuleConfigError(f"'{name}' must be a duration like \"30s\" or a number of seconds, got {value}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(value)
        if match is None:
            raise RuleConfigError(f'\'{name}\' must be a duration like "30s", "5m" or "2h", got {quote(value)}')
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_DURATION_S):
        raise RuleConfigError(f"'{name}' must be 0 to 366 days, got {value}")
    return seconds


class RuleDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One rule as an operator writes it. `name` is also a segment of its alert topics."""

    name: str
    when: str
    severity: Severity = Severity.WARNING
    message: str = ""
    for_: Duration | None = msgspec.field(default=None, name="for")
    clear_when: str | None = None
    clear_for: Duration | None = None
    selector: VehicleSelector | None = None
    cooldown: Duration | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if not RULE_NAME.fullmatch(self.name):
            raise RuleConfigError(f"rule name {quote(self.name)} must be 1-64 letters, digits, '_', '.' or '-'")
        parse_duration(self.for_, "for")
        parse_duration(self.clear_for, "clear_for")
        parse_duration(self.cooldown, "cooldown")


class RuleBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A definition without its name, as `PUT /api/v1/rules/{name}` and a TOML table carry it."""

    when: str
    severity: Severity = Severity.WARNING
    message: str = ""
    for_: Duration | None = msgspec.field(default=None, name="for")
    clear_when: str | None = None
    clear_for: Duration | None = None
    selector: VehicleSelector | None = None
    cooldown: Duration | None = None
    enabled: bool = True

    def named(self, name: str) -> RuleDefinition:
        """The full definition. Raises `RuleConfigError` for a bad name or duration."""
        return RuleDefinition(name=name, **msgspec.structs.asdict(self))


class CompileProblem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One problem in one part of a definition (`when`, `clear_when`, `message`, ...)."""

    field: str
    message: str
    line: int | None = None
    column: int | None = None
    excerpt: str | None = None


class RuleInvalid(RuleError):
    """A definition does not compile; `problems` lists every reason, with positions."""

    def __init__(self, name: str, problems: list[CompileProblem]) -> None:
        super().__init__(f"rule {quote(name)} is invalid: " + "; ".join(f"{p.field}: {p.message}" for p in problems))
        self.name = name
        self.problems = problems


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A definition with its expressions compiled, ready for the engine."""

    definition: RuleDefinition
    when: CompiledExpr
    clear_when: CompiledExpr | None
    message: MessageTemplate
    for_s: float
    clear_for_s: float
    cooldown_s: float
    # The outcome can change with time alone (`age`, `no_data_for`, `connected`).
    uses_time: bool

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def fields(self) -> frozenset[Path]:
        """Reported paths whose change can change the outcome."""
        clear = self.clear_when.fields if self.clear_when else frozenset()
        return self.when.fields | clear

    @property
    def desired_fields(self) -> frozenset[Path]:
        clear = self.clear_when.desired_fields if self.clear_when else frozenset()
        return self.when.desired_fields | clear

    @property
    def tag_fields(self) -> frozenset[Path]:
        clear = self.clear_when.tag_fields if self.clear_when else frozenset()
        return self.when.tag_fields | clear


def _problem(field: str, exc: RuleSyntaxError) -> CompileProblem:
    data = exc.as_dict()
    return CompileProblem(field, exc.message, exc.line, exc.column, str(data["excerpt"]))


def compile_definition(
    definition: RuleDefinition, compiler: Compiler, *, zones: Collection[str] | None = None
) -> CompiledRule:
    """Compile every part of a definition; raises `RuleInvalid` listing all problems."""
    problems: list[CompileProblem] = []
    when = clear = message = None
    try:
        when = compiler.compile(definition.when, zones=zones)
    except RuleSyntaxError as exc:
        problems.append(_problem("when", exc))
    if definition.clear_when is not None:
        try:
            clear = compiler.compile(definition.clear_when, zones=zones)
        except RuleSyntaxError as exc:
            problems.append(_problem("clear_when", exc))
    try:
        message = compiler.compile_message(definition.message or f"{definition.name}")
    except RuleSyntaxError as exc:
        problems.append(_problem("message", exc))
    if problems or when is None or message is None:
        raise RuleInvalid(definition.name, problems)
    return CompiledRule(
        definition,
        when,
        clear,
        message,
        parse_duration(definition.for_, "for"),
        parse_duration(definition.clear_for, "clear_for"),
        parse_duration(definition.cooldown, "cooldown"),
        when.uses_time or (clear is not None and clear.uses_time),
    )


class RulesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A rules TOML file: `[rules.<name>]` tables and optional `[zones.<name>]` tables."""

    rules: dict[str, RuleBody] = msgspec.field(default_factory=dict)
    zones: dict[str, Any] = msgspec.field(default_factory=dict)


def parse_rules_toml(text: str, *, origin: str = "rules file") -> tuple[list[RuleDefinition], ZoneSet]:
    """Definitions and zones from TOML text. Raises `RuleConfigError` naming the place."""
    try:
        raw = tomllib.loads(text)
        parsed = msgspec.convert(raw, RulesFile)
        definitions = [body.named(name) for name, body in parsed.rules.items()]
        zones = ZoneSet.from_data(parsed.zones)
    except tomllib.TOMLDecodeError as exc:
        raise RuleConfigError(f"{origin} is not valid TOML: {exc}") from None
    except (msgspec.ValidationError, RuleConfigError) as exc:
        raise RuleConfigError(f"{origin}: {exc}") from None
    return definitions, zones


def load_rules_file(path: str | FsPath) -> tuple[list[RuleDefinition], ZoneSet]:
    """Definitions and zones from a TOML file (see `parse_rules_toml`)."""
    file = FsPath(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleConfigError(f"cannot read rules file {file}: {exc.strerror or exc}") from None
    return parse_rules_toml(text, origin=f"rules file {file}")

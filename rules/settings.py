"""Settings of the rules compiler: how large a rule may be, and where a vehicle's position is.

Both are msgspec Structs so that they load from the settings file like every other
setting; both validate themselves on construction and on decoding.
"""

from __future__ import annotations

import msgspec

from rules.context import Path, Source
from rules.errors import RuleConfigError
from rules.paths import parse_path

# Hard ceilings on the limits themselves. The compiler, the checker and the
# evaluator recurse once per level of nesting, so depth must stay far below
# Python's recursion limit whatever an operator configures.
_CEILINGS = {
    "max_source_length": 65_536,
    "max_depth": 100,
    "max_nodes": 10_000,
    "max_list_length": 10_000,
    "max_path_length": 64,
    "max_message_length": 65_536,
}


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How large a rule may be; exceeding any limit is a `RuleSyntaxError`.

    - `max_source_length`: characters in a rule's text.
    - `max_depth`: nesting levels; each operator, call, list and parenthesis
      opens one.
    - `max_nodes`: values, names, operators and calls in a rule, counted after
      parsing.
    - `max_list_length`: items in one `in [...]` list.
    - `max_path_length`: names in one field path (`battery.temp_c` has two).
    - `max_message_length`: characters in a message template.
    """

    max_source_length: int = 4096
    max_depth: int = 32
    max_nodes: int = 500
    max_list_length: int = 100
    max_path_length: int = 16
    max_message_length: int = 1024

    def __post_init__(self) -> None:
        for name, ceiling in _CEILINGS.items():
            value = getattr(self, name)
            if not 1 <= value <= ceiling:
                raise RuleConfigError(f"limit '{name}' must be 1-{ceiling}, got {value}")


class Position(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The reported fields holding a vehicle's latitude and longitude, in degrees.

    `inside`, `entered` and `left` read these. Both must be reported paths.
    """

    lat: str = "gps.lat"
    lon: str = "gps.lon"

    def __post_init__(self) -> None:
        self.paths()

    def paths(self) -> tuple[Path, Path]:
        """The latitude and longitude paths, validated."""
        return _reported(self.lat, "lat"), _reported(self.lon, "lon")


def _reported(text: str, name: str) -> Path:
    try:
        source, path = parse_path(text)
    except ValueError as exc:
        raise RuleConfigError(f"position '{name}': {exc}") from None
    if source is not Source.REPORTED:
        raise RuleConfigError(f"position '{name}' must be a reported field, got '{text}'")
    return path

"""Settings of the rules compiler: how large a rule may be, and where a vehicle's position is.

Both are msgspec Structs so that they load from the settings file like every other
setting; both validate themselves on construction and on decoding.
"""

from __future__ import annotations

import functools
import typing
from typing import Annotated

import msgspec
from msgspec import Meta

from rules.context import Path, Source
from rules.errors import RuleConfigError
from rules.paths import parse_path


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How large a rule may be; exceeding any limit is a `RuleSyntaxError`.

    Each limit has a hard ceiling of its own: the compiler, the checker and the
    evaluator recurse once per level of nesting, so depth must stay far below
    Python's recursion limit whatever an operator configures.
    """

    max_source_length: Annotated[int, Meta(ge=1, le=65_536, description="Characters in a rule's text.")] = 4096
    max_depth: Annotated[
        int,
        Meta(ge=1, le=100, description="Nesting levels; each operator, call, list and parenthesis opens one."),
    ] = 32
    max_nodes: Annotated[
        int,
        Meta(ge=1, le=10_000, description="Values, names, operators and calls in a rule, counted after parsing."),
    ] = 500
    max_list_length: Annotated[int, Meta(ge=1, le=10_000, description="Items in one `in [...]` list.")] = 100
    max_path_length: Annotated[
        int, Meta(ge=1, le=64, description="Names in one field path (`battery.temp_c` has two).")
    ] = 16
    max_message_length: Annotated[int, Meta(ge=1, le=65_536, description="Characters in a message template.")] = 1024

    def __post_init__(self) -> None:
        # Decoding checks the declared bounds; a Limits built in code does not, so check them here too.
        for name, (low, high) in _bounds().items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise RuleConfigError(f"limit '{name}' must be {low}-{high}, got {value}")


@functools.cache
def _bounds() -> dict[str, tuple[float, float]]:
    """Each limit's declared range, read from its field."""
    hints = typing.get_type_hints(Limits, include_extras=True)
    return {
        name: (meta.ge, meta.le)
        for name in Limits.__struct_fields__
        for meta in hints[name].__metadata__
        if isinstance(meta, Meta) and meta.ge is not None and meta.le is not None
    }


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

"""The static types of the language and the table of functions a rule may call.

The table denies by default: a call to any name not listed here is a check-time
error. Each entry says what its arguments must be and what it returns; the
compiler (`rules.builtins`) and the reference interpreter implement them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Type(enum.Enum):
    """Static type of an expression. Fields are ANY: their type is known only at run time."""

    NUMBER = "number"
    DURATION = "duration"
    STRING = "string"
    BOOL = "boolean"
    NULL = "null"
    ANY = "any"

    @property
    def numeric(self) -> bool:
        """Whether a value of this type may be used as a number (durations are seconds)."""
        return self in (Type.NUMBER, Type.DURATION, Type.ANY)


class Param(enum.Enum):
    """What one argument must be."""

    NUMBER = "a number"
    FIELD = "a reported field, like soc"
    PATH = 'a reported field path as a string, like "gps"'
    ZONE = 'a zone name as a string, like "depot-north"'


@dataclass(frozen=True, slots=True)
class Signature:
    """One function: its parameters, its result and what it needs from the context.

    `optional` trailing parameters may be left out; a `variadic` function repeats
    its last parameter any number of times.
    """

    name: str
    params: tuple[Param, ...]
    result: Type
    summary: str
    optional: int = 0
    variadic: bool = False
    uses_time: bool = False
    uses_position: bool = False

    def arity(self) -> str:
        """How many arguments the function takes, for an error message."""
        most = len(self.params)
        least = most - self.optional
        if self.variadic:
            return f"at least {_count(least)}"
        if least == most:
            return "no arguments" if most == 0 else _count(most)
        return f"{least} or {_count(most)}"

    def accepts(self, count: int) -> bool:
        """Whether `count` arguments are allowed."""
        least = len(self.params) - self.optional
        return count >= least if self.variadic else least <= count <= len(self.params)

    def param(self, index: int) -> Param:
        """The kind of the argument at `index` (variadic functions repeat the last)."""
        return self.params[min(index, len(self.params) - 1)]


def _count(n: int) -> str:
    return f"{n} argument" if n == 1 else f"{n} arguments"


_N, _F, _P, _Z = Param.NUMBER, Param.FIELD, Param.PATH, Param.ZONE

FUNCTIONS: Final[dict[str, Signature]] = {
    sig.name: sig
    for sig in (
        Signature("abs", (_N,), Type.NUMBER, "absolute value"),
        Signature("min", (_N, _N), Type.NUMBER, "smallest of two or more numbers", variadic=True),
        Signature("max", (_N, _N), Type.NUMBER, "largest of two or more numbers", variadic=True),
        Signature("round", (_N, _N), Type.NUMBER, "round half to even, to 0 or n decimals", optional=1),
        Signature("clamp", (_N, _N, _N), Type.NUMBER, "clamp(x, lo, hi): x limited to [lo, hi]"),
        Signature("prev", (_F,), Type.ANY, "the field's value before this update"),
        Signature("delta", (_F,), Type.NUMBER, "current minus previous value"),
        Signature("rate", (_F,), Type.NUMBER, "delta per second of device time"),
        Signature("changed", (_F,), Type.BOOL, "whether this update changed the field"),
        Signature("age", (_F,), Type.DURATION, "seconds since the field was last reported", uses_time=True),
        Signature(
            "no_data_for",
            (_P,),
            Type.DURATION,
            "seconds since anything under the path was reported, else since connecting",
            uses_time=True,
        ),
        Signature("connected", (), Type.BOOL, "whether the vehicle is connected", uses_time=True),
        Signature("distance_m", (_N, _N, _N, _N), Type.NUMBER, "great-circle distance in metres"),
        Signature("inside", (_Z,), Type.BOOL, "whether the vehicle is in the zone", uses_position=True),
        Signature("entered", (_Z,), Type.BOOL, "whether this update moved it into the zone", uses_position=True),
        Signature("left", (_Z,), Type.BOOL, "whether this update moved it out of the zone", uses_position=True),
    )
}

"""A reference interpreter: the language's meaning, written for clarity, not speed.

It walks the syntax tree directly and evaluates every operand (no short-circuits,
no special cases for literals). The property tests check that compiled rules
agree with it on generated rules and twins; the compiler is free to be clever as
long as they agree. Geometry is shared (`rules.geo`), having its own tests.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from rules.context import MISSING, EvalContext, Path, Source
from rules.geo import contains, distance_m
from rules.paths import parse_path
from rules.syntax import (
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    DurationLit,
    Expr,
    Field,
    Membership,
    NullLit,
    NumberLit,
    StringLit,
    Unary,
)
from rules.zones import Zone

DEFAULT_POSITION: tuple[Path, Path] = (("gps", "lat"), ("gps", "lon"))


def evaluate(
    tree: Expr,
    ctx: EvalContext,
    zones: Mapping[str, Zone] | None = None,
    position: tuple[Path, Path] = DEFAULT_POSITION,
) -> object:
    """The value of a checked tree: True, False, MISSING, or a twin value for a bare field."""
    return _Interpreter(ctx, zones or {}, position).eval(tree)


# -- values ---------------------------------------------------------------------------


def number(value: object) -> object:
    """A number is an int or a float (not a bool) that is finite as a float."""
    if type(value) is not int and type(value) is not float:
        return MISSING
    try:
        result = float(value)
    except OverflowError:
        return MISSING
    return result if math.isfinite(result) else MISSING


def scalar(value: object) -> object:
    """A string, a boolean, or a number as a float; anything else is MISSING."""
    if type(value) is str or type(value) is bool:
        return value
    return number(value)


def truth(value: object) -> object:
    return value if value is True or value is False else MISSING


def negate(value: object) -> object:
    """Three-valued not: not MISSING is MISSING."""
    if value is MISSING:
        return MISSING
    return not value


def all_of(values: list[object]) -> object:
    """Three-valued and."""
    if any(value is False for value in values):
        return False
    if all(value is True for value in values):
        return True
    return MISSING


def any_of(values: list[object]) -> object:
    """Three-valued or."""
    if any(value is True for value in values):
        return True
    if all(value is False for value in values):
        return False
    return MISSING


def compare(op: str, left: object, right: object) -> object:
    """Both sides must be scalars of one kind, and booleans only test equality."""
    a, b = scalar(left), scalar(right)
    if a is MISSING or b is MISSING or type(a) is not type(b):
        return MISSING
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if type(a) is bool:
        return MISSING
    return ORDERINGS[op](a, b)


ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def arithmetic(op: str, left: object, right: object) -> object:
    a, b = number(left), number(right)
    if not isinstance(a, float) or not isinstance(b, float):
        return MISSING
    if op in ("/", "%") and b == 0:
        return MISSING
    if op == "+":
        result = a + b
    elif op == "-":
        result = a - b
    elif op == "*":
        result = a * b
    elif op == "/":
        result = a / b
    else:
        result = a % b
    return result if math.isfinite(result) else MISSING


def same(a: object, b: object) -> bool:
    """Whether two raw twin values are equal, for changed(); a number never equals a bool."""
    if a is MISSING or b is MISSING:
        return a is b
    numeric = (int, float)
    if type(a) in numeric and type(b) in numeric:
        return a == b
    return type(a) is type(b) and a == b


def elapsed_since(at: float | None, now: float) -> object:
    if at is None:
        return MISSING
    seconds = now - at
    return max(0.0, seconds) if math.isfinite(seconds) else MISSING


# -- the tree ---------------------------------------------------------------------------


class _Interpreter:
    def __init__(self, ctx: EvalContext, zones: Mapping[str, Zone], position: tuple[Path, Path]) -> None:
        self.ctx = ctx
        self.zones = zones
        self.position = position

    def eval(self, node: Expr) -> object:
        match node:
            case NumberLit(value=value) | StringLit(value=value) | BoolLit(value=value):
                return value
            case DurationLit(seconds=seconds):
                return seconds
            case NullLit():
                raise AssertionError("null is only compared")
            case Field(source=source, path=path):
                return self.read(path, source)
            case Unary(op="-", operand=operand):
                x = number(self.eval(operand))
                return -x if isinstance(x, float) else MISSING
            case Unary(operand=operand):
                return negate(truth(self.eval(operand)))
            case Binary(op=op, left=left, right=right):
                return arithmetic(op, self.eval(left), self.eval(right))
            case Compare(op=op, left=left, right=right):
                if isinstance(left, NullLit) or isinstance(right, NullLit):
                    missing = all(isinstance(side, NullLit) or self.eval(side) is MISSING for side in (left, right))
                    return missing if op == "==" else not missing
                return compare(op, self.eval(left), self.eval(right))
            case BoolOp(op=op, operands=operands):
                values = [truth(self.eval(operand)) for operand in operands]
                return all_of(values) if op == "and" else any_of(values)
            case Membership(negated=negated, operand=operand, items=items):
                tested = self.eval(operand)
                if scalar(tested) is MISSING:
                    return MISSING
                found = any_of([compare("==", tested, self.eval(item)) for item in items])
                return negate(found) if negated else found
            case Call():
                return self.call(node)

    def read(self, path: Path, source: Source = Source.REPORTED) -> object:
        value = self.ctx.value(path, source)
        return MISSING if value is None else value

    def before(self, path: Path) -> object:
        value = self.ctx.previous(path)
        return MISSING if value is None else value

    def call(self, node: Call) -> object:
        name = node.name
        first = node.args[0] if node.args else None
        if isinstance(first, Field) and name in ("prev", "delta", "rate", "changed", "age"):
            return self.field_function(name, first.path)
        if isinstance(first, StringLit) and name in ("inside", "entered", "left", "no_data_for"):
            return self.named_function(name, first.value)
        if name == "connected":
            state = self.ctx.connected()
            return state if state is True or state is False else MISSING
        args = [number(self.eval(arg)) for arg in node.args]
        numbers = [arg for arg in args if isinstance(arg, float)]
        if len(numbers) < len(args):
            return MISSING
        if name == "abs":
            return abs(numbers[0])
        if name == "min":
            return min(numbers)
        if name == "max":
            return max(numbers)
        if name == "round":
            return float(round(numbers[0])) if len(numbers) == 1 else self.round_to(*numbers)
        if name == "clamp":
            x, low, high = numbers
            return MISSING if low > high else min(max(x, low), high)
        if name == "distance_m":
            lat1, lon1, lat2, lon2 = numbers
            if not all(-90 <= lat <= 90 for lat in (lat1, lat2)) or not all(-180 <= lon <= 180 for lon in (lon1, lon2)):
                return MISSING
            return distance_m(lat1, lon1, lat2, lon2)
        raise AssertionError(f"no such function {name}")

    def round_to(self, x: float, digits: float) -> object:
        if not digits.is_integer():
            return MISSING
        try:
            result = round(x, int(max(-400, min(400, digits))))
        except OverflowError:
            return MISSING
        return result if math.isfinite(result) else MISSING

    def field_function(self, name: str, path: Path) -> object:
        ctx = self.ctx
        if name == "prev":
            return self.before(path)
        if name == "changed":
            return not same(self.read(path), self.before(path))
        if name == "age":
            return elapsed_since(ctx.reported_at(path), ctx.now)
        change = arithmetic("-", self.read(path), self.before(path))
        if name == "delta" or change is MISSING:
            return change
        at, before_at = ctx.reported_at(path), ctx.previous_reported_at(path)
        if at is None or before_at is None or not at - before_at > 0:
            return MISSING
        return arithmetic("/", change, at - before_at)

    def named_function(self, name: str, text: str) -> object:
        if name == "no_data_for":
            _, path = parse_path(text)
            at = self.ctx.reported_at(path)
            return elapsed_since(self.ctx.connected_since() if at is None else at, self.ctx.now)
        zone = self.zones.get(text)
        if zone is None:
            return MISSING
        lat_path, lon_path = self.position
        now = self.located(zone, self.read(lat_path), self.read(lon_path))
        if name == "inside":
            return now
        before = self.located(zone, self.before(lat_path), self.before(lon_path))
        if now is MISSING or before is MISSING:
            return MISSING
        return (now and not before) if name == "entered" else (before and not now)

    def located(self, zone: Zone, lat: object, lon: object) -> object:
        y, x = number(lat), number(lon)
        if not isinstance(y, float) or not isinstance(x, float):
            return MISSING
        if not (-90 <= y <= 90 and -180 <= x <= 180):
            return MISSING
        return contains(zone, y, x)

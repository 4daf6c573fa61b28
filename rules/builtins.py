"""The compiled implementations of the function table, as closure builders.

Each builder takes the checked call, its compiled arguments and the position paths,
and returns one closure `(ctx, zones) -> value`. Closures never raise on twin
data: a missing or mistyped input gives MISSING.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final

from rules.context import MISSING, EvalContext, Path, Source
from rules.geo import contains, distance_m, valid_position
from rules.paths import parse_path
from rules.syntax import Call, Field, StringLit
from rules.values import as_number, finite, same
from rules.zones import Zone

Zones = Mapping[str, Zone]
Eval = Callable[[EvalContext, Zones], object]
Builder = Callable[[Call, list[Eval], tuple[Path, Path]], Eval]

# round(x, n) with |n| beyond this gives the same result as at this bound.
_MAX_DIGITS = 400
_REPORTED = Source.REPORTED


def _field(call: Call) -> Path:
    arg = call.args[0]
    if not isinstance(arg, Field):
        raise TypeError(f"{call.name}() was not checked: its argument must be a field")
    return arg.path


def _string(call: Call) -> str:
    arg = call.args[0]
    if not isinstance(arg, StringLit):
        raise TypeError(f"{call.name}() was not checked: its argument must be a string")
    return arg.value


def _abs(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    (arg,) = args

    def run(ctx: EvalContext, zones: Zones) -> object:
        x = as_number(arg(ctx, zones))
        return MISSING if x is MISSING else abs(x)

    return run


def _extreme(pick: Callable[[list[float]], float]) -> Builder:
    def build(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
        def run(ctx: EvalContext, zones: Zones) -> object:
            numbers: list[float] = []
            for arg in args:
                x = as_number(arg(ctx, zones))
                if x is MISSING:
                    return MISSING
                numbers.append(x)
            return pick(numbers)

        return run

    return build


def _round(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    value = args[0]
    digits = args[1] if len(args) > 1 else None

    def run(ctx: EvalContext, zones: Zones) -> object:
        x = as_number(value(ctx, zones))
        if x is MISSING:
            return MISSING
        if digits is None:
            return float(round(x))
        n = as_number(digits(ctx, zones))
        if n is MISSING or not n.is_integer():
            return MISSING
        try:
            return finite(round(x, int(max(-_MAX_DIGITS, min(_MAX_DIGITS, n)))))
        except OverflowError:
            return MISSING

    return run


def _clamp(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    value, low, high = args

    def run(ctx: EvalContext, zones: Zones) -> object:
        x = as_number(value(ctx, zones))
        lo = as_number(low(ctx, zones))
        hi = as_number(high(ctx, zones))
        if x is MISSING or lo is MISSING or hi is MISSING or lo > hi:
            return MISSING
        return min(max(x, lo), hi)

    return run


def _prev(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    path = _field(call)

    def run(ctx: EvalContext, zones: Zones) -> object:
        value = ctx.previous(path)
        return MISSING if value is None else value

    return run


def _delta(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    path = _field(call)

    def run(ctx: EvalContext, zones: Zones) -> object:
        now = as_number(ctx.value(path, _REPORTED))
        before = as_number(ctx.previous(path))
        if now is MISSING or before is MISSING:
            return MISSING
        return finite(now - before)

    return run


def _rate(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    path = _field(call)

    def run(ctx: EvalContext, zones: Zones) -> object:
        now = as_number(ctx.value(path, _REPORTED))
        before = as_number(ctx.previous(path))
        at = ctx.reported_at(path)
        before_at = ctx.previous_reported_at(path)
        if now is MISSING or before is MISSING or at is None or before_at is None:
            return MISSING
        elapsed = at - before_at
        if not elapsed > 0:
            return MISSING
        return finite((now - before) / elapsed)

    return run


def _changed(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    path = _field(call)

    def run(ctx: EvalContext, zones: Zones) -> object:
        now = ctx.value(path, _REPORTED)
        before = ctx.previous(path)
        return not same(MISSING if now is None else now, MISSING if before is None else before)

    return run


def _since(at: float | None, now: float) -> object:
    if at is None:
        return MISSING
    elapsed = now - at
    return max(0.0, elapsed) if math.isfinite(elapsed) else MISSING


def _age(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    path = _field(call)

    def run(ctx: EvalContext, zones: Zones) -> object:
        return _since(ctx.reported_at(path), ctx.now)

    return run


def _no_data_for(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    _, path = parse_path(_string(call))

    def run(ctx: EvalContext, zones: Zones) -> object:
        at = ctx.reported_at(path)
        return _since(ctx.connected_since() if at is None else at, ctx.now)

    return run


def _connected(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        state = ctx.connected()
        return state if type(state) is bool else MISSING

    return run


def _distance(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
    def run(ctx: EvalContext, zones: Zones) -> object:
        lat1, lon1, lat2, lon2 = (as_number(arg(ctx, zones)) for arg in args)
        if lat1 is MISSING or lon1 is MISSING or lat2 is MISSING or lon2 is MISSING:
            return MISSING
        if not (valid_position(lat1, lon1) and valid_position(lat2, lon2)):
            return MISSING
        return distance_m(lat1, lon1, lat2, lon2)

    return run


def _located(zone: Zone, lat: object, lon: object) -> object:
    """Whether (lat, lon) is in the zone, or MISSING when it is not a position."""
    y, x = as_number(lat), as_number(lon)
    if y is MISSING or x is MISSING or not valid_position(y, x):
        return MISSING
    return contains(zone, y, x)


def _located_shared(ctx: EvalContext, name: str, zone: Zone, lat: object, lon: object) -> object:
    """`_located`, remembered in the context for other rules testing the same zone on this update."""
    if (type(lat) is not float and type(lat) is not int) or (type(lon) is not float and type(lon) is not int):
        return _located(zone, lat, lon)
    key = (name, lat, lon)
    hit = ctx.memo.get(key)
    # The zone itself is compared too: the API may have replaced it since.
    if isinstance(hit, tuple) and hit[0] is zone:
        return hit[1]
    result = _located(zone, lat, lon)
    ctx.memo[key] = (zone, result)
    return result


def _zone_test(now_in: bool | None, before_in: bool | None) -> Builder:
    """A builder for inside (before_in None), entered and left."""

    def build(call: Call, args: list[Eval], position: tuple[Path, Path]) -> Eval:
        name = _string(call)
        lat_path, lon_path = position

        def run(ctx: EvalContext, zones: Zones) -> object:
            zone = zones.get(name)
            if zone is None:
                return MISSING
            now = _located_shared(ctx, name, zone, ctx.value(lat_path, _REPORTED), ctx.value(lon_path, _REPORTED))
            if before_in is None or now is MISSING:
                return now
            before = _located_shared(ctx, name, zone, ctx.previous(lat_path), ctx.previous(lon_path))
            if before is MISSING:
                return MISSING
            return now is now_in and before is before_in

        return run

    return build


BUILDERS: Final[dict[str, Builder]] = {
    "abs": _abs,
    "min": _extreme(min),
    "max": _extreme(max),
    "round": _round,
    "clamp": _clamp,
    "prev": _prev,
    "delta": _delta,
    "rate": _rate,
    "changed": _changed,
    "age": _age,
    "no_data_for": _no_data_for,
    "connected": _connected,
    "distance_m": _distance,
    "inside": _zone_test(None, None),
    "entered": _zone_test(True, False),
    "left": _zone_test(False, True),
}

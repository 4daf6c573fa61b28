"""Zones: named circles and polygons on the map, and the set of them a rule evaluates against.

Zones are data, managed in configuration and through the API; rules name them by
string. A `Circle` is a centre and a radius in metres; a `Polygon` is three or more
vertices, implicitly closed, without holes. Both decode from tagged objects:

    {"kind": "circle", "lat": 19.43, "lon": -99.13, "radius_m": 500}
    {"kind": "polygon", "vertices": [{"lat": 0, "lon": 0}, {"lat": 0, "lon": 1}, {"lat": 1, "lon": 1}]}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Final

import msgspec

from rules.errors import RuleConfigError, quote

MAX_VERTICES: Final = 10_000
ZONE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _check_point(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise RuleConfigError(f"latitude must be within -90..90 degrees, got {lat}")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise RuleConfigError(f"longitude must be within -180..180 degrees, got {lon}")


class LatLon(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A point in degrees (WGS 84)."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        _check_point(self.lat, self.lon)


class Circle(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="circle"):
    """Every point within `radius_m` metres (great-circle distance) of the centre."""

    lat: float
    lon: float
    radius_m: float

    def __post_init__(self) -> None:
        _check_point(self.lat, self.lon)
        if not (math.isfinite(self.radius_m) and self.radius_m > 0):
            raise RuleConfigError(f"radius_m must be a positive number of metres, got {self.radius_m}")


class Polygon(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="polygon"):
    """The area enclosed by `vertices`, treating latitude and longitude as plane coordinates.

    That planar approximation is good for city- and depot-sized zones; a polygon must
    not cross the antimeridian (longitude +-180) or enclose a pole.
    """

    vertices: tuple[LatLon, ...]

    def __post_init__(self) -> None:
        if len(self.vertices) < 3:
            raise RuleConfigError(f"a polygon needs at least 3 vertices, got {len(self.vertices)}")
        if len(self.vertices) > MAX_VERTICES:
            raise RuleConfigError(f"a polygon may have at most {MAX_VERTICES} vertices, got {len(self.vertices)}")


Zone = Circle | Polygon


class ZoneSet(Mapping[str, Zone]):
    """Zones by name, validated; what `CompiledExpr.evaluate` takes as `zones`.

    Immutable: to change zones, build a new set and pass that to the next evaluation.
    Any `Mapping[str, Zone]` works for evaluation; this one checks the names.
    """

    __slots__ = ("_zones",)

    def __init__(self, zones: Mapping[str, Zone] | None = None) -> None:
        checked: dict[str, Zone] = {}
        for name, zone in (zones or {}).items():
            if not ZONE_NAME.fullmatch(name):
                raise RuleConfigError(f"zone name {quote(name)} must be 1-64 letters, digits, '_', '.' or '-'")
            if not isinstance(zone, Circle | Polygon):
                raise RuleConfigError(f"zone {quote(name)} must be a Circle or a Polygon, got {type(zone).__name__}")
            checked[name] = zone
        self._zones = checked

    @classmethod
    def from_data(cls, data: object) -> ZoneSet:
        """Zones from decoded configuration or JSON: `{name: {"kind": ..., ...}}`."""
        if not isinstance(data, Mapping):
            raise RuleConfigError(f"zones must be a table of name = zone, got {type(data).__name__}")
        zones: dict[str, Zone] = {}
        for name, value in data.items():
            if not isinstance(name, str):
                raise RuleConfigError(f"zone names must be strings, got {name!r}")
            try:
                zones[name] = msgspec.convert(value, Zone)
            except msgspec.ValidationError as exc:
                raise RuleConfigError(f"zone {quote(name)}: {exc}") from None
        return cls(zones)

    def to_data(self) -> dict[str, object]:
        """The zones as plain data, the inverse of `from_data`."""
        return {name: msgspec.to_builtins(zone) for name, zone in self._zones.items()}

    def __getitem__(self, name: str) -> Zone:
        return self._zones[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._zones)

    def __len__(self) -> int:
        return len(self._zones)

    def __repr__(self) -> str:
        return f"ZoneSet({self._zones!r})"

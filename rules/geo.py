"""Geometry on latitude and longitude in degrees: distances and zone containment.

Pure functions over floats; callers validate coordinates first (`valid_position`).
"""

from __future__ import annotations

import math
from typing import Final

from rules.zones import Circle, Polygon, Zone

EARTH_RADIUS_M: Final = 6_371_008.8
"""The mean Earth radius (IUGG), in metres."""


def valid_position(lat: float, lon: float) -> bool:
    """Whether the point is on the map: latitude -90..90, longitude -180..180."""
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points by the haversine formula, in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def contains(zone: Zone, lat: float, lon: float) -> bool:
    """Whether the point is in the zone. A circle includes its boundary."""
    if isinstance(zone, Circle):
        return distance_m(zone.lat, zone.lon, lat, lon) <= zone.radius_m
    return _in_polygon(zone, lat, lon)


def _in_polygon(polygon: Polygon, lat: float, lon: float) -> bool:
    """Ray casting with longitude as x and latitude as y.

    A point exactly on an edge may count as inside or outside.
    """
    inside = False
    vertices = polygon.vertices
    previous = vertices[-1]
    for vertex in vertices:
        if (vertex.lat > lat) != (previous.lat > lat):
            crossing = (previous.lon - vertex.lon) * (lat - vertex.lat) / (previous.lat - vertex.lat) + vertex.lon
            if lon < crossing:
                inside = not inside
        previous = vertex
    return inside

"""Distances and bearings at city scale.

An equirectangular projection around the start point is accurate to well under 1% over
the few tens of kilometres a city spans, and keeps movement along a segment a straight
line in degrees, so a point between two points inside a bounding box stays inside it.
"""

from __future__ import annotations

import math

KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_AT_EQUATOR = 111.320


def offsets_km(lat1: float, lon1: float, lat2: float, lon2: float) -> tuple[float, float]:
    """East and north offsets in km from the first point to the second."""
    mean_lat = math.radians((lat1 + lat2) / 2)
    east = (lon2 - lon1) * KM_PER_DEG_LON_AT_EQUATOR * math.cos(mean_lat)
    north = (lat2 - lat1) * KM_PER_DEG_LAT
    return east, north


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    east, north = offsets_km(lat1, lon1, lat2, lon2)
    return math.hypot(east, north)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Compass bearing from the first point to the second: 0 north, 90 east, in [0, 360)."""
    east, north = offsets_km(lat1, lon1, lat2, lon2)
    return math.degrees(math.atan2(east, north)) % 360.0


def offset_point(lat: float, lon: float, east_km: float, north_km: float) -> tuple[float, float]:
    """The point `east_km` east and `north_km` north of (`lat`, `lon`)."""
    new_lat = lat + north_km / KM_PER_DEG_LAT
    new_lon = lon + east_km / (KM_PER_DEG_LON_AT_EQUATOR * math.cos(math.radians(lat)))
    return new_lat, new_lon


def offsets_from_bearing(km: float, bearing: float) -> tuple[float, float]:
    """East and north offsets in km of a move of `km` towards compass `bearing` (degrees)."""
    rad = math.radians(bearing)
    return km * math.sin(rad), km * math.cos(rad)

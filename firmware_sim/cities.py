"""The reference fleets' cities: where simulated vehicles may drive."""

from __future__ import annotations

import msgspec

from firmware_sim.errors import ConfigError


class City(msgspec.Struct, frozen=True):
    """A named city and the bounding box its vehicles stay inside (degrees, WGS 84)."""

    slug: str
    name: str
    south: float
    west: float
    north: float
    east: float

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east


# Administrative extents, trimmed where they run far into water or farmland, so routes
# mostly cross built-up streets.
CITIES: dict[str, City] = {
    city.slug: city
    for city in (
        City("mexico-city", "Mexico City", south=19.2500, west=-99.2600, north=19.5600, east=-98.9800),
        City("singapore", "Singapore", south=1.2700, west=103.6200, north=1.4550, east=104.0000),
        City("malmo", "Malmö", south=55.5300, west=12.9300, north=55.6300, east=13.0900),
    )
}

DEFAULT_CITY = "mexico-city"


def get_city(slug: str) -> City:
    """The city named by `slug`, or a `ConfigError` listing the ones that exist."""
    try:
        return CITIES[slug]
    except KeyError:
        known = ", ".join(sorted(CITIES))
        raise ConfigError(f"setting 'city' must be one of {known}, got {slug!r}") from None

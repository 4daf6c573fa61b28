"""One compact row per vehicle: what the map and the list draw, taken from a twin.

The console reads a few well-known reported fields (what `firmware_sim` and most
trackers send): `gps.lat`/`gps.lon` (or top-level `lat`/`lon`), `heading`, `speed`
(km/h), `soc` (%) and `charging`. A vehicle without a position is listed but not drawn.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from twin import PATH_SEP, ReportedEntry, TwinState

_GPS_LAT = f"gps{PATH_SEP}lat"
_GPS_LON = f"gps{PATH_SEP}lon"
# Below this speed (km/h) a vehicle with its position still counts as parked (GPS jitter).
MOVING_KMH = 3.0
# A vehicle that reports the same values is re-sent to live clients only when its last-seen time
# moved this much (seconds): a parked fleet reporting every few seconds then costs almost nothing.
LAST_SEEN_STEP_S = 30.0


class VehicleState(enum.Enum):
    MOVING = "moving"
    PARKED = "parked"
    CHARGING = "charging"
    OFFLINE = "offline"
    ALARM = "alarm"


@dataclass(slots=True)
class VehicleRow:
    vehicle_id: str
    fleet: str
    lat: float | None = None
    lon: float | None = None
    heading: float | None = None
    speed: float | None = None
    soc: float | None = None
    charging: bool = False
    connected: bool = False
    last_seen: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Open alerts of this vehicle: alert id -> severity.
    alerts: dict[str, str] = field(default_factory=dict)

    def looks_like(self, other: VehicleRow) -> bool:
        """Whether a browser would draw `other` as this row, last-seen time aside."""
        return (
            self.lat == other.lat
            and self.lon == other.lon
            and self.speed == other.speed
            and self.heading == other.heading
            and self.soc == other.soc
            and self.charging == other.charging
            and self.connected == other.connected
            and self.fleet == other.fleet
            and self.tags == other.tags
        )

    @property
    def state(self) -> VehicleState:
        if self.alerts:
            return VehicleState.ALARM
        if not self.connected:
            return VehicleState.OFFLINE
        if self.charging:
            return VehicleState.CHARGING
        if self.speed is not None and self.speed >= MOVING_KMH:
            return VehicleState.MOVING
        return VehicleState.PARKED


def _number(entry: ReportedEntry | None) -> float | None:
    """The entry's value when it is a finite number (not a bool); this runs per field per report."""
    if entry is None:
        return None
    value = entry.value
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    return None


def row_of(state: TwinState, alerts: dict[str, str] | None = None) -> VehicleRow:
    """The row of a twin (read-only access to `state`); `alerts` is kept as given, not copied."""
    get = state.reported.get
    lat = _number(get(_GPS_LAT))
    lon = _number(get(_GPS_LON))
    if lat is None or lon is None:
        lat, lon = _number(get("lat")), _number(get("lon"))
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    charging = get("charging")
    tags = state.tags
    return VehicleRow(
        vehicle_id=state.vehicle_id,
        fleet=state.fleet,
        lat=lat,
        lon=lon,
        heading=_number(get("heading")),
        speed=_number(get("speed")),
        soc=_number(get("soc")),
        charging=charging is not None and charging.value is True,
        connected=state.connection.connected,
        last_seen=state.connection.last_seen,
        tags={k: v for k, v in tags.items() if isinstance(v, str)} if tags else {},
        alerts={} if alerts is None else alerts,
    )


@dataclass(slots=True)
class Columns:
    """Rows as parallel arrays: the compact shape of the bulk endpoint and of live batches."""

    id: list[str] = field(default_factory=list)
    fleet: list[str] = field(default_factory=list)
    lat: list[float | None] = field(default_factory=list)
    lon: list[float | None] = field(default_factory=list)
    heading: list[float | None] = field(default_factory=list)
    speed: list[float | None] = field(default_factory=list)
    soc: list[float | None] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    last_seen: list[float | None] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)
    severity: list[str | None] = field(default_factory=list)
    tags: list[dict[str, str]] = field(default_factory=list)

    def add(self, row: VehicleRow) -> None:
        self.id.append(row.vehicle_id)
        self.fleet.append(row.fleet)
        self.lat.append(row.lat)
        self.lon.append(row.lon)
        self.heading.append(row.heading)
        self.speed.append(row.speed)
        self.soc.append(row.soc)
        self.state.append(row.state.value)
        self.last_seen.append(row.last_seen)
        self.alerts.append(len(row.alerts))
        self.severity.append(worst_severity(row.alerts.values()) if row.alerts else None)
        self.tags.append(row.tags)

    def __len__(self) -> int:
        return len(self.id)


SEVERITIES = ("critical", "major", "minor", "warning", "info")


def worst_severity(severities: Iterable[str]) -> str | None:
    found = set(severities)
    return next((s for s in SEVERITIES if s in found), None)

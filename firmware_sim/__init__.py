"""Simulated vehicles for fleethub: they drive, report telemetry and obey desired state.

`Vehicle` and `Firmware` are the network-free model and MQTT contract, usable by any
transport.
"""

from firmware_sim.cities import CITIES, City, get_city
from firmware_sim.desired import DesiredResult, Settings, apply_desired
from firmware_sim.errors import ConfigError, InvalidDelta, SimError
from firmware_sim.firmware import DeltaHandled, Firmware, Outbound
from firmware_sim.stats import FleetStats, progress_line
from firmware_sim.vehicle import Phase, Vehicle

__all__ = [
    "CITIES",
    "City",
    "ConfigError",
    "DeltaHandled",
    "DesiredResult",
    "Firmware",
    "FleetStats",
    "InvalidDelta",
    "Outbound",
    "Phase",
    "Settings",
    "SimError",
    "Vehicle",
    "apply_desired",
    "get_city",
    "progress_line",
]

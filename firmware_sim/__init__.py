"""Simulated vehicles for fleethub: they drive, report telemetry and obey desired state.

`Fleet` runs many vehicles over MQTT on one asyncio loop; `Vehicle` and `Firmware` are
the network-free model and contract underneath, usable by other transports.
"""

from firmware_sim.cities import CITIES, City, get_city
from firmware_sim.cli import main
from firmware_sim.config import SimConfig
from firmware_sim.desired import DesiredResult, Settings, apply_desired
from firmware_sim.errors import ConfigError, InvalidDelta, SimError
from firmware_sim.firmware import DeltaHandled, Firmware, Outbound
from firmware_sim.fleet import Fleet
from firmware_sim.geo import distance_km
from firmware_sim.link import BrokerRefused
from firmware_sim.secrets import read_secrets
from firmware_sim.stats import FleetStats, progress_line
from firmware_sim.vehicle import Phase, Vehicle

__all__ = [
    "CITIES",
    "BrokerRefused",
    "City",
    "ConfigError",
    "DeltaHandled",
    "DesiredResult",
    "Firmware",
    "Fleet",
    "FleetStats",
    "InvalidDelta",
    "Outbound",
    "Phase",
    "Settings",
    "SimConfig",
    "SimError",
    "Vehicle",
    "apply_desired",
    "distance_km",
    "get_city",
    "main",
    "progress_line",
    "read_secrets",
]

"""Load mode: thousands of simulated vehicles from a few processes, for benchmarks.

A `LoadPlan` says what the fleet does on one timeline (ramp-up with jitter, QoS 0 or 1
telemetry at a rate or as fast as PUBACKs allow, offline periods with backfill, a
reconnect storm); `run_load` runs it over worker processes, each driving its vehicles
through a minimal asyncio MQTT client, and returns a `LoadResult`.
"""

from firmware_sim.load.fdlimit import ensure_fd_limit, fd_limits
from firmware_sim.load.histogram import Histogram
from firmware_sim.load.mqtt import MqttError, MqttProtocol
from firmware_sim.load.plan import LoadPlan, Mode, Payload
from firmware_sim.load.runner import LoadResult, LoadRun, run_load

__all__ = [
    "Histogram",
    "LoadPlan",
    "LoadResult",
    "LoadRun",
    "Mode",
    "MqttError",
    "MqttProtocol",
    "Payload",
    "ensure_fd_limit",
    "fd_limits",
    "run_load",
]

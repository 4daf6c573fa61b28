"""What a load run does, on one timeline shared by every worker process.

Times are seconds after the run's start (a wall-clock instant the runner picks, so all
workers agree). Connections ramp up over `ramp_s`; messages are counted from
`measure_from` to `measure_until`; an optional reconnect storm follows; then every
vehicle disconnects and the worker exits by itself at `end`.
"""

from __future__ import annotations

import enum

import msgspec

from firmware_sim.cities import CITIES
from firmware_sim.errors import ConfigError


class Mode(enum.Enum):
    # Each vehicle reports every `interval_s`, whether or not the hub keeps up (open loop).
    RATE = "rate"
    # Each vehicle keeps `inflight` QoS 1 messages unacknowledged at all times (closed loop):
    # the hub's maximum throughput with this many publishers.
    SATURATE = "saturate"
    # Connect and stay connected; keepalive only.
    IDLE = "idle"
    # Connect, publish one QoS 1 message, wait for its PUBACK, disconnect, repeat.
    RECONNECT_EACH = "reconnect_each"


class Payload(enum.Enum):
    # The fleethub telemetry object: `ts` (device time), `seq`, the reported values, `sent`.
    TELEMETRY = "telemetry"
    # An AWS-style shadow update: {"state": {"reported": {...telemetry...}}}.
    SHADOW = "shadow"


class LoadPlan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 1883
    vehicles: int = 100
    workers: int = 2
    prefix: str = "load-"
    start_index: int = 1
    # Vehicles are spread round-robin over these cities' bounding boxes.
    cities: tuple[str, ...] = ("mexico-city", "singapore", "malmo")
    mode: Mode = Mode.RATE
    qos: int = 1
    interval_s: float = 5.0
    # Unacknowledged QoS 1 messages per vehicle at most; further readings wait in the device buffer.
    inflight: int = 1
    payload: Payload = Payload.TELEMETRY
    # `{vid}` is replaced by the vehicle id.
    topic: str = "vehicles/{vid}/telemetry"
    # Speak MQTT 5 instead of 3.1.1; with `topic_alias`, send each topic once and then only alias 1.
    mqtt5: bool = False
    topic_alias: bool = False
    ramp_s: float = 5.0
    # Connection attempts in progress at once, per worker.
    connect_concurrency: int = 64
    connect_timeout_s: float = 10.0
    keepalive_s: int = 60
    warmup_s: float = 2.0
    measure_s: float = 10.0
    # A share of the fleet drops off once during the measured window, keeps recording a
    # reading every `interval_s`, and backfills them with their device times on return.
    offline_fraction: float = 0.0
    offline_s: tuple[float, float] = (5.0, 20.0)
    # Readings a vehicle keeps while it cannot send; the oldest are dropped beyond this.
    buffer_max: int = 1_000
    # After the measured window: every vehicle drops at once and reconnects within `storm_window_s`.
    storm: bool = False
    storm_window_s: float = 5.0
    storm_settle_s: float = 30.0
    # Time to wait for outstanding PUBACKs at the end.
    drain_s: float = 3.0
    # Bind each worker's sockets to its own 127.0.0.x address when the target is loopback,
    # so TIME_WAIT sockets of one worker never exhaust another's ephemeral ports.
    spread_source_addresses: bool = True
    seed: int = 1
    # (vehicle id, secret) pairs (`fleethub vehicles import --output`): the vehicles then are these, in
    # order, and log in with their secrets; without them ids come from `prefix` and log in by id alone.
    credentials: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.vehicles < 1:
            raise ConfigError(f"setting 'vehicles' must be at least 1, got {self.vehicles}")
        if self.credentials and self.vehicles > len(self.credentials):
            raise ConfigError(
                f"setting 'vehicles' must be at most the {len(self.credentials)} vehicles of the secrets file, "
                f"got {self.vehicles}"
            )
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"setting 'workers' must be 1-64, got {self.workers}")
        if self.qos not in (0, 1):
            raise ConfigError(f"setting 'qos' must be 0 or 1, got {self.qos}")
        if self.mode in (Mode.SATURATE, Mode.RECONNECT_EACH) and self.qos != 1:
            raise ConfigError(f"mode '{self.mode.value}' is paced by PUBACKs: set qos to 1")
        if self.inflight < 1:
            raise ConfigError(f"setting 'inflight' must be at least 1, got {self.inflight}")
        if self.interval_s <= 0:
            raise ConfigError(f"setting 'interval_s' must be more than 0, got {self.interval_s}")
        for slug in self.cities:
            if slug not in CITIES:
                raise ConfigError(f"setting 'cities' must name {', '.join(sorted(CITIES))}, got {slug!r}")
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ConfigError(f"setting 'offline_fraction' must be 0-1, got {self.offline_fraction}")
        for name in ("ramp_s", "warmup_s", "measure_s", "storm_window_s", "storm_settle_s", "drain_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"setting '{name}' must be 0 or more, got {getattr(self, name)}")

    @property
    def measure_from(self) -> float:
        return self.ramp_s + self.warmup_s

    @property
    def measure_until(self) -> float:
        return self.measure_from + self.measure_s

    @property
    def storm_at(self) -> float | None:
        return self.measure_until if self.storm else None

    @property
    def publish_until(self) -> float:
        """When vehicles stop producing readings."""
        if self.storm:
            return self.measure_until + self.storm_window_s + self.storm_settle_s
        return self.measure_until

    @property
    def end(self) -> float:
        """When every worker has disconnected everything and reported."""
        return self.publish_until + self.drain_s + 2.0

    def vehicle_id(self, index: int) -> str:
        if self.credentials:
            return self.credentials[index][0]
        return f"{self.prefix}{self.start_index + index:05d}"

    def secret(self, index: int) -> str | None:
        return self.credentials[index][1] if self.credentials else None

    def slice_for(self, worker: int) -> range:
        """The vehicle indexes worker number `worker` drives."""
        return range(worker, self.vehicles, self.workers)

"""Settings of a simulated fleet."""

from __future__ import annotations

import msgspec

from firmware_sim import topics
from firmware_sim.cities import DEFAULT_CITY, get_city
from firmware_sim.errors import ConfigError
from firmware_sim.faults import Fault

MAX_VEHICLES = 100_000


class SimConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to simulate and where to connect; every field has a default that runs locally."""

    vehicles: int = 10
    # Seconds between telemetry messages of one vehicle (its reported config.report_interval_s).
    interval_s: float = 5.0
    host: str = "127.0.0.1"
    port: int = 1883
    qos: int = 1
    city: str = DEFAULT_CITY
    # Vehicle ids are `{prefix}{index:04d}`, which is also their MQTT client id and username.
    prefix: str = "veh-"
    # None picks a random seed; `Fleet` logs it so a run can be repeated.
    seed: int | None = None
    start_index: int = 1
    # Connections are spread at random over this many seconds so a fleet does not arrive at once.
    ramp_s: float = 2.0
    keepalive_s: int = 60
    # Behind an external broker (fleethub workers, docs/scale.md): "online" on vehicles/{id}/status
    # once subscribed, and "offline" as the Last Will, so the hub learns of connects and drops.
    birth_and_will: bool = False
    # The wait before reconnecting starts at the minimum and doubles per failed attempt up to
    # the maximum, each wait jittered down by up to half.
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    # Seconds to wait for the TCP connection and then for CONNACK.
    connect_timeout_s: float = 10.0
    # Faults to inject (see firmware_sim.faults), and the share of other vehicles given a random one.
    faults: tuple[Fault, ...] = ()
    fault_rate: float = 0.0
    # Share of commands whose actuator "does not respond" (answered `failed`).
    command_failure_rate: float = 0.0
    # Chance per vehicle per minute of an offline period (the link drops) lasting `offline_s`.
    offline_rate: float = 0.0
    offline_s: float = 30.0
    # Vehicle id → MQTT secret (`fleethub vehicles import --output`). When given, the fleet is these
    # vehicles (the first `vehicles` of them) and each logs in with its secret; else ids come from
    # `prefix` and vehicles log in with their id alone, as a development-mode hub accepts.
    secrets: dict[str, str] = msgspec.field(default_factory=dict)
    # After the hub refuses a login (bad secret, revoked), wait this long, doubling up to the maximum:
    # retrying at the connection back-off would only trip the hub's login back-off for the whole fleet.
    refused_min_s: float = 30.0
    refused_max_s: float = 300.0

    def __post_init__(self) -> None:
        _at_least("vehicles", self.vehicles, 1)
        if self.vehicles > MAX_VEHICLES:
            raise ConfigError(f"setting 'vehicles' must be at most {MAX_VEHICLES}, got {self.vehicles}")
        _positive("interval_s", self.interval_s)
        if not self.host:
            raise ConfigError("setting 'host' must name the MQTT broker, got an empty string")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"setting 'port' must be 1-65535, got {self.port}")
        if self.qos not in (0, 1):
            raise ConfigError(f"setting 'qos' must be 0 or 1, got {self.qos}")
        get_city(self.city)
        _at_least("start_index", self.start_index, 0)
        last_id = topics.vehicle_id(self.prefix, self.start_index + self.vehicles - 1)
        if not topics.VEHICLE_ID_PATTERN.fullmatch(last_id):
            raise ConfigError(
                f"setting 'prefix' must make vehicle ids of 1-64 characters from A-Z a-z 0-9 _ . -, "
                f"got {self.prefix!r} (ids like {last_id!r})"
            )
        if self.ramp_s < 0:
            raise ConfigError(f"setting 'ramp_s' must be 0 or more, got {self.ramp_s}")
        _at_least("keepalive_s", self.keepalive_s, 1)
        _positive("reconnect_min_s", self.reconnect_min_s)
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError(
                f"setting 'reconnect_max_s' must be at least reconnect_min_s ({self.reconnect_min_s}), "
                f"got {self.reconnect_max_s}"
            )
        _positive("connect_timeout_s", self.connect_timeout_s)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ConfigError(f"setting 'fault_rate' must be 0-1, got {self.fault_rate}")
        if not 0.0 <= self.command_failure_rate <= 1.0:
            raise ConfigError(f"setting 'command_failure_rate' must be 0-1, got {self.command_failure_rate}")
        if not 0.0 <= self.offline_rate <= 1.0:
            raise ConfigError(f"setting 'offline_rate' must be 0-1 (per minute), got {self.offline_rate}")
        _positive("offline_s", self.offline_s)
        if self.secrets and self.vehicles > len(self.secrets):
            raise ConfigError(
                f"setting 'vehicles' must be at most the {len(self.secrets)} vehicles of the secrets file, "
                f"got {self.vehicles}"
            )
        _positive("refused_min_s", self.refused_min_s)
        if self.refused_max_s < self.refused_min_s:
            raise ConfigError(
                f"setting 'refused_max_s' must be at least refused_min_s ({self.refused_min_s}), "
                f"got {self.refused_max_s}"
            )

    def vehicle_ids(self) -> list[str]:
        if self.secrets:
            return list(self.secrets)[: self.vehicles]
        return [topics.vehicle_id(self.prefix, i) for i in range(self.start_index, self.start_index + self.vehicles)]


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"setting '{name}' must be at least {minimum}, got {value}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"setting '{name}' must be more than 0, got {value}")

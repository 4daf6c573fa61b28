"""Simulator settings: defaults, validation messages and the command line."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from firmware_sim import ConfigError, SimConfig, main
from firmware_sim.cli import build_parser, config_from_args


def test_defaults_run_locally() -> None:
    """With no settings the simulator targets a local broker with QoS 1 in Mexico City."""
    config = SimConfig()
    assert (config.host, config.port, config.qos, config.city) == ("127.0.0.1", 1883, 1, "mexico-city")
    assert config.vehicle_ids()[:2] == ["veh-0001", "veh-0002"]


def test_vehicle_ids_use_prefix_and_start_index() -> None:
    """Ids are the prefix and a four-digit index that grows past four digits when needed."""
    config = SimConfig(vehicles=3, prefix="bike-", start_index=9_999)
    assert config.vehicle_ids() == ["bike-9999", "bike-10000", "bike-10001"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vehicles": 0}, "setting 'vehicles' must be at least 1, got 0"),
        ({"interval_s": 0}, "setting 'interval_s' must be more than 0"),
        ({"port": 70_000}, "setting 'port' must be 1-65535, got 70000"),
        ({"qos": 2}, "setting 'qos' must be 0 or 1, got 2"),
        ({"city": "paris"}, "setting 'city' must be one of malmo, mexico-city, singapore, got 'paris'"),
        ({"prefix": "veh/"}, "setting 'prefix' must make vehicle ids"),
        ({"prefix": "x" * 70}, "setting 'prefix' must make vehicle ids"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "setting 'reconnect_max_s' must be at least"),
    ],
)
def test_invalid_settings_name_the_setting(kwargs: dict[str, Any], message: str) -> None:
    """Each invalid setting fails at construction with a message naming it and the bad value."""
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        SimConfig(**kwargs)


def test_decoding_validates_too() -> None:
    """A config decoded from a file is validated the same way, and unknown keys are refused."""
    assert msgspec.convert({"vehicles": 5, "city": "malmo"}, SimConfig).vehicles == 5
    with pytest.raises(msgspec.ValidationError, match="qos"):
        msgspec.convert({"qos": 3}, SimConfig)
    with pytest.raises(msgspec.ValidationError, match="vehicle"):
        msgspec.convert({"vehicle": 5}, SimConfig)


def test_command_line_maps_to_config() -> None:
    """Every flag lands in the matching SimConfig field."""
    argv = [
        "--vehicles", "7", "--interval", "0.5", "--host", "h", "--port", "1999", "--qos", "0",
        "--city", "singapore", "--prefix", "ev-", "--seed", "9", "--start-index", "100", "--ramp", "0",
    ]  # fmt: skip
    args = build_parser().parse_args(argv)
    assert config_from_args(args) == SimConfig(
        vehicles=7, interval_s=0.5, host="h", port=1999, qos=0, city="singapore", prefix="ev-", seed=9,
        start_index=100, ramp_s=0.0,
    )  # fmt: skip


def test_bad_arguments_return_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns 2 and explains, rather than raising, for bad flags and bad settings."""
    assert main(["--qos", "2"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["--vehicles", "0"]) == 2
    assert "setting 'vehicles' must be at least 1" in capsys.readouterr().err
    assert main(["--progress", "0"]) == 2
    assert main(["--help"]) == 0

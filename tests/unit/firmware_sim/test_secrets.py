"""The simulators read the secrets CSV that `fleethub vehicles import --output` writes."""

import pytest

from firmware_sim import ConfigError, SimConfig, read_secrets
from firmware_sim.load import LoadPlan
from firmware_sim.load.mqtt import connect_packet


def test_reads_the_import_output_in_file_order(tmp_path) -> None:
    path = tmp_path / "secrets.csv"
    path.write_text("vehicle_id,fleet,secret\ncar-2,acme,s2\ncar-1,acme,s1\n")
    assert list(read_secrets(path).items()) == [("car-2", "s2"), ("car-1", "s1")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vehicle_id,fleet\ncar-1,acme\n", "missing secret"),
        ("vehicle_id,secret\ncar 1,s\n", "line 2"),
        ("vehicle_id,secret\ncar-1,\n", "line 2"),
        ("vehicle_id,secret\ncar-1,a\ncar-1,b\n", "appears twice"),
        ("vehicle_id,secret\n", "no vehicles"),
    ],
)
def test_a_bad_file_names_what_is_wrong(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "secrets.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_secrets(path)


def test_with_secrets_the_fleet_is_the_files_vehicles() -> None:
    config = SimConfig(vehicles=2, secrets={"a": "1", "b": "2", "c": "3"})
    assert config.vehicle_ids() == ["a", "b"]
    with pytest.raises(ConfigError, match="at most the 3 vehicles"):
        SimConfig(vehicles=4, secrets={"a": "1", "b": "2", "c": "3"})
    plan = LoadPlan(vehicles=2, credentials=(("a", "1"), ("b", "2")))
    assert (plan.vehicle_id(1), plan.secret(1)) == ("b", "2")
    assert LoadPlan(vehicles=1).secret(0) is None


def test_the_load_generators_connect_carries_the_password() -> None:
    packet = connect_packet("car-1", username="car-1", password="pw")
    assert packet[9] & 0xC0 == 0xC0  # username and password flags
    assert packet.endswith(b"\x00\x05car-1\x00\x02pw")
    with pytest.raises(ValueError, match="only with a username"):
        connect_packet("car-1", password="pw")

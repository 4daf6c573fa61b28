"""The demo's start-up banner: the commands it suggests can be pasted as printed."""

from types import SimpleNamespace
from typing import Any, cast

from fleethub.demo import banner


def test_banner_commands_continue_onto_their_next_line() -> None:
    """A suggested command split over lines ends each part with a backslash, then a newline."""
    hub = cast(Any, SimpleNamespace(http_port=8080, mqtt_port=1883))
    text = banner(hub, 50, "veh-")
    lines = text.splitlines()
    continued = [i for i, line in enumerate(lines) if line.endswith(" \\")]
    assert len(continued) == 2
    for i in continued:
        assert lines[i + 1].startswith("       -H 'Content-Type: application/json'")
    assert "  curl -s -X POST 'http://localhost:8080/api/v1/vehicles/veh-0001/commands?wait=10s' \\" in lines
    assert "  MQTT broker   localhost:1883" in lines

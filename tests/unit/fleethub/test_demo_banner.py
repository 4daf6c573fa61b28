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


def test_banner_names_the_console_url_when_the_console_is_on() -> None:
    """The operator console's address comes first; a hub without the console does not mention it."""
    on = cast(Any, SimpleNamespace(http_port=8080, mqtt_port=1883, console=object()))
    assert (
        "  Console       http://localhost:8080/   (live map, vehicles, alerts; no login in the demo)"
        in banner(on, 5, "veh-").splitlines()
    )
    off = cast(Any, SimpleNamespace(http_port=8080, mqtt_port=1883, console=None))
    assert "Console" not in banner(off, 5, "veh-")

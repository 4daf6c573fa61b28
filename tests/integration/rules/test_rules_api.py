"""The rules, zones and backtest API over HTTP, and rules loaded from a TOML file at start-up."""

import time

import httpx
import msgspec
import pytest

from fleethub import load_settings
from fleethub.hub import Hub
from kernel import ConfigError
from tests.integration.rules.conftest import hub_settings


async def test_validate_reports_line_column_and_caret(http):
    """Validation names the part, line and column of each error, with the caret text."""
    response = await http.post(
        "/api/v1/rules/validate",
        json={"when": "soc < 15 and\n  foo(x)", "clear_when": "soc >", "message": "at {soc:.1f}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    by_field = {e["field"]: e for e in body["errors"]}
    assert set(by_field) == {"when", "clear_when", "message"}
    when = by_field["when"]
    assert (when["line"], when["column"]) == (2, 3)
    assert "unknown function 'foo'" in when["message"]
    assert when["excerpt"] == "  foo(x)\n  ^"
    ok = (await http.post("/api/v1/rules/validate", json={"when": "soc < 15"})).json()
    assert ok == {"valid": True, "errors": []}
    bad_duration = (await http.post("/api/v1/rules/validate", json={"when": "soc < 15", "for": "5 parsecs"})).json()
    assert bad_duration["valid"] is False
    assert "for" in bad_duration["errors"][0]["message"]


async def test_put_get_list_delete(http, rule_name):
    """A rule is created (201), replaced (200), listed, read, and deleted (then 404)."""
    body = {"when": "speed > 120", "severity": "major", "for": "30s", "message": "Speeding at {speed}"}
    created = await http.put(f"/api/v1/rules/{rule_name}", json=body)
    assert created.status_code == 201
    assert created.json() == {"name": rule_name, **body}
    replaced = await http.put(f"/api/v1/rules/{rule_name}", json={**body, "enabled": False})
    assert replaced.status_code == 200
    assert (await http.get(f"/api/v1/rules/{rule_name}")).json()["enabled"] is False
    names = [r["name"] for r in (await http.get("/api/v1/rules")).json()["items"]]
    assert rule_name in names
    assert (await http.delete(f"/api/v1/rules/{rule_name}")).status_code == 204
    missing = await http.get(f"/api/v1/rules/{rule_name}")
    assert missing.status_code == 404
    assert (await http.delete(f"/api/v1/rules/{rule_name}")).status_code == 404


async def test_put_refuses_invalid_rules_with_positions(http, rule_name):
    """An invalid rule is refused with 422 and every error's position; nothing is saved."""
    response = await http.put(f"/api/v1/rules/{rule_name}", json={"when": 'inside("nowhere") and soc < "x"'})
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["errors"][0]["field"] == "when"
    assert problem["errors"][0]["line"] == 1
    unknown_field = await http.put(f"/api/v1/rules/{rule_name}", json={"when": "soc < 1", "whenever": 1})
    assert unknown_field.status_code == 400
    assert (await http.get(f"/api/v1/rules/{rule_name}")).status_code == 404


async def test_zones_put_get_delete(http, rule_name):
    """Zones are created, read, listed and deleted; a bad zone is refused."""
    name = f"z-{rule_name}"
    polygon = {"kind": "polygon", "vertices": [{"lat": 0, "lon": 0}, {"lat": 0, "lon": 1}, {"lat": 1, "lon": 1}]}
    assert (await http.put(f"/api/v1/zones/{name}", json=polygon)).status_code == 201
    assert (await http.get(f"/api/v1/zones/{name}")).json() == polygon
    assert name in (await http.get("/api/v1/zones")).json()["items"]
    bad = await http.put(f"/api/v1/zones/{name}", json={"kind": "circle", "lat": 0, "lon": 0, "radius_m": -1})
    assert bad.status_code == 400
    assert (await http.delete(f"/api/v1/zones/{name}")).status_code == 204
    assert (await http.get(f"/api/v1/zones/{name}")).status_code == 404


async def test_backtest_replays_history(hub, http, clients, vid, rule_name):
    """A backtest over stored history returns the alerts the rule would have raised and cleared, with times."""
    t0 = round(time.time()) - 3600
    vehicle = await clients(hub.mqtt_port, vid).connect()
    for offset, temp in ((0, 40), (10, 70), (20, 72), (30, 45), (40, 80), (42, 41)):
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"ts": t0 + offset, "battery": {"temp_c": temp}})
    await http.put(
        f"/api/v1/rules/{rule_name}",
        json={"when": "battery.temp_c > 60", "for": "5s", "message": "hot {battery.temp_c}"},
    )
    response = await http.post(
        f"/api/v1/rules/{rule_name}/test", json={"vehicle_id": vid, "from": t0 - 1, "to": t0 + 100}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["rows"] == 6
    events = [(e["event"], e["ts"] - t0) for e in result["events"]]
    assert events == [("raised", 15), ("cleared", 30)]
    assert result["events"][0]["message"] == "hot 70"
    assert (await http.get("/api/v1/alerts", params={"rule": rule_name})).json()["items"] == []

    draft = await http.post(
        f"/api/v1/rules/{rule_name}/test",
        json={"vehicle_id": vid, "from": t0 - 1, "to": t0 + 100, "rule": {"when": "battery.temp_c > 75"}},
    )
    assert [(e["event"], e["ts"] - t0) for e in draft.json()["events"]] == [("raised", 40), ("cleared", 42)]


async def test_rules_file_loads_at_start(store_url, tmp_path):
    """Rules and zones in the `rules.file` TOML are loaded at start-up and served by the API."""
    path = tmp_path / "rules.toml"
    path.write_text(
        """
[zones.depot]
kind = "circle"
lat = 19.43
lon = -99.13
radius_m = 300

[rules.hot-battery]
when = "battery.temp_c > 60"
for = "30s"
severity = "critical"
message = "Battery at {battery.temp_c} C"

[rules.left-depot]
when = 'left("depot")'
clear_when = 'inside("depot")'
"""
    )
    async with Hub(hub_settings(store_url, **{"rules.file": str(path)})) as hub:
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}")
        try:
            names = [r["name"] for r in (await http.get("/api/v1/rules")).json()["items"]]
            assert names == ["hot-battery", "left-depot"]
            assert (await http.get("/api/v1/rules/hot-battery")).json()["for"] == "30s"
            assert "depot" in (await http.get("/api/v1/zones")).json()["items"]
        finally:
            await http.aclose()


async def test_bad_rules_file_stops_start_up_with_position(store_url, tmp_path):
    """A rule in the file that does not compile stops start-up naming the rule, line and column."""
    path = tmp_path / "rules.toml"
    path.write_text('[rules.broken]\nwhen = "soc <"\n')
    with pytest.raises(ConfigError, match=r"rule 'broken' is invalid:\n  when: .* at line 1, column 6"):
        async with Hub(hub_settings(store_url, **{"rules.file": str(path)})):
            pass


async def test_zones_from_settings_and_zones_file(store_url, tmp_path, clients, vid):
    """Zones written inline in the settings file and in `rules.zones_file` are loaded, listed and used by rules."""
    zones_file = tmp_path / "zones.toml"
    zones_file.write_text(
        '[zones.yard]\nkind = "polygon"\n'
        "vertices = [{lat = 10.0, lon = 10.0}, {lat = 10.0, lon = 10.1}, {lat = 10.1, lon = 10.1}]\n"
    )
    config = tmp_path / "fleethub.toml"
    config.write_text(
        f'[rules]\nzones_file = "{zones_file}"\n\n'
        '[rules.zones.depot]\nkind = "circle"\nlat = 19.4326\nlon = -99.1332\nradius_m = 500\n'
    )
    base = hub_settings(store_url)
    settings = load_settings(config, environ={}, overrides={"store.url": store_url, "mqtt.port": 0, "http.port": 0})
    settings = msgspec.structs.replace(base, rules=settings.rules)
    async with Hub(settings) as hub, httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}") as http:
        zones = (await http.get("/api/v1/zones")).json()["items"]
        assert zones["depot"] == {"kind": "circle", "lat": 19.4326, "lon": -99.1332, "radius_m": 500.0}
        assert zones["yard"]["kind"] == "polygon"
        unknown = await http.put("/api/v1/rules/in-nowhere", json={"when": 'inside("nowhere")'})
        assert unknown.status_code == 422
        assert "nowhere" in unknown.text
        created = await http.put("/api/v1/rules/in-yard", json={"when": 'inside("yard")'})
        assert created.status_code == 201, created.text
        watcher = await clients(hub.mqtt_port).connect()
        await watcher.subscribe("alerts/#")
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"gps": {"lat": 10.01, "lon": 10.05}})
        _, raised = await watcher.next_message(f"/in-yard/{vid}")
        assert raised["event"] == "raised"

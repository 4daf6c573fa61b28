"""Every operator write over HTTP leaves exactly one audit entry, committed with the change."""

from collections import Counter

from security import CLI

EXPECTED = Counter(
    {
        "user.add": 1,
        "token.create": 1,
        "token.revoke": 1,
        "user.remove": 1,
        "vehicle.provision": 1,
        "vehicle.credentials.rotate": 1,
        "vehicle.credentials.revoke": 1,
        "rule.put": 1,
        "rule.delete": 1,
        "zone.put": 1,
        "zone.delete": 1,
        "command.send": 1,
        "command.cancel": 1,
        "job.create": 1,
        "job.pause": 1,
        "job.resume": 1,
        "job.cancel": 1,
    }
)


async def test_each_operator_write_is_audited_once(secure_hub, admin) -> None:
    """Users, tokens, credentials, rules, zones, commands and jobs: one entry per change, with actor and target."""
    before = {e["id"] for e in (await admin.get("/api/v1/audit", params={"limit": 1000})).json()["items"]}
    await secure_hub.security.provision("veh-parked", "acme", actor=CLI)

    async def ok(method: str, path: str, status: int, **kwargs):
        response = await admin.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        return response.json() if response.content else None

    await ok("POST", "/api/v1/users", 201, json={"name": "olga", "role": "operator", "fleets": ["acme"]})
    token = await ok("POST", "/api/v1/tokens", 201, json={"user": "olga"})
    await ok("DELETE", f"/api/v1/tokens/{token['id']}", 204)
    await ok("DELETE", "/api/v1/users/olga", 204)
    await ok("POST", "/api/v1/vehicles", 201, json={"vehicle_id": "veh-audit", "fleet": "acme"})
    await ok("POST", "/api/v1/vehicles/veh-audit/credentials/rotate", 200)
    await ok("POST", "/api/v1/vehicles/veh-audit/credentials/revoke", 200)
    await ok("PUT", "/api/v1/rules/audited", 201, json={"when": "soc < 5"})
    await ok("DELETE", "/api/v1/rules/audited", 204)
    await ok("PUT", "/api/v1/zones/audited", 201, json={"kind": "circle", "lat": 1, "lon": 2, "radius_m": 3})
    await ok("DELETE", "/api/v1/zones/audited", 204)
    command = await ok("POST", "/api/v1/vehicles/veh-parked/commands", 202, json={"name": "locate"})
    await ok("DELETE", f"/api/v1/vehicles/veh-parked/commands/{command['id']}", 200)
    job = await ok("POST", "/api/v1/commands", 202, json={"selector": {"fleet": "acme"}, "name": "lock", "rate": 0.01})
    for action in ("pause", "resume", "cancel"):
        await ok("POST", f"/api/v1/commands/jobs/{job['id']}/{action}", 200)
    entries = [
        e for e in (await admin.get("/api/v1/audit", params={"limit": 1000})).json()["items"] if e["id"] not in before
    ]
    # The vehicle provisioned above by the CLI is not part of this run.
    entries = [e for e in entries if e["actor"] != "cli"]
    assert Counter(e["action"] for e in entries) == EXPECTED
    assert {e["actor"] for e in entries} == {"root"}
    by_action = {e["action"]: e for e in entries}
    assert by_action["command.send"]["target"] == command["id"]
    assert by_action["command.send"]["fleet"] == "acme"
    assert by_action["job.cancel"]["target"] == job["id"]
    assert by_action["rule.put"]["detail"]["created"] is True

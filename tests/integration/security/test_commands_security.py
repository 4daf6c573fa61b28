"""Remote commands with authentication on: roles, fleet scope, who sent what, and the vehicle's own topics."""

import json
import uuid

from security import CLI, Role
from tests.helpers import eventually
from tests.integration.security.conftest import bearer


async def provision(hub, fleet: str) -> tuple[str, str]:
    made = await hub.security.provision(f"veh-{uuid.uuid4().hex[:8]}", fleet, actor=CLI)
    return made.vehicle_id, made.secret


async def test_operator_commands_its_fleet_and_the_vehicle_answers_on_its_own_topics(hub, http, clients, token_for):
    car, secret = await provision(hub, "acme")
    other, _ = await provision(hub, "globex")
    olga = bearer(await token_for("olga", Role.OPERATOR, "acme"))
    vera = bearer(await token_for("vera", Role.VIEWER, "acme"))
    vehicle = clients(car, username=car, password=secret)
    assert await vehicle.connect() == 0
    assert await vehicle.subscribe(f"vehicles/{car}/commands/+") == 1

    body = {"name": "honk", "args": {"times": 1}}
    refused = await http.post(f"/api/v1/vehicles/{car}/commands", json=body, headers=vera)
    assert refused.status_code == 403
    hidden = await http.post(f"/api/v1/vehicles/{other}/commands", json=body, headers=olga)
    assert hidden.status_code == 404
    # The header names the caller only in development mode; here the token does.
    sent = await http.post(f"/api/v1/vehicles/{car}/commands", json=body, headers={**olga, "X-Requested-By": "mallory"})
    assert sent.status_code == 202, sent.text
    command = sent.json()
    assert command["requested_by"] == "olga"

    topic, payload = await vehicle.next_message()
    assert topic == f"vehicles/{car}/commands/{command['id']}"
    assert json.loads(payload)["name"] == "honk"
    await vehicle.publish(f"{topic}/result", {"status": "succeeded", "detail": "honked"})

    async def succeeded() -> bool:
        got = await http.get(f"/api/v1/vehicles/{car}/commands/{command['id']}", headers=vera)
        assert got.status_code == 200
        assert got.json()["state"] == "succeeded"
        return True

    await eventually(succeeded)
    assert (await http.get(f"/api/v1/vehicles/{other}/commands", headers=vera)).status_code == 404
    admin = bearer(await token_for("root", Role.ADMIN))
    entries = (await http.get("/api/v1/audit?action=command.send", headers=admin)).json()["items"]
    assert [(e["actor"], e["vehicle_id"], e["target"]) for e in entries] == [("olga", car, command["id"])]


async def test_jobs_stay_inside_the_callers_fleets(hub, http, token_for):
    car, _ = await provision(hub, "acme")
    await provision(hub, "globex")
    olga = bearer(await token_for("olga", Role.OPERATOR, "acme"))
    gus = bearer(await token_for("gus", Role.OPERATOR, "globex"))
    job = {"selector": {}, "name": "locate", "rate": 50}

    foreign = await http.post("/api/v1/commands", json={**job, "selector": {"fleet": "globex"}}, headers=olga)
    assert foreign.status_code == 404
    created = await http.post("/api/v1/commands", json=job, headers=olga)
    assert created.status_code == 202, created.text
    report = created.json()
    # An operator of one fleet targets that fleet without naming it.
    assert report["selector"]["fleet"] == "acme"
    assert report["progress"]["total"] == 1
    job_url = f"/api/v1/commands/jobs/{report['id']}"
    assert (await http.get(job_url, headers=olga)).status_code == 200
    assert (await http.get(job_url, headers=gus)).status_code == 404
    assert (await http.post(f"{job_url}/cancel", headers=gus)).status_code == 404
    listed = (await http.get("/api/v1/commands/jobs", headers=gus)).json()["items"]
    assert report["id"] not in [j["id"] for j in listed]
    outcomes = (await http.get(job_url, headers=olga)).json()["outcomes"]
    assert [o["vehicle_id"] for o in outcomes] == [car]
    # A refused change is not audited; one that took effect is, with who did it.
    assert (await http.post(f"{job_url}/resume", headers=olga)).status_code == 409
    assert (await http.post(f"{job_url}/cancel", headers=olga)).status_code == 200
    admin = bearer(await token_for("root", Role.ADMIN))
    changes = []
    for action in ("job.pause", "job.resume", "job.cancel"):
        entries = (await http.get(f"/api/v1/audit?action={action}", headers=admin)).json()["items"]
        changes += [(e["action"], e["actor"], e["target"]) for e in entries]
    assert changes == [("job.cancel", "olga", report["id"])]

"""Fleet jobs: a command rolled out at a rate, paused, resumed, cancelled, and carried across a restart."""

import asyncio
import uuid

import httpx
import pytest

from commands import CommandQuery
from firmware_sim import Fleet, SimConfig
from fleethub.hub import Hub
from tests.helpers import eventually
from tests.integration.commands.conftest import hub_settings


async def make_twins(clients, hub: Hub, prefix: str, count: int, tags: dict | None = None) -> list[str]:
    """`count` vehicles with twins, none connected."""
    vids = [f"{prefix}{i:03d}" for i in range(count)]
    for vid in vids:
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"soc": 50.0, "speed": 0})
        vehicle.close()
    if tags:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}") as http:
            for vid in vids[: len(vids) // 2]:
                assert (await http.patch(f"/api/v1/vehicles/{vid}/tags", json=tags)).status_code == 200

    async def all_offline() -> bool:
        assert hub.commands is not None
        return not set(vids) & hub.commands.online_vehicles

    await eventually(all_offline)
    return vids


async def job_when(http: httpx.AsyncClient, job_id: str, check, wait_s: float = 30) -> dict:
    async def poll():
        got = (await http.get(f"/api/v1/commands/jobs/{job_id}")).json()
        return got if check(got) else None

    return await eventually(poll, wait_s=wait_s, interval=0.1)


async def test_a_job_over_200_simulated_vehicles_reaches_a_correct_report(hub, http):
    """200 simulated vehicles get a charge limit at 80 vehicles/s; every one succeeds and the report says so."""
    prefix = f"j{uuid.uuid4().hex[:5]}-"
    config = SimConfig(vehicles=200, interval_s=60.0, port=hub.mqtt_port, prefix=prefix, seed=3, ramp_s=1.0)
    async with Fleet(config) as fleet:
        async with asyncio.timeout(30):
            await fleet.wait_connected()

        async def all_twins():
            page = (await http.get("/api/v1/vehicles", params={"limit": 1000})).json()["items"]
            return len([t for t in page if t["vehicle_id"].startswith(prefix)]) == 200

        await eventually(all_twins, wait_s=30)
        response = await http.post(
            "/api/v1/commands",
            json={
                "selector": {"fleet": "default", "filter": "soc >= 0"},
                "name": "set_charge_limit",
                "args": {"limit": 70},
                "rate": 80,
                "ttl_s": 120,
            },
            headers={"X-Requested-By": "depot-manager"},
        )
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/api/v1/commands/jobs/{job['id']}"
        assert (job["progress"]["total"], job["requested_by"]) == (200, "depot-manager")
        final = await job_when(http, job["id"], lambda j: j["state"] == "completed", wait_s=60)
        assert fleet.commands_answered >= 200

    progress = final["progress"]
    assert (progress["total"], progress["dispatched"], progress["finished"]) == (200, 200, 200), progress
    assert progress["states"]["succeeded"] == 200
    assert sum(progress["states"].values()) == 200
    assert {o["state"] for o in final["outcomes"]} == {"succeeded"}
    assert sorted(o["vehicle_id"] for o in final["outcomes"]) == config.vehicle_ids()
    assert [t["state"] for t in final["history"]] == ["running", "completed"]
    # The rate limit held: no one-second window saw more than 80 commands created (plus the one saved up).
    commands = await hub.commands.store.query(CommandQuery(job_id=job["id"], limit=1000))
    created = sorted(c.created_at for c in commands)
    assert len(created) == 200
    for i, start in enumerate(created):
        assert sum(1 for t in created[i:] if t < start + 1.0) <= 81
    twin = (await http.get(f"/api/v1/vehicles/{config.vehicle_ids()[0]}/twin")).json()
    assert twin["reported"]["charge_limit"] == 70


async def test_pause_resume_and_cancel(hub, http, clients):
    """A paused job creates no commands; resumed it carries on; cancelled it cancels what waits and skips the rest."""
    vids = await make_twins(clients, hub, f"p{uuid.uuid4().hex[:5]}-", 8, tags={"depot": "north"})
    targets = vids[:4]
    created = await http.post(
        "/api/v1/commands",
        json={"selector": {"tags": {"depot": "north"}}, "name": "lock", "rate": 2},
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    await job_when(http, job_id, lambda j: j["progress"]["dispatched"] >= 1)
    paused = await http.post(f"/api/v1/commands/jobs/{job_id}/pause", headers={"X-Requested-By": "maria"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    held = paused.json()["progress"]["dispatched"]
    assert held < 4
    await asyncio.sleep(1.2)
    assert (await http.get(f"/api/v1/commands/jobs/{job_id}")).json()["progress"]["dispatched"] == held
    assert (await http.post(f"/api/v1/commands/jobs/{job_id}/pause")).status_code == 409
    assert (await http.post(f"/api/v1/commands/jobs/{job_id}/resume")).json()["state"] == "running"
    await job_when(http, job_id, lambda j: j["progress"]["dispatched"] > held)
    cancelled = await http.post(f"/api/v1/commands/jobs/{job_id}/cancel", headers={"X-Requested-By": "ops"})
    assert cancelled.status_code == 200
    report = (await http.get(f"/api/v1/commands/jobs/{job_id}")).json()
    assert report["state"] == "cancelled"
    assert report["finished_at"] is not None
    assert sorted(o["vehicle_id"] for o in report["outcomes"]) == targets
    assert {o["state"] for o in report["outcomes"]} <= {"cancelled", "skipped"}
    assert report["progress"]["states"]["cancelled"] == report["progress"]["dispatched"]
    assert [t["state"] for t in report["history"]] == ["running", "paused", "running", "cancelled"]
    assert [t.get("detail") for t in report["history"]][1:] == [
        "paused by maria",
        "resumed by anonymous",
        "cancelled by ops",
    ]
    assert (await http.post(f"/api/v1/commands/jobs/{job_id}/resume")).status_code == 409
    listed = (await http.get("/api/v1/commands/jobs")).json()["items"]
    assert [j["id"] for j in listed] == [job_id]


async def test_a_job_resumes_where_it_stopped_after_a_restart(db, clients):
    """A job stopped half way by a restart sends to the remaining vehicles once each, then completes."""
    settings = hub_settings(db)
    async with Hub(settings) as hub:
        vids = await make_twins(clients, hub, f"r{uuid.uuid4().hex[:5]}-", 12)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=20) as http:
            body = {"selector": {"vehicle_ids": vids}, "name": "honk", "rate": 8, "ttl_s": 1}
            job_id = (await http.post("/api/v1/commands", json=body)).json()["id"]
            half = await job_when(http, job_id, lambda j: j["progress"]["dispatched"] >= 3)
            assert half["progress"]["dispatched"] < 12

    async with Hub(settings) as hub:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=20) as http:
            final = await job_when(http, job_id, lambda j: j["state"] == "completed")
        commands = await hub.commands.store.query(CommandQuery(job_id=job_id, limit=100))
    assert sorted(c.vehicle_id for c in commands) == vids
    assert final["progress"]["states"]["expired"] == 12
    assert final["progress"]["not_dispatched"] == 0


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"selector": {"fleet": "nobody"}, "name": "lock", "rate": 1}, 422, "no_vehicles"),
        ({"selector": {"filter": "soc >"}, "name": "lock", "rate": 1}, 422, "bad_condition"),
        ({"selector": {}, "name": "lock", "rate": 0}, 422, "bad_rate"),
        ({"selector": {}, "name": "lock", "rate": 5000}, 422, "bad_rate"),
        ({"selector": {}, "name": "bad name", "rate": 1}, 422, "bad_name"),
        ({"selector": {"vehicle_ids": ["ghost-1"]}, "name": "lock", "rate": 1}, 404, None),
        ({"selector": {"colour": "red"}, "name": "lock", "rate": 1}, 400, None),
    ],
)
async def test_bad_jobs_are_refused(hub, http, clients, body, status, reason):
    """Empty selections, bad filters, rates and names get a clear error and create no job."""
    await make_twins(clients, hub, f"v{uuid.uuid4().hex[:5]}-", 1)
    response = await http.post("/api/v1/commands", json=body)
    assert response.status_code == status, response.text
    if reason is not None:
        assert response.json()["reason"] == reason
    assert (await http.get("/api/v1/commands/jobs")).json()["items"] == []

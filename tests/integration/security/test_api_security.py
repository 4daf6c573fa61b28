"""The HTTP API with authentication on: real HTTP requests with bearer tokens against a secure hub."""

import asyncio
import uuid

from security import CLI, Role
from tests.helpers import eventually
from tests.integration.security.conftest import bearer


def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


async def provision(hub, fleet: str) -> tuple[str, str]:
    made = await hub.security.provision(vid(), fleet, actor=CLI)
    return made.vehicle_id, made.secret


async def test_no_token_bad_token_and_expired_token_are_401(hub, http, token_for) -> None:
    """Without a token, with an unknown one and with an expired one, every data route answers 401."""
    missing = await http.get("/api/v1/vehicles")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert (await http.get("/api/v1/vehicles", headers=bearer("fh_nope"))).status_code == 401
    assert (await http.get("/api/v1/vehicles", headers={"Authorization": "Basic eDp5"})).status_code == 401
    short = await token_for("temp", Role.VIEWER, "acme", ttl_s=0.3)
    assert (await http.get("/api/v1/vehicles", headers=bearer(short))).status_code == 200
    await asyncio.sleep(0.5)
    assert (await http.get("/api/v1/vehicles", headers=bearer(short))).status_code == 401


async def test_health_is_public_and_metrics_need_a_token(hub, http, token_for) -> None:
    """/healthz is public by default; /metrics needs a token (auth.public_metrics = false)."""
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/metrics")).status_code == 401
    viewer = await token_for("ops", Role.VIEWER, "acme")
    assert (await http.get("/metrics", headers=bearer(viewer))).status_code == 200
    assert (await http.get("/schema/openapi.json")).status_code == 200


async def test_other_fleets_vehicles_are_404_and_lists_are_scoped(hub, http, token_for) -> None:
    """An operator of acme reads acme's vehicles; globex's are 404 on every vehicle route and absent from lists."""
    mine, _ = await provision(hub, "acme")
    theirs, _ = await provision(hub, "globex")
    op = bearer(await token_for("olga", Role.OPERATOR, "acme"))
    assert (await http.get(f"/api/v1/vehicles/{mine}/twin", headers=op)).status_code == 200
    for path in (
        f"/api/v1/vehicles/{theirs}/twin",
        f"/api/v1/vehicles/{theirs}/history",
        f"/api/v1/vehicles/{theirs}/trips",
        "/api/v1/vehicles/no-such-vehicle/twin",
    ):
        response = await http.get(path, headers=op)
        assert response.status_code == 404, path
    patched = await http.patch(f"/api/v1/vehicles/{theirs}/twin/desired", json={"x": 1}, headers=op)
    assert patched.status_code == 404
    listed = (await http.get("/api/v1/vehicles", headers=op)).json()
    assert [d["vehicle_id"] for d in listed["items"]] == [mine]
    assert (await http.get("/api/v1/vehicles?fleet=globex", headers=op)).json()["items"] == []
    history = await http.get(f"/api/v1/history?vehicle={theirs}", headers=op)
    assert history.status_code == 404
    assert (await http.get("/api/v1/history?fleet=globex", headers=op)).status_code == 404
    assert (await http.get("/api/v1/history?fleet=acme", headers=op)).status_code == 200
    admin = bearer(await token_for("root", Role.ADMIN))
    everyone = (await http.get("/api/v1/vehicles", headers=admin)).json()
    assert {d["vehicle_id"] for d in everyone["items"]} == {mine, theirs}


async def test_missing_role_is_403_and_writes_are_audited(hub, http, token_for) -> None:
    """A viewer may read but not change desired state (403); an operator's change is in the audit log."""
    car, _ = await provision(hub, "acme")
    viewer = bearer(await token_for("vera", Role.VIEWER, "acme"))
    op = bearer(await token_for("olga", Role.OPERATOR, "acme"))
    assert (await http.get(f"/api/v1/vehicles/{car}/twin", headers=viewer)).status_code == 200
    denied = await http.patch(f"/api/v1/vehicles/{car}/twin/desired", json={"charge_limit": 80}, headers=viewer)
    assert denied.status_code == 403
    assert "twins:write" in denied.json()["detail"]
    ok = await http.patch(f"/api/v1/vehicles/{car}/twin/desired", json={"charge_limit": 80}, headers=op)
    assert ok.status_code == 200
    assert (await http.get("/api/v1/audit", headers=op)).status_code == 403
    admin = bearer(await token_for("root", Role.ADMIN))
    entries = (await http.get(f"/api/v1/audit?vehicle={car}&action=twin.desired", headers=admin)).json()["items"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["actor"] == "olga"
    assert entry["fleet"] == "acme"
    assert entry["remote"].startswith("127.0.0.1:")
    assert entry["detail"]["patch"] == {"charge_limit": 80}
    provisioned = (await http.get(f"/api/v1/audit?vehicle={car}&actor=cli", headers=admin)).json()["items"]
    assert [e["action"] for e in provisioned] == ["vehicle.provision"]


async def test_provisioning_api_rotate_and_revoke(hub, http, clients, token_for) -> None:
    """An admin provisions a vehicle (secret shown once), the secret logs in, rotation replaces it, revoke kicks it."""
    admin = bearer(await token_for("root", Role.ADMIN))
    car = vid()
    made = await http.post("/api/v1/vehicles", json={"vehicle_id": car, "fleet": "acme"}, headers=admin)
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert (await http.post("/api/v1/vehicles", json={"vehicle_id": car}, headers=admin)).status_code == 409
    twin = (await http.get(f"/api/v1/vehicles/{car}/twin", headers=admin)).json()
    assert twin["fleet"] == "acme"
    first = clients(car, username=car, password=secret)
    assert await first.connect() == 0
    rotated = (await http.post(f"/api/v1/vehicles/{car}/credentials/rotate", headers=admin)).json()["secret"]
    assert await clients(car, username=car, password=secret).connect() != 0
    second = clients(car, username=car, password=rotated)
    assert await second.connect() == 0
    revoked = await http.post(f"/api/v1/vehicles/{car}/credentials/revoke", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    assert await second.wait_disconnected(5)
    assert await clients(car, username=car, password=rotated).connect() != 0
    actions = [e["action"] for e in (await http.get(f"/api/v1/audit?vehicle={car}", headers=admin)).json()["items"]]
    assert actions == ["vehicle.credentials.revoke", "vehicle.credentials.rotate", "vehicle.provision"]


async def test_scoped_admin_provisions_only_into_its_fleets(hub, http, token_for) -> None:
    """An admin of acme cannot provision into globex, nor see globex's credentials."""
    acme_admin = bearer(await token_for("aa", Role.ADMIN, "acme"))
    other, _ = await provision(hub, "globex")
    denied = await http.post("/api/v1/vehicles", json={"vehicle_id": vid(), "fleet": "globex"}, headers=acme_admin)
    assert denied.status_code == 404
    assert (await http.get(f"/api/v1/vehicles/{other}/credentials", headers=acme_admin)).status_code == 404
    viewer = bearer(await token_for("vv", Role.VIEWER, "acme"))
    assert (await http.post("/api/v1/vehicles", json={"vehicle_id": vid()}, headers=viewer)).status_code == 403


async def test_csv_import_provisions_a_fleet(hub, http, clients, token_for) -> None:
    """POST /vehicles/import?fleet= provisions each CSV row, tags from extra columns, secrets returned once."""
    admin = bearer(await token_for("root", Role.ADMIN))
    a, b = vid(), vid()
    body = f"vehicle_id,depot\n{a},north\n{b},south\n"
    response = await http.post(
        "/api/v1/vehicles/import?fleet=acme", content=body, headers={**admin, "Content-Type": "text/csv"}
    )
    assert response.status_code == 201
    made = {v["vehicle_id"]: v["secret"] for v in response.json()["vehicles"]}
    assert set(made) == {a, b}
    twin = (await http.get(f"/api/v1/vehicles/{b}/twin", headers=admin)).json()
    assert (twin["fleet"], twin["tags"]) == ("acme", {"depot": "south"})
    assert await clients(a, username=a, password=made[a]).connect() == 0
    bad = await http.post("/api/v1/vehicles/import", content="id\nx\n", headers=admin)
    assert bad.status_code == 422


async def test_users_and_tokens_api(hub, http, token_for) -> None:
    """Admins create users; users issue, list and revoke their own tokens; a revoked token is 401 at once."""
    admin = bearer(await token_for("root", Role.ADMIN))
    created = await http.post(
        "/api/v1/users", json={"name": "mike", "role": "maintenance", "fleets": ["acme"]}, headers=admin
    )
    assert created.status_code == 201
    assert created.json()["fleets"] == ["acme"]
    issued = await http.post("/api/v1/tokens", json={"user": "mike", "label": "laptop"}, headers=admin)
    assert issued.status_code == 201
    mike = bearer(issued.json()["token"])
    me = (await http.get("/api/v1/users/me", headers=mike)).json()
    assert me == {"name": "mike", "role": "maintenance", "fleets": ["acme"]}
    own = (await http.post("/api/v1/tokens", json={"ttl_s": 60}, headers=mike)).json()
    assert (await http.post("/api/v1/tokens", json={"user": "root"}, headers=mike)).status_code == 403
    assert (await http.get("/api/v1/users", headers=mike)).status_code == 403
    listed = (await http.get("/api/v1/tokens", headers=mike)).json()["items"]
    assert {t["id"] for t in listed} == {issued.json()["id"], own["id"]}
    assert "token" not in listed[0]
    assert (await http.delete(f"/api/v1/tokens/{own['id']}", headers=mike)).status_code == 204
    assert (await http.get("/api/v1/users/me", headers=bearer(own["token"]))).status_code == 401
    assert (await http.delete(f"/api/v1/users/{'mike'}", headers=admin)).status_code == 204
    assert (await http.get("/api/v1/users/me", headers=mike)).status_code == 401
    acme_admin = bearer(await token_for("aa", Role.ADMIN, "acme"))
    escalate = await http.post(
        "/api/v1/users", json={"name": "eve", "role": "admin", "fleets": ["*"]}, headers=acme_admin
    )
    assert escalate.status_code == 403


async def test_bootstrap_token_is_an_admin(tmp_path) -> None:
    """auth.bootstrap_token, when set, is accepted as an admin of every fleet."""
    import httpx

    from fleethub.hub import Hub
    from tests.integration.security.conftest import secure_settings

    token = "b" * 40
    async with Hub(secure_settings(str(tmp_path / "b.db"), **{"auth.bootstrap_token": token})) as hub:
        base = f"http://127.0.0.1:{hub.http_port}"
        body = {"name": "first", "role": "admin", "fleets": ["*"]}
        made = await asyncio.to_thread(httpx.post, f"{base}/api/v1/users", json=body, headers=bearer(token))
        assert made.status_code == 201
        wrong = await asyncio.to_thread(httpx.get, f"{base}/api/v1/users", headers=bearer("b" * 39 + "c"))
        assert wrong.status_code == 401


async def test_alerts_are_scoped_acknowledged_by_the_caller_and_audited(hub, http, clients, token_for) -> None:
    """A maintenance user of acme sees and acks acme's alert; globex's maintenance sees nothing and gets 404."""
    admin = bearer(await token_for("root", Role.ADMIN))
    rule = await http.put("/api/v1/rules/hot", json={"when": "temp > 50", "severity": "critical"}, headers=admin)
    assert rule.status_code == 201
    car, secret = await provision(hub, "acme")
    client = clients(car, username=car, password=secret)
    assert await client.connect() == 0
    await client.publish(f"vehicles/{car}/telemetry", {"temp": 60})
    maria = bearer(await token_for("maria", Role.MAINTENANCE, "acme"))
    gus = bearer(await token_for("gus", Role.MAINTENANCE, "globex"))

    async def raised() -> list:
        return (await http.get("/api/v1/alerts?state=active", headers=maria)).json()["items"]

    alerts = await eventually(raised)
    alert_id = alerts[0]["id"]
    assert (await http.get("/api/v1/alerts", headers=gus)).json()["items"] == []
    assert (await http.get(f"/api/v1/alerts/{alert_id}", headers=gus)).status_code == 404
    assert (await http.post(f"/api/v1/alerts/{alert_id}/ack", json={}, headers=gus)).status_code == 404
    viewer = bearer(await token_for("vera", Role.VIEWER, "acme"))
    assert (await http.post(f"/api/v1/alerts/{alert_id}/ack", json={}, headers=viewer)).status_code == 403
    acked = await http.post(
        f"/api/v1/alerts/{alert_id}/ack", json={"user": "someone-else", "note": "on it"}, headers=maria
    )
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == "maria"
    entries = (await http.get("/api/v1/audit?action=alert.ack", headers=admin)).json()["items"]
    assert [(e["actor"], e["vehicle_id"], e["target"]) for e in entries] == [("maria", car, alert_id)]
    rule_entries = (await http.get("/api/v1/audit?action=rule.put", headers=admin)).json()["items"]
    assert rule_entries[0]["actor"] == "root"

"""The conventions the whole API keeps: one paging shape, RFC 3339 times, no null placeholders,
one charset per content type, and an accepted example for every request body."""

import asyncio
import re
import uuid

from security import CLI, Role
from tests.helpers import MqttClient, eventually
from tests.integration.api.conftest import walk_nulls

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# Every list route, with what it needs to hold more than one item once `_populate` ran.
LISTS = [
    "/api/v1/vehicles",
    "/api/v1/rules",
    "/api/v1/zones",
    "/api/v1/users",
    "/api/v1/tokens",
    "/api/v1/audit",
    "/api/v1/alerts",
    "/api/v1/commands/jobs",
    "/api/v1/vehicles/{vid}/commands",
    "/api/v1/vehicles/{vid}/history",
    "/api/v1/vehicles/{vid}/presence",
    "/api/v1/history?fleet=acme",
]


async def _populate(hub, admin) -> str:
    """Three of everything that lists: vehicles, rules, zones, users, tokens, alerts, commands, jobs, history."""
    tag = uuid.uuid4().hex[:6]
    vids = []
    for i in range(3):
        made = await hub.security.provision(f"veh-{tag}-{i}", "acme", actor=CLI)
        vids.append((made.vehicle_id, made.secret))
        await hub.security.add_user(f"user-{tag}-{i}", Role.VIEWER, ("acme",), actor=CLI)
        await hub.security.issue_token("root", actor=CLI)
        zone = {"kind": "circle", "lat": 1, "lon": 2, "radius_m": 100 + i}
        assert (await admin.put(f"/api/v1/zones/z-{tag}-{i}", json=zone)).status_code == 201
        rule = {"when": f"soc < {20 + i}", "severity": "warning", "message": "low"}
        assert (await admin.put(f"/api/v1/rules/low-{tag}-{i}", json=rule)).status_code == 201
    vid, secret = vids[0]
    car = MqttClient(hub.mqtt_port, vid, username=vid)
    car._client.username_pw_set(vid, secret)
    await car.connect()
    try:
        for soc in (10, 11, 12):
            await car.publish_and_wait(f"vehicles/{vid}/telemetry", {"soc": soc})
        car.drop()
        await asyncio.sleep(0.5)
        car = MqttClient(hub.mqtt_port, vid, username=vid)
        car._client.username_pw_set(vid, secret)
        await car.connect()
    finally:
        car.close()
    for name in ("locate", "honk", "lock"):
        sent = await admin.post(f"/api/v1/vehicles/{vid}/commands", json={"name": name})
        assert sent.status_code == 202
        job = await admin.post("/api/v1/commands", json={"selector": {"fleet": "acme"}, "name": name, "rate": 100})
        assert job.status_code == 202

    async def alerts_raised() -> bool:
        return len((await admin.get("/api/v1/alerts")).json()["items"]) >= 3

    async def presence_recorded() -> bool:
        return len((await admin.get(f"/api/v1/vehicles/{vid}/presence")).json()["items"]) >= 3

    await eventually(alerts_raised)
    await eventually(presence_recorded)
    return vid


async def test_every_list_pages_one_way_to_the_same_items(secure_hub, admin) -> None:
    """Every list is {items, next_cursor}; limit=1 pages through exactly the items of one big page, then no cursor."""
    vid = await _populate(secure_hub, admin)
    for template in LISTS:
        url, _, query = template.format(vid=vid).partition("?")
        base = dict(part.split("=") for part in query.split("&") if part)
        response = await admin.get(url, params={**base, "limit": 1000})
        assert response.status_code == 200, (url, response.text)
        whole = response.json()
        assert isinstance(whole["items"], list), url
        assert "next_cursor" not in whole, url
        assert len(whole["items"]) >= 2, url
        paged, cursor, pages = [], None, 0
        while True:
            params = {**base, "limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await admin.get(url, params=params)).json()
            assert len(page["items"]) <= 1, url
            paged.extend(page["items"])
            pages += 1
            cursor = page.get("next_cursor")
            if cursor is None:
                break
            assert pages <= len(whole["items"]), f"{url} pages past its items"
        assert paged == whole["items"], url


async def test_a_cursor_the_hub_did_not_make_is_refused(secure_hub, admin) -> None:
    """A forged or damaged cursor is a 422 `bad_cursor` problem on every list, never a 500 or a silent first page."""
    made = await secure_hub.security.provision(f"veh-{uuid.uuid4().hex[:6]}", "acme", actor=CLI)
    for template in LISTS:
        url, _, query = template.format(vid=made.vehicle_id).partition("?")
        base = dict(part.split("=") for part in query.split("&") if part)
        for cursor in ("not-a-cursor", "WzEsMiwzXQ", "%%%", "W10"):
            response = await admin.get(url, params={**base, "cursor": cursor})
            assert response.status_code == 422, (url, cursor, response.text)
            assert response.headers["content-type"] == "application/problem+json", url
            assert response.json()["reason"] == "bad_cursor", url


async def test_times_are_rfc3339_in_users_tokens_credentials_and_audit(secure_hub, admin) -> None:
    """Users, tokens, credentials and audit entries carry RFC 3339 times, not epoch numbers."""
    made = await secure_hub.security.provision(f"veh-{uuid.uuid4().hex[:6]}", "acme", actor=CLI)
    await secure_hub.security.revoke(made.vehicle_id, actor=CLI)
    token = (await admin.post("/api/v1/tokens", json={"label": "t"})).json()
    assert (await admin.delete(f"/api/v1/tokens/{token['id']}")).status_code == 204
    user = (await admin.get("/api/v1/users")).json()["items"][0]
    tokens = (await admin.get("/api/v1/tokens")).json()["items"]
    revoked = next(t for t in tokens if t["id"] == token["id"])
    credential = (await admin.get(f"/api/v1/vehicles/{made.vehicle_id}/credentials")).json()
    audit = (await admin.get("/api/v1/audit")).json()["items"]
    stamps = [
        user["created_at"],
        token["created_at"],
        token["expires_at"],
        revoked["revoked_at"],
        credential["created_at"],
        credential["revoked_at"],
        *(e["ts"] for e in audit),
        *(e["detail"]["expires_at"] for e in audit if e["action"] == "token.create"),
    ]
    assert stamps
    assert all(isinstance(s, str) and RFC3339.match(s) for s in stamps), stamps


async def test_responses_leave_out_fields_without_a_value(secure_hub, admin) -> None:
    """No response carries null for "nothing": unset times, the MQTT-only alert event, missing seq, last cursors."""
    vid = await _populate(secure_hub, admin)
    urls = [
        "/api/v1/vehicles",
        f"/api/v1/vehicles/{vid}/twin",
        f"/api/v1/vehicles/{vid}/credentials",
        f"/api/v1/vehicles/{vid}/commands",
        f"/api/v1/vehicles/{vid}/history",
        f"/api/v1/vehicles/{vid}/presence",
        f"/api/v1/vehicles/{vid}/trips",
        "/api/v1/alerts",
        "/api/v1/commands/jobs",
        "/api/v1/rules",
        "/api/v1/zones",
        "/api/v1/users",
        "/api/v1/users/me",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/healthz",
    ]
    for url in urls:
        response = await admin.get(url)
        assert response.status_code == 200, url
        assert walk_nulls(response.json()) == [], url
    alert = (await admin.get("/api/v1/alerts")).json()["items"][0]
    assert "event" not in alert
    assert "acknowledged_at" not in alert


async def test_content_types_name_their_charset_once(secure_hub, admin) -> None:
    """/metrics and CSV exports send one charset parameter, not two."""
    made = await secure_hub.security.provision(f"veh-{uuid.uuid4().hex[:6]}", "acme", actor=CLI)
    metrics = await admin.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=")
    assert metrics.headers["content-type"].count("charset") == 1
    csv = await admin.get(f"/api/v1/vehicles/{made.vehicle_id}/history", headers={"Accept": "text/csv"})
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv.text.startswith("vehicle_id,ts,received_at,seq,data")


async def test_every_request_body_has_an_example_its_route_accepts(secure_hub, admin) -> None:
    """Each operation with a body documents examples, and sending each example is never refused as malformed (400)."""
    await secure_hub.security.provision("veh-0007", "default", actor=CLI)
    schema = (await admin.get("/schema/openapi.json")).json()
    sent = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body is None:
                continue
            for media_type, content in body["content"].items():
                examples = content.get("schema", {}).get("examples") or [content.get("example")]
                assert examples, f"{method} {path} has no example"
                assert examples[0] is not None, f"{method} {path} has no example"
                for example in examples:
                    url = path.replace("{vehicle_id}", "veh-0007").replace("{name}", f"ex-{uuid.uuid4().hex[:6]}")
                    url = url.replace("{alert_id}", "no-such-alert").replace("{delivery_id}", "no-such-delivery")
                    url = url.replace("{schedule_id}", f"ex-{uuid.uuid4().hex[:6]}")
                    url = url.replace("{channel_id}", f"ex-{uuid.uuid4().hex[:6]}")
                    if media_type == "text/csv":
                        response = await admin.request(
                            method, url, content=example, headers={"Content-Type": media_type}
                        )
                    else:
                        response = await admin.request(method, url, json=example)
                    assert response.status_code != 400, (method, path, example, response.text)
                    assert response.status_code < 500, (method, path, example, response.text)
                    sent += 1
    assert sent >= 20

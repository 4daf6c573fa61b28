"""The HTTP API over a real twin service and a real SQLite store."""

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api import ApiDeps, ComponentHealth, Health, create_app
from kernel import SqliteDatabase
from twin import Inbound, IngestMetrics, Limits, MessageKind, SqliteStore, TwinService, running


async def _ok_health() -> Health:
    return Health("ok", {"store": ComponentHealth("ok")})


@pytest.fixture
async def env(tmp_path):
    registry = CollectorRegistry()
    async with SqliteDatabase(f"sqlite:///{tmp_path}/api.db") as db, SqliteStore(db) as store:
        service = TwinService(store, limits=Limits(max_depth=3), metrics=IngestMetrics(registry))
        async with running(service):
            app = create_app(
                ApiDeps(
                    service=service,
                    history=store,
                    registry=registry,
                    health=_ok_health,
                    max_page_size=50,
                    auth_enabled=False,
                )
            )
            # Same event loop as the service: the consumer's futures must not cross loops.
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                yield client, service


async def report(service: TwinService, vid: str, body: dict) -> None:
    fut = asyncio.get_running_loop().create_future()
    await service.submit(Inbound(vid, MessageKind.TELEMETRY, json.dumps(body).encode(), time.time(), 1, fut))
    await fut


async def test_list_paginates_and_filters(env) -> None:
    """GET /vehicles pages with a cursor and filters by connected."""
    client, service = env
    for i in range(5):
        await report(service, f"veh-{i}", {"soc": i})
    first = (await client.get("/api/v1/vehicles", params={"limit": 2})).json()
    assert [v["vehicle_id"] for v in first["items"]] == ["veh-0", "veh-1"]
    second = (await client.get("/api/v1/vehicles", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [v["vehicle_id"] for v in second["items"]] == ["veh-2", "veh-3"]
    last = (await client.get("/api/v1/vehicles", params={"limit": 2, "cursor": second["next_cursor"]})).json()
    assert [v["vehicle_id"] for v in last["items"]] == ["veh-4"]
    assert last["next_cursor"] is None
    online = (await client.get("/api/v1/vehicles", params={"connected": "true"})).json()
    assert online["items"] == []


async def test_twin_and_etag(env) -> None:
    """GET twin returns the document with its version as ETag."""
    client, service = env
    await report(service, "veh-t", {"soc": 64.5, "gps": {"lat": 19.43, "lon": -99.13}, "ts": time.time()})
    resp = await client.get("/api/v1/vehicles/veh-t/twin")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["reported"] == {"soc": 64.5, "gps": {"lat": 19.43, "lon": -99.13}}
    assert resp.headers["etag"] == f'"{doc["version"]}"'
    assert doc["metadata"]["reported"]["gps"]["lat"]["ts"].endswith("Z")


async def test_unknown_vehicle_is_a_problem_document(env) -> None:
    """A missing vehicle is a 404 problem document."""
    client, _ = env
    resp = await client.get("/api/v1/vehicles/ghost/twin")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == 404
    assert body["title"] == "Not found"
    assert "ghost" in body["detail"]


async def test_patch_desired_and_if_match(env) -> None:
    """PATCH desired merges, returns the new delta, and honours If-Match."""
    client, service = env
    await report(service, "veh-d", {"charge_limit": 90})
    resp = await client.patch("/api/v1/vehicles/veh-d/twin/desired", json={"charge_limit": 80})
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["delta"] == {"charge_limit": 80}
    stale = await client.patch(
        "/api/v1/vehicles/veh-d/twin/desired", json={"charge_limit": 70}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 409
    assert stale.json()["current_version"] == doc["version"]
    fresh = await client.patch(
        "/api/v1/vehicles/veh-d/twin/desired", json={"charge_limit": 70}, headers={"If-Match": f'"{doc["version"]}"'}
    )
    assert fresh.status_code == 200
    assert fresh.json()["desired"] == {"charge_limit": 70}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[1,2]", 400),
        (json.dumps({"a": {"b": {"c": {"d": 1}}}}).encode(), 422),
    ],
)
async def test_bad_desired_patch_is_refused(env, body: bytes, status: int) -> None:
    """Malformed or over-limit desired patches are problem documents and change nothing."""
    client, service = env
    await report(service, "veh-b", {"soc": 1})
    resp = await client.patch(
        "/api/v1/vehicles/veh-b/twin/desired", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/v1/vehicles/veh-b/twin")).json()["desired"] == {}


async def test_history_query(env) -> None:
    """History filters by time range and fields, in either order."""
    client, service = env
    base = time.time() - 100
    for i in range(5):
        await report(service, "veh-h", {"soc": 50 - i, "speed": i, "ts": base + i, "seq": i})
    resp = await client.get(
        "/api/v1/vehicles/veh-h/history", params={"from": str(base + 1), "to": str(base + 4), "fields": "soc"}
    )
    assert resp.status_code == 200
    items = resp.json()["items"]
    assert [p["data"] for p in items] == [{"soc": 49}, {"soc": 48}, {"soc": 47}]
    assert [p["seq"] for p in items] == [1, 2, 3]
    desc = (await client.get("/api/v1/vehicles/veh-h/history", params={"order": "desc", "limit": 2})).json()
    assert [p["seq"] for p in desc["items"]] == [4, 3]
    bad = await client.get("/api/v1/vehicles/veh-h/history", params={"from": "last tuesday"})
    assert bad.status_code == 422
    missing = await client.get("/api/v1/vehicles/nobody/history")
    assert missing.status_code == 404


async def test_tags_patch(env) -> None:
    """Tags merge like desired state and bump the version."""
    client, service = env
    await report(service, "veh-g", {"soc": 1})
    resp = await client.patch("/api/v1/vehicles/veh-g/tags", json={"depot": "north", "model": "Model 3"})
    assert resp.json()["tags"] == {"depot": "north", "model": "Model 3"}
    resp = await client.patch("/api/v1/vehicles/veh-g/tags", json={"depot": None})
    assert resp.json()["tags"] == {"model": "Model 3"}


async def test_openapi_health_and_metrics(env) -> None:
    """The OpenAPI schema, health and Prometheus metrics are served."""
    client, service = env
    await report(service, "veh-m", {"soc": 1})
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/vehicles/{vehicle_id}/twin/desired" in schema["paths"]
    assert (await client.get("/healthz")).json()["status"] == "ok"
    await client.get("/api/v1/vehicles")
    text = (await client.get("/metrics")).text
    assert "fleethub_ingest_messages_accepted_total 1.0" in text
    assert 'fleethub_http_request_seconds_count{method="GET",route="/api/v1/vehicles",status="200"}' in text


async def test_twin_as_of_a_time_is_rebuilt_from_history(env) -> None:
    """GET twin?at= replays history up to that time, honouring per-key device timestamps."""
    client, service = env
    base = time.time() - 1000
    await report(service, "veh-at", {"soc": 90, "gps": {"lat": 1.0, "lon": 2.0}, "ts": base, "seq": 1})
    await report(service, "veh-at", {"soc": 80, "ts": base + 10, "seq": 2})
    # Arrives late but belongs before the second message: it must not win for soc.
    await report(service, "veh-at", {"soc": 85, "speed": 5, "ts": base + 5, "seq": 3})
    await report(service, "veh-at", {"soc": 70, "gps": None, "ts": base + 20, "seq": 4})
    at_7 = (await client.get("/api/v1/vehicles/veh-at/twin", params={"at": str(base + 7)})).json()
    assert at_7["reported"] == {"soc": 85, "gps": {"lat": 1.0, "lon": 2.0}, "speed": 5}
    at_15 = (await client.get("/api/v1/vehicles/veh-at/twin", params={"at": str(base + 15)})).json()
    assert at_15["reported"] == {"soc": 80, "gps": {"lat": 1.0, "lon": 2.0}, "speed": 5}
    assert at_15["rows"] == 3
    now = (await client.get("/api/v1/vehicles/veh-at/twin")).json()
    assert now["reported"] == {"soc": 70, "speed": 5}
    before = (await client.get("/api/v1/vehicles/veh-at/twin", params={"at": str(base - 1)})).json()
    assert before["reported"] == {}
    bad = await client.get("/api/v1/vehicles/veh-at/twin", params={"at": "soon"})
    assert bad.status_code == 422

"""History, aggregates, CSV export and trips over HTTP, with a real service and SQLite store."""

import asyncio
import csv
import io
import json
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api import ApiDeps, ComponentHealth, Health, create_app
from kernel import SqliteDatabase
from twin import Inbound, MessageKind, SqliteStore, TwinService, running

# A whole hour, three hours ago: buckets in the tests start at known places.
BASE = (time.time() - 3 * 3600) // 3600 * 3600


async def _ok_health() -> Health:
    return Health("ok", {"store": ComponentHealth("ok")})


@pytest.fixture
async def env(tmp_path):
    registry = CollectorRegistry()
    async with SqliteDatabase(f"sqlite:///{tmp_path}/history.db") as db, SqliteStore(db) as store:
        service = TwinService(store)
        async with running(service):
            app = create_app(
                ApiDeps(
                    service=service,
                    history=store,
                    registry=registry,
                    health=_ok_health,
                    max_history_rows=50,
                    # Tiny reads and chunks, so an export of a few rows spans several of each.
                    export_rows_per_read=2,
                    export_chunk_bytes=64,
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


async def _series(service: TwinService, vid: str, n: int, step: float = 20.0) -> None:
    for i in range(n):
        await report(service, vid, {"soc": 80 - i, "speed": i * 10, "ts": BASE + i * step, "seq": i})


async def _walk(client: httpx.AsyncClient, url: str, params: dict, key: str = "items") -> list[dict]:
    items, cursor = [], None
    while True:
        body = (await client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})).json()
        items.extend(body[key])
        if "next_cursor" not in body:
            return items
        cursor = body["next_cursor"]


async def test_raw_history_pages_with_a_cursor(env) -> None:
    """Pages of a vehicle's history join up into every row once, in either order."""
    client, service = env
    await _series(service, "veh-p", 7)
    url = "/api/v1/vehicles/veh-p/history"
    first = (await client.get(url, params={"limit": 3})).json()
    assert [p["seq"] for p in first["items"]] == [0, 1, 2]
    assert first["next_cursor"]
    assert [p["seq"] for p in await _walk(client, url, {"limit": 3})] == list(range(7))
    assert [p["seq"] for p in await _walk(client, url, {"limit": 2, "order": "desc"})] == list(range(6, -1, -1))
    capped = (await client.get(url, params={"limit": 500})).json()
    assert len(capped["items"]) == 7


async def test_vehicle_aggregate(env) -> None:
    """Minute buckets with per-field functions; day buckets carry the requested zone's offset."""
    client, service = env
    await _series(service, "veh-a", 6)  # three rows per minute
    url = "/api/v1/vehicles/veh-a/history/aggregate"
    body = (await client.get(url, params={"bucket": "1m", "agg": "soc:avg,speed:max,soc:count"})).json()
    assert body["bucket"] == "1m"
    assert [(b["rows"], b["values"]) for b in body["items"]] == [
        (3, {"soc:avg": 79.0, "speed:max": 20, "soc:count": 3}),
        (3, {"soc:avg": 76.0, "speed:max": 50, "soc:count": 3}),
    ]
    assert body["items"][0]["bucket"].endswith("Z")
    day = (await client.get(url, params={"bucket": "1d", "agg": "soc:min", "tz": "Asia/Kolkata"})).json()
    assert day["tz"] == "Asia/Kolkata"
    assert day["items"][0]["bucket"].endswith("T00:00:00+05:30")
    assert sum(b["rows"] for b in day["items"]) == 6


async def test_fleet_history_and_aggregates_by_tag(env) -> None:
    """Fleet-wide queries pick vehicles by tag and come back vehicle by vehicle."""
    client, service = env
    for vid, depot in (("veh-n1", "north"), ("veh-s1", "south"), ("veh-n2", "north")):
        await _series(service, vid, 3, step=600)
        await client.patch(f"/api/v1/vehicles/{vid}/tags", json={"depot": depot})
    rows = await _walk(client, "/api/v1/history", {"fleet": "default", "tag": "depot:north", "limit": 2})
    assert [(r["vehicle_id"], r["seq"]) for r in rows] == [(v, s) for v in ("veh-n1", "veh-n2") for s in range(3)]
    picked = (await client.get("/api/v1/history", params={"vehicle": ["veh-s1", "veh-n2"], "fields": "soc"})).json()
    assert [(r["vehicle_id"], r["data"]) for r in picked["items"][:2]] == [
        ("veh-n2", {"soc": 80}),
        ("veh-n2", {"soc": 79}),
    ]
    agg = await _walk(client, "/api/v1/history/aggregate", {"tag": "depot:north", "bucket": "1h", "agg": "soc:last"})
    assert [(b["vehicle_id"], b["rows"], b["values"]["soc:last"]) for b in agg] == [
        ("veh-n1", 3, 78),
        ("veh-n2", 3, 78),
    ]
    # Two values for one tag: no vehicle has both, so nothing is chosen (and nothing refused).
    both = await client.get("/api/v1/history", params={"tag": ["depot:north", "depot:south"]})
    assert (both.status_code, both.json()["items"]) == (200, [])
    same = await _walk(client, "/api/v1/history", {"tag": ["depot:south", "depot:south"], "fields": "soc"})
    assert {r["vehicle_id"] for r in same} == {"veh-s1"}


async def test_csv_export_streams_every_page(env, monkeypatch) -> None:
    """Accept: text/csv streams the whole range, read from the store a small page at a time."""
    client, service = env
    await _series(service, "veh-c", 9)
    store = service.store
    calls: list[int] = []
    original = store.history_page

    async def spy(query):
        calls.append(query.limit)
        return await original(query)

    monkeypatch.setattr(store, "history_page", spy)
    resp = await client.get(
        "/api/v1/vehicles/veh-c/history", params={"fields": "soc,speed"}, headers={"Accept": "text/csv"}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(resp.text)))
    assert table[0] == ["vehicle_id", "ts", "received_at", "seq", "soc", "speed"]
    assert [row[3] for row in table[1:]] == [str(i) for i in range(9)]
    assert table[1][0] == "veh-c"
    assert table[1][4:] == ["80", "0"]
    assert len(calls) == 5
    assert max(calls) == 2
    whole = await client.get("/api/v1/history", params={"vehicle": "veh-c"}, headers={"Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(whole.text)))
    assert rows[0][-1] == "data"
    assert json.loads(rows[1][-1]) == {"soc": 80, "speed": 0}


async def test_csv_aggregate_export(env) -> None:
    """Aggregates export as CSV with one column per field:function."""
    client, service = env
    await _series(service, "veh-x", 9, step=60)
    resp = await client.get(
        "/api/v1/history/aggregate",
        params={"vehicle": "veh-x", "bucket": "5m", "agg": "soc:max,speed:avg"},
        headers={"Accept": "text/csv"},
    )
    table = list(csv.reader(io.StringIO(resp.text)))
    assert table[0] == ["vehicle_id", "bucket", "rows", "soc:max", "speed:avg"]
    assert sum(int(r[2]) for r in table[1:]) == 9
    assert table[1][3] == "80"


@pytest.mark.parametrize(
    ("url", "params", "status", "reason"),
    [
        ("/api/v1/vehicles/veh-q/history/aggregate", {"bucket": "1m", "agg": "soc:median"}, 422, "bad_agg"),
        (
            "/api/v1/vehicles/veh-q/history/aggregate",
            {"bucket": "1d", "agg": "soc:avg", "tz": "Nowhere/X"},
            422,
            "bad_tz",
        ),
        ("/api/v1/vehicles/veh-q/history/aggregate", {"bucket": "2m", "agg": "soc:avg"}, 400, None),
        ("/api/v1/vehicles/veh-q/history", {"cursor": "garbage"}, 422, "bad_cursor"),
        ("/api/v1/history", {"from": "0"}, 422, "no_selection"),
        ("/api/v1/history", {"tag": "depot"}, 422, "bad_tag"),
        ("/api/v1/vehicles/ghost/history/aggregate", {"bucket": "1m", "agg": "soc:avg"}, 404, None),
        ("/api/v1/vehicles/ghost/trips", {}, 404, None),
        ("/api/v1/vehicles/veh-q/trips", {"from": "0"}, 422, "range_too_long"),
    ],
)
async def test_bad_queries_are_problem_documents(env, url, params, status, reason) -> None:
    """Malformed history queries are refused with a problem document saying what to fix."""
    client, service = env
    await report(service, "veh-q", {"soc": 1})
    resp = await client.get(url, params=params)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/problem+json")
    if reason:
        assert resp.json()["reason"] == reason


async def test_trips_endpoint(env) -> None:
    """Trips come from ignition, speed and position history within from/to."""
    client, service = env
    t = BASE
    for k in range(6):
        body = {"ignition": True, "speed": 40 + k, "gps": {"lat": 19.40 + 0.005 * k, "lon": -99.1}, "soc": 70 - k}
        await report(service, "veh-t", {**body, "ts": t + 60 * k, "seq": k})
    await report(service, "veh-t", {"ignition": False, "speed": 0, "ts": t + 360, "seq": 6})
    await report(service, "veh-t", {"ignition": False, "ts": t + 1200, "seq": 7})
    resp = await client.get("/api/v1/vehicles/veh-t/trips", params={"from": str(t - 60), "to": str(t + 3600)})
    assert resp.status_code == 200
    body = resp.json()
    (trip,) = body["trips"]
    assert trip["duration_s"] == 360
    assert trip["distance_source"] == "gps"
    assert trip["distance_km"] == pytest.approx(2.78, abs=0.01)
    assert trip["max_speed_kmh"] == 45
    assert trip["energy_used_pct"] == 5
    assert trip["ongoing"] is False
    assert body["stops"] == []


async def test_openapi_lists_history_endpoints(env) -> None:
    """The new history and trips endpoints are in the OpenAPI schema with their parameters."""
    client, _ = env
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/vehicles/{vehicle_id}/history",
        "/api/v1/vehicles/{vehicle_id}/history/aggregate",
        "/api/v1/history",
        "/api/v1/history/aggregate",
        "/api/v1/vehicles/{vehicle_id}/trips",
    ):
        assert path in paths
    names = {p["name"] for p in paths["/api/v1/history/aggregate"]["get"]["parameters"]}
    assert {"fleet", "tag", "vehicle", "bucket", "agg", "tz", "from", "to", "cursor"} <= names

"""Command requests the API refuses, and listing with filters and pages."""

import httpx
import pytest

from fleethub.hub import Hub
from tests.integration.commands.conftest import hub_settings, known_offline_vehicle

# Eleven levels of nesting, one more than limits.max_depth allows.
DEEP: dict = {"k": 1}
for _ in range(10):
    DEEP = {"n": DEEP}


@pytest.mark.parametrize(
    ("body", "params", "status", "reason"),
    [
        ({"name": "lock", "ttl_s": 0}, {}, 422, "bad_ttl"),
        ({"name": "lock", "ttl_s": 10_000_000}, {}, 422, "bad_ttl"),
        ({"name": "lo ck"}, {}, 422, "bad_name"),
        ({"name": "lock", "args": {"blob": "x" * 9000}}, {}, 422, "args_too_large"),
        ({"name": "lock", "args": DEEP}, {}, 422, "too_deep"),
        ({"name": "lock", "idempotency_key": ""}, {}, 422, "bad_idempotency_key"),
        ({"name": "lock"}, {"wait": "soon"}, 422, "bad_query"),
        ({"name": "lock"}, {"wait": "5m"}, 422, "bad_query"),
        ({"name": "lock", "colour": "red"}, {}, 400, None),
        ({"args": {}}, {}, 400, None),
    ],
)  # fmt: skip
async def test_bad_requests_get_a_clear_error(hub, http, clients, vid, body, params, status, reason):
    """Limits and formats are checked before anything is queued."""
    await known_offline_vehicle(clients, hub, vid)
    response = await http.post(f"/api/v1/vehicles/{vid}/commands", json=body, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if reason is not None:
        assert response.json()["reason"] == reason
    assert (await http.get(f"/api/v1/vehicles/{vid}/commands")).json()["items"] == []


async def test_unknown_vehicles_and_ids(hub, http, clients, vid):
    """No twin is 404; a malformed vehicle id is refused; a command of another vehicle is not found."""
    assert (await http.post("/api/v1/vehicles/ghost-7/commands", json={"name": "lock"})).status_code == 404
    assert (await http.post("/api/v1/vehicles/bad%20id/commands", json={"name": "lock"})).status_code == 400
    await known_offline_vehicle(clients, hub, vid)
    created = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "lock"})).json()
    assert (await http.get(f"/api/v1/vehicles/other-1/commands/{created['id']}")).status_code == 404
    assert (await http.delete(f"/api/v1/vehicles/other-1/commands/{created['id']}")).status_code == 404
    assert (await http.get(f"/api/v1/vehicles/{vid}/commands/nope")).status_code == 404


async def test_too_many_waiting_commands_are_refused(db, clients, vid):
    """A vehicle holds at most `commands.max_open_per_vehicle` waiting commands."""
    async with Hub(hub_settings(db, **{"commands.max_open_per_vehicle": 2})) as hub:
        await known_offline_vehicle(clients, hub, vid)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}") as http:
            for _ in range(2):
                assert (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "lock"})).status_code == 202
            third = await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "lock"})
            assert third.status_code == 422
            assert third.json()["reason"] == "too_many_commands"


async def test_listing_filters_newest_first_and_pages(hub, http, clients, vid):
    """Filters by state and name; newest first; `next_cursor` pages through the rest."""
    await known_offline_vehicle(clients, hub, vid)
    ids = []
    for name in ("lock", "honk", "lock", "locate", "lock"):
        ids.append((await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": name})).json()["id"])
    await http.delete(f"/api/v1/vehicles/{vid}/commands/{ids[0]}")
    url = f"/api/v1/vehicles/{vid}/commands"
    page = (await http.get(url, params={"limit": 2})).json()
    assert [c["id"] for c in page["items"]] == [ids[4], ids[3]]
    rest = (await http.get(url, params={"limit": 10, "cursor": page["next_cursor"]})).json()
    assert [c["id"] for c in rest["items"]] == [ids[2], ids[1], ids[0]]
    assert "next_cursor" not in rest
    locks = (await http.get(url, params={"name": "lock", "state": "queued"})).json()["items"]
    assert [c["id"] for c in locks] == [ids[4], ids[2]]
    both = (await http.get(url, params=[("state", "queued"), ("state", "cancelled")])).json()["items"]
    assert len(both) == 5
    assert (await http.get(url, params={"state": "sideways"})).status_code == 400


async def test_the_commands_api_is_in_the_openapi_schema(http):
    """Every command route is documented."""
    paths = (await http.get("/schema/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/vehicles/{vehicle_id}/commands",
        "/api/v1/vehicles/{vehicle_id}/commands/{command_id}",
        "/api/v1/commands",
        "/api/v1/commands/jobs/{job_id}",
        "/api/v1/commands/jobs/{job_id}/pause",
    ):
        assert path in paths

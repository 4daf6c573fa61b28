"""The bulk fleet endpoint and the live stream over real HTTP: scoping, delivery, slow clients dropped."""

import asyncio
import json
import re
import socket
import uuid

import httpx
import pytest

from security import CLI, Role
from tests.helpers import MqttClient, eventually
from tests.integration.console.conftest import login
from tests.integration.security.conftest import bearer, metric
from twin import TwinState, TwinUpdate, UpdateKind


def vid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def vehicle(hub, fleet: str) -> MqttClient:
    made = await hub.security.provision(vid(fleet), fleet, actor=CLI)
    client = MqttClient(hub.mqtt_port, made.vehicle_id)
    client._client.username_pw_set(made.vehicle_id, made.secret)
    return await client.connect()


async def report(car: MqttClient, **values: object) -> None:
    await car.publish_and_wait(f"vehicles/{car.client_id}/telemetry", values)


async def sse_batches(response: httpx.Response, into: list[dict]) -> None:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "batch":
            into.append(json.loads(line[6:]))


async def test_the_bulk_fleet_holds_only_the_callers_fleets_as_columns(hub, http, user) -> None:
    """An acme user's bulk load lists acme's vehicles with position and state; an admin's lists both fleets."""
    mine, theirs = await vehicle(hub, "acme"), await vehicle(hub, "globex")
    try:
        await report(mine, gps={"lat": 19.43, "lon": -99.13}, speed=42.0, soc=77.5, heading=90)
        await report(theirs, gps={"lat": 1.3, "lon": 103.8}, speed=0)
        await login(http, "ann", await user("ann", Role.VIEWER, "acme"))

        async def loaded() -> dict:
            body = (await http.get("/api/v1/console/fleet")).json()
            assert body["vehicles"]["speed"] == [42.0]
            return body

        body = await eventually(loaded)
        cols = body["vehicles"]
        assert cols["id"] == [mine.client_id]
        assert (cols["fleet"], cols["lat"], cols["lon"], cols["soc"], cols["heading"]) == (
            ["acme"],
            [19.43],
            [-99.13],
            [77.5],
            [90],
        )
        assert cols["state"] == ["moving"]
        admin = bearer((await hub.security.issue_token(await _admin(hub), actor=CLI)).secret)
        everyone = (await http.get("/api/v1/console/fleet", headers=admin)).json()["vehicles"]["id"]
        assert set(everyone) == {mine.client_id, theirs.client_id}
        gz = await http.get("/api/v1/console/fleet", headers={"Accept-Encoding": "gzip"})
        assert gz.status_code == 200
    finally:
        mine.close()
        theirs.close()


async def _admin(hub) -> str:
    name = f"root-{uuid.uuid4().hex[:6]}"
    await hub.security.add_user(name, Role.ADMIN, ("*",), actor=CLI)
    return name


async def test_the_live_stream_sends_the_callers_fleet_and_never_another(hub, http, user) -> None:
    """An acme user's stream carries acme's reports and alerts-free batches, and nothing of globex."""
    mine, theirs = await vehicle(hub, "acme"), await vehicle(hub, "globex")
    await login(http, "ann", await user("ann", Role.VIEWER, "acme"))
    got: list[dict] = []
    try:
        async with http.stream("GET", "/api/v1/console/live") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = asyncio.ensure_future(sse_batches(response, got))
            try:
                for speed in (10, 20, 30):
                    await report(theirs, speed=speed, gps={"lat": 1.3, "lon": 103.8})
                    await report(mine, speed=speed, gps={"lat": 19.4, "lon": -99.1})

                async def saw_mine() -> None:
                    assert any(mine.client_id in b["vehicles"]["id"] for b in got)
                    assert any(b["vehicles"]["speed"][-1] == 30 for b in got if b["vehicles"]["id"])
                    return True

                await eventually(saw_mine)
            finally:
                reader.cancel()
        seen = {i for b in got for i in b["vehicles"]["id"]}
        assert seen == {mine.client_id}
        for b in got:
            assert len(b["vehicles"]["id"]) == len(set(b["vehicles"]["id"]))  # one row per vehicle per batch
    finally:
        mine.close()
        theirs.close()


def _fake_state(i: int) -> TwinState:
    state = TwinState(vehicle_id=f"bulk-{i:05d}", created_at=0.0, updated_at=0.0, fleet="acme")
    state.tags = {"note": "x" * 200}
    return state


@pytest.mark.parametrize("console_overrides", [{"console.live_client_buffer": 2, "console.live_interval_s": 0.05}])
async def test_a_client_that_stops_reading_is_dropped_while_a_reading_one_keeps_up(hub, http, user) -> None:
    """A stream nobody reads fills its bounded buffer and is dropped (counted); a reading stream carries on."""
    token = (await hub.security.issue_token(await _admin(hub), actor=CLI)).secret
    port = hub.http_port
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(
        f"GET /api/v1/console/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    got: list[dict] = []
    feed = hub.console.feed
    try:
        async with http.stream("GET", "/api/v1/console/live", headers=bearer(token)) as response:
            reader = asyncio.ensure_future(sse_batches(response, got))
            await eventually(lambda: _assert(len(feed.clients) == 2))
            states = [_fake_state(i) for i in range(2000)]
            updates = [TwinUpdate(UpdateKind.TAGS, s.vehicle_id, s, 0.0) for s in states]

            rounds = iter(range(1_000_000))

            def change(which: list[TwinUpdate]) -> None:
                # A new value each time, so every row is sent again.
                n = str(next(rounds))
                for u in which:
                    u.state.tags["round"] = n
                feed.twin_updated(which)

            async def dropped() -> bool:
                # Every tick re-sends 2,000 rows (~500 KB): the stalled socket's buffers fill within a few.
                change(updates)
                assert metric(hub.registry, "fleethub_console_live_dropped_total") == 1
                return True

            await eventually(dropped, wait_s=30, interval=0.1)
            assert len(feed.clients) == 1
            count = len(got)

            async def still_served() -> bool:
                change(updates[:10])
                return len(got) > count + 2

            await eventually(still_served, interval=0.1)
            assert metric(hub.registry, "fleethub_console_live_dropped_total") == 1
            reader.cancel()
    finally:
        stalled.close()


async def _assert(ok: bool) -> bool:
    assert ok
    return True


async def test_the_page_loads_nothing_from_another_origin(hub, http) -> None:
    """`/` is served with a same-origin CSP; it, the Swagger page and their assets reference only the hub."""
    page = await http.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "script-src 'self'" in csp
    swagger = await http.get("/schema/swagger")
    for body in (page.text, swagger.text):
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", body)
        assert refs, "the page references its assets"
        for ref in refs:
            assert ref.startswith("/"), ref
            assert (await http.get(ref)).status_code == 200, ref
    assert "https://" not in swagger.text.split("<body>")[0]


@pytest.mark.parametrize("console_overrides", [{"console.enabled": False}])
async def test_a_disabled_console_serves_no_page_but_the_api_docs_still_load(hub, http) -> None:
    """console.enabled = false: no page at `/`, no console endpoints; Swagger's assets are still served."""
    assert (await http.get("/")).status_code == 404
    assert hub.console is None
    assert (await http.get("/console/vendor/swagger-ui-dist/swagger-ui-bundle.js")).status_code == 200
    assert (await http.get("/api/v1/console/config")).status_code == 404


@pytest.mark.parametrize("console_overrides", [{"console.live_heartbeat_s": 0.2}])
async def test_the_stream_ends_when_its_token_is_revoked(hub, http, user) -> None:
    """A live stream opened with an API token closes at the next heartbeat after the token is revoked."""
    await user("tia", Role.VIEWER, "acme")
    issued = await hub.security.issue_token("tia", actor=CLI)
    lines: list[str] = []
    async with http.stream("GET", "/api/v1/console/live", headers=bearer(issued.secret)) as response:

        async def read() -> None:
            async for line in response.aiter_lines():
                lines.append(line)

        reader = asyncio.ensure_future(read())
        await eventually(lambda: _assert(": ping" in lines))
        assert not reader.done()
        await hub.security.revoke_token(issued.token.id, actor=CLI)
        await asyncio.wait_for(reader, 5)
    assert hub.console.feed.clients == set()

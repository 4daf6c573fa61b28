"""The write path's failure model on a real hub: operator writes all or nothing, audited with
their change; commits that cannot happen stop nothing and acknowledge nothing."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter

import httpx

from fleethub.hub import Hub
from tests.helpers import MqttClient, eventually, local_settings
from tests.integration.fleethub.test_backpressure import SlowStore

SHUTDOWN_S = 2.0


def _settings(tmp_path, **extra):
    return local_settings(
        f"sqlite:///{tmp_path}/hub.db",
        {
            "ingest.shutdown_timeout_s": SHUTDOWN_S,
            **extra,
        },
    )


@contextlib.asynccontextmanager
async def _http(hub: Hub):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=30) as client:
        yield client


async def test_a_refused_desired_write_is_not_committed_by_a_batch_holding_telemetry(tmp_path):
    settings = _settings(tmp_path, **{"limits.max_document_bytes": 2000})
    slow: list[SlowStore] = []

    def wrap(store):
        slow.append(SlowStore(store, 0.3))
        return slow[0]

    async with Hub(settings, wrap_store=wrap) as hub, _http(hub) as http:
        car = await MqttClient(hub.mqtt_port, "same-batch").connect()
        try:
            await car.publish_and_wait("vehicles/same-batch/telemetry", {"soc": 1})
            # While this commit is slow, the next telemetry and the operator write queue up together.
            first = car.publish("vehicles/same-batch/telemetry", {"soc": 2})
            await asyncio.sleep(0.05)
            second = car.publish("vehicles/same-batch/telemetry", {"soc": 3})
            refused = await http.patch("/api/v1/vehicles/same-batch/twin/desired", json={"blob": "x" * 3000})
            assert refused.status_code == 422, refused.text
            for info in (first, second):
                await asyncio.to_thread(info.wait_for_publish, 20)
                assert info.is_published()
            twin = (await http.get("/api/v1/vehicles/same-batch/twin")).json()
            assert twin["desired"] == {}
            assert twin["reported"]["soc"] == 3
        finally:
            car.close()
    # What was committed is what a restarted hub sees: the refused value is not there.
    async with Hub(_settings(tmp_path)) as hub, _http(hub) as http:
        twin = (await http.get("/api/v1/vehicles/same-batch/twin")).json()
        assert twin["desired"] == {}
        assert twin["reported"]["soc"] == 3


async def test_concurrent_desired_writes_are_each_audited_and_none_fails(tmp_path):
    writes = 300
    async with Hub(_settings(tmp_path)) as hub, _http(hub) as http:
        car = await MqttClient(hub.mqtt_port, "many-writes").connect()
        try:
            await car.publish_and_wait("vehicles/many-writes/telemetry", {"soc": 1})
        finally:
            car.close()
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=60, limits=limits) as burst:
            answers = await asyncio.gather(
                *(
                    burst.patch("/api/v1/vehicles/many-writes/twin/desired", json={"charge_limit": 50 + n % 50})
                    for n in range(writes)
                )
            )
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {200: writes}, statuses
        versions = sorted(a.json()["version"] for a in answers)
        entries = (
            await http.get("/api/v1/audit", params={"action": "twin.desired", "vehicle": "many-writes", "limit": 1000})
        ).json()["items"]
        assert sorted(e["detail"]["version"] for e in entries) == versions


async def test_sigterm_while_the_disk_is_full_stops_in_time_and_acknowledges_nothing_uncommitted(tmp_path):
    async with contextlib.AsyncExitStack() as stack:
        hub = await stack.enter_async_context(Hub(_settings(tmp_path)))
        http = await stack.enter_async_context(_http(hub))
        car = await MqttClient(hub.mqtt_port, "disk-full").connect()
        stack.callback(car.close)
        await car.publish_and_wait("vehicles/disk-full/telemetry", {"soc": 1})

        def fill_up(conn: sqlite3.Connection) -> None:
            # A real SQLITE_FULL from the hub's own writer: the database may not grow any more.
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await hub.database.write(fill_up)
        stuck = [car.publish("vehicles/disk-full/telemetry", {"soc": n, "pad": "x" * 3000}) for n in range(2, 12)]

        async def failing() -> bool:
            detail = (await http.get("/healthz")).json()["components"]["ingest"]["detail"]
            return "full" in detail.get("last_commit_error", "")

        assert await eventually(failing, wait_s=20)
        assert not any(info.is_published() for info in stuck)
        started = time.monotonic()
        await stack.aclose()
        took = time.monotonic() - started
    # Bounded by the setting (plus the broker's and HTTP server's own stop), not by the disk.
    assert took < SHUTDOWN_S + 8, took
    assert not any(info.is_published() for info in stuck)
    # Nothing of them was committed; the message before the disk filled was.
    async with Hub(_settings(tmp_path)) as hub, _http(hub) as http:
        rows = (await http.get("/api/v1/vehicles/disk-full/history")).json()["items"]
        assert [r["data"]["soc"] for r in rows] == [1]

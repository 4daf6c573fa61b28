"""`fleethub backup` while the hub ingests, and `fleethub restore` into a hub that then serves the data."""

import asyncio
import json
import re
import subprocess
import sys
import threading
import uuid

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from tests.helpers import need_program
from tests.postgres import _with_database

pytestmark = pytest.mark.e2e

_DEV = {"FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true", "FLEETHUB_AUTH_ENABLED": "false"}


def _cli(*args: str, cwd, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fleethub", *args], capture_output=True, text=True, check=check, cwd=cwd, timeout=120
    )


class Publisher(threading.Thread):
    """One vehicle publishing QoS 1 telemetry as fast as the hub acknowledges it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.acked = 0
        self.stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="car-b")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            info = self.client.publish("vehicles/car-b/telemetry", json.dumps({"seq": seq, "n": seq}), qos=1)
            info.wait_for_publish(timeout=10)
            self.acked = seq

    def close(self) -> None:
        self.stop.set()
        self.join(15)
        self.client.loop_stop()
        self.client.disconnect()


def _summary(output: str) -> dict[str, int]:
    found = re.search(r"schema version (\d+), (\d+) vehicles, (\d+) history rows", output)
    assert found, output
    return {"schema": int(found[1]), "vehicles": int(found[2]), "rows": int(found[3])}


async def test_backup_while_ingesting_then_restore_serves_the_data(run_hub, tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/hub.db"
    hub = run_hub(
        "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json",
        "--database", db, env=_DEV,
    )  # fmt: skip
    ports = hub.started()
    publisher = Publisher(ports["mqtt_port"])
    publisher.start()
    try:
        while publisher.acked < 200:
            publisher.join(0.05)
            assert publisher.is_alive()
        acked_before = publisher.acked
        made = _cli("backup", str(tmp_path / "backups" / "hub-1.db"), "--database", db, cwd=tmp_path)
        acked_after = publisher.acked
        assert publisher.is_alive()
    finally:
        publisher.close()
    assert hub.stop() == 0
    copied = _summary(made.stdout)
    # Everything acknowledged before the backup began is in it; nothing after it ended can be.
    assert acked_before <= copied["rows"] <= acked_after + 1, (acked_before, copied, acked_after)
    assert copied["vehicles"] == 1
    assert not list((tmp_path / "backups").glob(".*partial"))

    restored_db = f"sqlite:///{tmp_path}/restored.db"
    _summary(_cli("restore", str(tmp_path / "backups" / "hub-1.db"), "--database", restored_db, cwd=tmp_path).stdout)
    again = run_hub(
        "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json",
        "--database", restored_db, env=_DEV,
    )  # fmt: skip
    ports = again.started()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=10) as http:
        twin = (await http.get("/api/v1/vehicles/car-b/twin")).json()
        history = (await http.get("/api/v1/vehicles/car-b/history", params={"limit": 10000, "fields": "n"})).json()
    assert again.stop() == 0
    assert twin["reported"]["n"] >= acked_before
    seqs = sorted(item["data"]["n"] for item in history["items"])
    assert len(seqs) == copied["rows"]
    assert seqs[:acked_before] == list(range(1, acked_before + 1))


def test_restore_refuses_to_replace_a_database_with_vehicles_unless_forced(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/hub.db"
    _cli("vehicles", "add", "car-1", "--database", db, cwd=tmp_path)
    _cli("backup", "one.db", "--database", db, cwd=tmp_path)
    _cli("vehicles", "add", "car-2", "--database", db, cwd=tmp_path)
    refused = _cli("restore", "one.db", "--database", db, cwd=tmp_path, check=False)
    assert refused.returncode == 2
    assert "--force" in refused.stderr
    forced = _cli("restore", "one.db", "--database", db, "--force", cwd=tmp_path)
    assert _summary(forced.stdout)["vehicles"] == 1
    listed = _cli("vehicles", "list", "--database", db, cwd=tmp_path).stdout
    assert "car-1" in listed
    assert "car-2" not in listed
    bad = _cli("backup", "x.db", "--database", "postgresql://127.0.0.1/none", cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert "pg_dump" in bad.stderr


@pytest.mark.postgres
async def test_pg_dump_while_ingesting_then_pg_restore_serves_the_data(run_hub, pg_server, tmp_path) -> None:
    """The documented PostgreSQL procedure (docs/operations.md): pg_dump while the hub writes, pg_restore, serve."""
    pg_dump, pg_restore = need_program("pg_dump"), need_program("pg_restore")
    suffix = uuid.uuid4().hex[:10]
    names = (f"fleethub_bk_{suffix}", f"fleethub_rs_{suffix}")
    with psycopg.connect(pg_server.url, autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    source, target = (_with_database(pg_server.url, name) for name in names)
    try:
        hub = run_hub(
            "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json",
            "--database", source, env=_DEV,
        )  # fmt: skip
        ports = hub.started()
        publisher = Publisher(ports["mqtt_port"])
        publisher.start()
        try:
            while publisher.acked < 100:
                publisher.join(0.05)
                assert publisher.is_alive()
            acked_before = publisher.acked
            dumped = await asyncio.to_thread(
                subprocess.run,
                [pg_dump, "--format=custom", f"--file={tmp_path / 'fleethub.dump'}", source],
                capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip
            assert publisher.is_alive()
        finally:
            publisher.close()
        assert hub.stop() == 0
        assert dumped.returncode == 0, dumped.stderr

        timescale = pg_server.timescaledb is not None and _uses_timescaledb(source)
        if timescale:
            with psycopg.connect(target, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                conn.execute("SELECT timescaledb_pre_restore()")
        restored = await asyncio.to_thread(
            subprocess.run,
            [pg_restore, "--no-owner", f"--dbname={target}", str(tmp_path / "fleethub.dump")],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if timescale:
            with psycopg.connect(target, autocommit=True) as conn:
                conn.execute("SELECT timescaledb_post_restore()")
        assert restored.returncode == 0, restored.stderr

        again = run_hub(
            "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json",
            "--database", target, env=_DEV,
        )  # fmt: skip
        ports = again.started()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=10) as http:
            history = (await http.get("/api/v1/vehicles/car-b/history", params={"limit": 10000, "fields": "n"})).json()
        assert again.stop() == 0
        seqs = sorted(item["data"]["n"] for item in history["items"])
        assert seqs[:acked_before] == list(range(1, acked_before + 1))
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _uses_timescaledb(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is not None

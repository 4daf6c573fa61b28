"""Worker mode end to end: a real Mosquitto, two `fleethub serve --broker` processes, one PostgreSQL.

Vehicles are paho clients publishing QoS 1 telemetry with a `seq`; a message counts as
acknowledged when the broker's PUBACK reaches the vehicle. What is checked is the
database: every acknowledged message stored exactly once, twins right, alerts and
commands exactly once, and partitions moved within the documented time after kill -9.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cluster import partition_of
from tests.e2e.conftest import HubProcess

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DEV = {"FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true", "FLEETHUB_AUTH_ENABLED": "false"}
# Short leases keep the test quick; docs/scale.md gives the defaults (6 s, renewed every 1.5 s).
LEASES = {"FLEETHUB_CLUSTER_LEASE_S": "3", "FLEETHUB_CLUSTER_HEARTBEAT_S": "0.5", "FLEETHUB_CLUSTER_PARTITIONS": "16"}
RULES = """
[rules.low-battery]
when = "soc < 15"
clear_when = "soc > 50"
severity = "major"
message = "Battery at {soc} %"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """Mosquitto on a free port, configured as docs/scale.md says a broker for workers must be."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is not installed")
        pytest.skip("mosquitto is not installed")
    port = _free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {tmp_path}/\n"
        "max_inflight_messages 1000\nmax_queued_messages 100000\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not start: {(tmp_path / 'mosquitto.log').read_text()}")
            time.sleep(0.05)
    yield port
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


class Vehicle:
    """A paho client that follows the birth/Last-Will convention and records PUBACKed messages."""

    def __init__(self, port: int, vid: str) -> None:
        self.vid = vid
        self.commands: list[dict] = []
        self._sent: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=vid)
        client.will_set(f"vehicles/{vid}/status", b"offline", qos=1)
        client.on_message = self._message
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.subscribe(f"vehicles/{vid}/commands/+", qos=1)
        client.publish(f"vehicles/{vid}/status", b"online", qos=1).wait_for_publish(10)
        self.client = client

    @property
    def acked(self) -> set[int]:
        """The seqs whose PUBACK came back from the broker."""
        return {seq for seq, info in list(self._sent) if info.is_published()}

    def _message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        command = json.loads(msg.payload)
        self.commands.append(command)
        result = json.dumps({"status": "succeeded"}).encode()
        client.publish(f"{msg.topic}/result", result, qos=1)

    def send(self, seq: int, soc: float, ts: float) -> None:
        payload = json.dumps({"soc": soc, "seq": seq, "ts": ts}).encode()
        self._sent.append((seq, self.client.publish(f"vehicles/{self.vid}/telemetry", payload, qos=1)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _rows(url: str, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql.encode(), args).fetchall()


def _eventually(check: Callable[[], bool], wait_s: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > wait_s:
            raise AssertionError(f"not within {wait_s} s: {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def _worker(
    run_hub, tmp_path: Path, port: int, url: str, name: str, role: str = "worker", env: dict[str, str] | None = None
):
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    env = {**DEV, **LEASES, "FLEETHUB_RULES_FILE": str(rules), **(env or {})}
    hub = run_hub(
        "serve",
        "--broker",
        f"mqtt://127.0.0.1:{port}",
        "--database",
        url,
        "--http-port",
        "0",
        "--host",
        "127.0.0.1",
        "--worker-id",
        name,
        "--role",
        role,
        "--log-format",
        "json",
        env=env,
    )
    return hub, hub.started()["http_port"]


def _wind_down(vehicles: Iterable[Vehicle], **hubs: HubProcess | None) -> None:
    """Disconnect the vehicles and print each hub's log tail (pytest shows it only when the test fails)."""
    for v in vehicles:
        v.close()
    for name, hub in hubs.items():
        if hub is not None:
            print(f"{name}:\n", hub.text[-8000:])


def _stop(*hubs: HubProcess) -> None:
    """Stop each hub; every one must exit cleanly."""
    for hub in hubs:
        assert hub.stop() == 0


def _owners(url: str) -> dict[str, int]:
    rows = _rows(url, "SELECT owner, count(*) FROM cluster_leases WHERE expires_at > now() GROUP BY owner")
    return {str(o): int(n) for o, n in rows}


def _stored(url: str) -> list[tuple]:
    return _rows(url, "SELECT vehicle_id, seq FROM history")


def _socs(url: str) -> dict[str, float]:
    """Each twin's reported state of charge."""
    return dict(_rows(url, "SELECT vehicle_id, (state->'reported'->'soc'->>0)::float FROM twins"))


def _one_alert_each(url: str, vids: list[str]) -> None:
    """Every vehicle in `vids`, and no other, has exactly one alert."""
    _eventually(lambda: _rows(url, "SELECT count(*) FROM alerts")[0][0] >= len(vids), 30, "an alert for each vehicle")
    time.sleep(1.0)  # a second alert for the same episode would be written by now
    alerts = _rows(url, "SELECT vehicle_id, count(*) FROM alerts GROUP BY vehicle_id ORDER BY 1")
    assert alerts == [(vid, 1) for vid in sorted(vids)]


def _forwarded(http_port: int) -> int:
    """How many messages the node wrote to the inbox for another partition's owner (from its health)."""
    health = httpx.get(f"http://127.0.0.1:{http_port}/healthz").json()
    return int(health["components"]["cluster"]["detail"]["forwarded"])


def test_two_workers_store_everything_once_with_one_alert_and_one_command_send(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """Two workers split the partitions; each message is stored once, twins are right, alerts and commands once."""
    a, http_a = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
    b, http_b = _worker(run_hub, tmp_path, mosquitto, pg_url, "b")
    api, http_api = _worker(run_hub, tmp_path, mosquitto, pg_url, "api", role="api")
    _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "the partitions split 8/8")
    vehicles = [Vehicle(mosquitto, f"veh-{n:02d}") for n in range(12)]
    now = time.time()
    try:
        for seq in range(1, 31):
            for n, v in enumerate(vehicles):
                # The first four vehicles drop below 15 % from seq 20 on: one alert each. (A dip that
                # is over before the owner sees it may be missed: a reading older than the twin's is
                # stored but not evaluated, and Mosquitto spreads one vehicle over several workers.)
                soc = 10.0 if n < 4 and seq >= 20 else 40.0 + seq
                v.send(seq, soc, now - 100 + seq)
        expected = {(v.vid, s) for v in vehicles for s in range(1, 31)}
        _eventually(lambda: all(len(v.acked) == 30 for v in vehicles), 60, "every message acknowledged")
        _eventually(lambda: set(_stored(pg_url)) == expected, 60, "every message stored")
        stored = _stored(pg_url)
        assert len(stored) == len(expected)  # exactly once: no duplicates
        assert _socs(pg_url) == {v.vid: 10.0 if n < 4 else 70.0 for n, v in enumerate(vehicles)}
        _one_alert_each(pg_url, [v.vid for v in vehicles[:4]])
        # Both workers ingested: messages for partitions owned elsewhere went through the inbox,
        # and the owners took everything forwarded.
        assert _forwarded(http_a) + _forwarded(http_b) > 0
        assert _rows(pg_url, "SELECT count(*) FROM cluster_inbox") == [(0,)]
        # A command queued through worker a for every vehicle: sent once each, by its owner only.
        for v in vehicles:
            resp = httpx.post(f"http://127.0.0.1:{http_a}/api/v1/vehicles/{v.vid}/commands/", json={"name": "unlock"})
            assert resp.status_code == 202
        _eventually(
            lambda: _rows(pg_url, "SELECT count(*) FROM commands WHERE state = 'succeeded'")[0][0] == 12,
            30,
            "every command succeeded",
        )
        assert sorted(len(v.commands) for v in vehicles) == [1] * 12
        # The API node reads what the workers committed; its twin writes are applied by the owner.
        doc = httpx.get(f"http://127.0.0.1:{http_api}/api/v1/vehicles/veh-05/twin").json()
        assert doc["reported"]["soc"] == 70.0
        patch = {"charge_limit": 80}
        forwarded = httpx.patch(f"http://127.0.0.1:{http_api}/api/v1/vehicles/veh-05/twin/desired", json=patch)
        assert forwarded.status_code == 200
        assert forwarded.json()["desired"] == patch
        assert forwarded.json()["version"] == doc["version"] + 1
    finally:
        _wind_down(vehicles, a=a, b=b)
    _stop(a, b, api)


def test_forwarded_messages_reach_their_owner_on_notify_alone(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """With the inbox poll set to ten minutes, owners still take what other workers forwarded: NOTIFY wakes them."""
    slow_poll = {"FLEETHUB_CLUSTER_INBOX_POLL_S": "600"}
    a, http_a = _worker(run_hub, tmp_path, mosquitto, pg_url, "a", env=slow_poll)
    b, http_b = _worker(run_hub, tmp_path, mosquitto, pg_url, "b", env=slow_poll)
    _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "the partitions split 8/8")
    vehicles = [Vehicle(mosquitto, f"bike-{n:02d}") for n in range(8)]
    now = time.time()
    try:
        for seq in range(1, 21):
            for v in vehicles:
                v.send(seq, 60.0, now - 100 + seq)
        expected = {(v.vid, s) for v in vehicles for s in range(1, 21)}
        _eventually(lambda: all(len(v.acked) == 20 for v in vehicles), 60, "every message acknowledged")
        _eventually(lambda: set(_stored(pg_url)) == expected, 60, "every message stored")
        assert len(_stored(pg_url)) == len(expected)
        # Committed rows are deleted by the owner's next take, which a settled batch triggers.
        _eventually(lambda: _rows(pg_url, "SELECT count(*) FROM cluster_inbox") == [(0,)], 30, "the inbox emptied")
        # The positive control: messages did take the inbox hop (Mosquitto spread them over both workers).
        assert _forwarded(http_a) + _forwarded(http_b) > 0
        # Both LISTEN connections of each node are in its health.
        for port in (http_a, http_b):
            cluster = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["components"]["cluster"]["detail"]
            assert cluster["forwarded_writes"]["listening"] is True
            assert cluster["live_relay"]["listening"] is True
            assert cluster["live_relay"]["reconnects"] == 0
    finally:
        _wind_down(vehicles, a=a, b=b)
    _stop(a, b)


def test_kill_9_loses_nothing_acknowledged_and_partitions_move(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """A worker killed mid-ingest: its partitions move within lease + heartbeat, every PUBACKed message is stored once.

    Mosquitto keeps queuing shared-subscription messages for the killed worker's persistent
    session; the survivor takes that session over, routes what waited in it and ends it, so
    nothing needs the dead worker back.
    """
    a, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
    b, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "b")
    _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "the partitions split 8/8")
    vehicles = [Vehicle(mosquitto, f"car-{n:02d}") for n in range(10)]
    stop = threading.Event()
    sent: dict[str, int] = {}

    def publish() -> None:
        seq = 0
        base = time.time() - 1000
        while not stop.is_set() and seq < 400:
            seq += 1
            for v in vehicles:
                v.send(seq, 30.0 + seq % 40, base + seq)
                sent[v.vid] = seq
            time.sleep(0.02)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        _eventually(lambda: len(_stored(pg_url)) > 300, 30, "ingest under way")
        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _eventually(lambda: _owners(pg_url) == {"b": 16}, 15, "b holds every partition")
        moved_s = time.monotonic() - killed
        assert moved_s < 10
        publisher.join(60)
        stop.set()
        acked = {(v.vid, s) for v in vehicles for s in v.acked}
        assert len(acked) > 1000
        _eventually(lambda: acked <= set(_stored(pg_url)), 90, "every acknowledged message stored")
        b.wait_for("emptied the broker session of a dead worker", 60)
        stored = _stored(pg_url)
        assert len(stored) == len(set(stored))  # none twice
        _eventually(
            lambda: all(len(v.acked) == sent[v.vid] for v in vehicles), 30, "every message acknowledged in the end"
        )
        assert _socs(pg_url) == {v.vid: 30.0 + sent[v.vid] % 40 for v in vehicles}
    finally:
        stop.set()
        publisher.join(10)
        _wind_down(vehicles)
    _stop(b)


def test_a_worker_paused_past_its_lease_writes_nothing_stale(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """SIGSTOP a worker until its partitions move, SIGCONT it: it gives them up, and nothing it held is lost or doubled.

    Its stale writes are refused by the fence (tests/integration/cluster/test_leases.py pins
    that down alone); here the outcome is checked: every acknowledged message once, twins at
    their newest readings, one alert per vehicle.
    """
    a, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
    b, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "b")
    _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "the partitions split 8/8")
    vehicles = [Vehicle(mosquitto, f"bike-{n:02d}") for n in range(8)]
    stop = threading.Event()
    last: dict[str, float] = {}

    def publish() -> None:
        base = time.time() - 1000
        for seq in range(1, 301):
            if stop.is_set():
                return
            for v in vehicles:
                # Every vehicle goes low at seq 100 and stays low: one alert each, whoever owns it.
                soc = 10.0 if seq >= 100 else 50.0 + seq % 7
                v.send(seq, soc, base + seq)
                last[v.vid] = soc
            time.sleep(0.03)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        _eventually(lambda: len(_stored(pg_url)) > 200, 30, "ingest under way")
        a.proc.send_signal(signal.SIGSTOP)
        try:
            _eventually(lambda: _owners(pg_url) == {"b": 16}, 15, "b holds every partition")
            time.sleep(1.0)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        a.wait_for('"partitions moved"', 15)  # a learns it lost its partitions
        publisher.join(60)
        _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "a back with its fair share")
        _eventually(lambda: sum(len(v.acked) for v in vehicles) == 8 * 300, 30, "every message acknowledged")
        acked = {(v.vid, s) for v in vehicles for s in v.acked}
        _eventually(lambda: acked <= set(_stored(pg_url)), 90, "every acknowledged message stored")
        stored = _stored(pg_url)
        assert len(stored) == len(set(stored))
        assert _socs(pg_url) == {v.vid: 10.0 for v in vehicles}
        _one_alert_each(pg_url, [v.vid for v in vehicles])
    finally:
        stop.set()
        publisher.join(10)
        _wind_down(vehicles, a=a)
    _stop(a, b)


class LiveStream:
    """The console's live stream (the endpoint the browser opens) read in a thread: every batch, in order."""

    def __init__(self, http_port: int) -> None:
        self.batches: list[dict] = []
        self.hello = threading.Event()
        self._stop = threading.Event()
        self._url = f"http://127.0.0.1:{http_port}/api/v1/console/live"
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event = ""
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client, client.stream("GET", self._url) as resp:
            for line in resp.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "hello":
                        self.hello.set()
                elif line.startswith("data: ") and event == "batch":
                    self.batches.append(json.loads(line[6:]))

    def rows(self) -> dict[str, dict]:
        """The newest row of each vehicle the stream sent, as {column: value}."""
        out: dict[str, dict] = {}
        for batch in list(self.batches):
            columns = batch["vehicles"]
            for i, vid in enumerate(columns["id"]):
                out[vid] = {name: values[i] for name, values in columns.items()}
        return out

    def alerts(self) -> list[dict]:
        return [a for batch in list(self.batches) for a in batch["alerts"]]

    def close(self) -> None:
        # The stream pings every second (console.live_heartbeat_s below), so the reader sees this soon.
        self._stop.set()
        self._thread.join(10)


def test_console_live_streams_show_what_other_nodes_commit(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """An API node's live stream shows a worker's committed telemetry and its alert; worker a's shows b's vehicles."""
    live = {"FLEETHUB_CONSOLE_LIVE_HEARTBEAT_S": "1", "FLEETHUB_CONSOLE_LIVE_INTERVAL_S": "0.2"}
    a, http_a = _worker(run_hub, tmp_path, mosquitto, pg_url, "a", env=live)
    b, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "b", env=live)
    api, http_api = _worker(run_hub, tmp_path, mosquitto, pg_url, "api", role="api", env=live)
    _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "the partitions split 8/8")
    owner = dict(_rows(pg_url, "SELECT part, owner FROM cluster_leases"))
    ids = [f"live-{n:02d}" for n in range(12)]
    of_b = [v for v in ids if owner[partition_of(v, 16)] == "b"]
    assert of_b
    assert len(of_b) < len(ids)
    low = of_b[0]  # its alert is raised by worker b
    streams = [LiveStream(http_api), LiveStream(http_a)]
    vehicles: list[Vehicle] = []
    try:
        for stream in streams:
            assert stream.hello.wait(10)
        vehicles = [Vehicle(mosquitto, vid) for vid in ids]
        now = time.time()
        for v in vehicles:
            v.send(1, 10.0 if v.vid == low else 42.0, now - 5)
        on_api, on_a = streams
        expected = {vid: 10.0 if vid == low else 42.0 for vid in ids}
        _eventually(
            lambda: {vid: row["soc"] for vid, row in on_api.rows().items() if vid in expected} == expected,
            30,
            "every vehicle's row on the API node's stream",
        )
        _eventually(
            lambda: any(x["vehicle_id"] == low and x["state"] == "active" for x in on_api.alerts()),
            30,
            "worker b's alert on the API node's stream",
        )
        assert _rows(pg_url, "SELECT vehicle_id FROM alerts") == [(low,)]
        _eventually(
            lambda: {vid: on_a.rows().get(vid, {}).get("soc") for vid in of_b} == {v: expected[v] for v in of_b},
            30,
            "worker b's vehicles on worker a's stream",
        )
        _eventually(
            lambda: any(x["vehicle_id"] == low for x in on_a.alerts()), 30, "worker b's alert on worker a's stream"
        )
        # The alert marks the vehicle's row on the other nodes too.
        _eventually(lambda: on_api.rows()[low]["alerts"] == 1, 30, "the alerting vehicle's row counts its alert")
        # A twin deleted in the database (as an operator would, in psql) leaves every console.
        gone = of_b[-1]
        _rows(pg_url, "DELETE FROM twins WHERE vehicle_id = %s RETURNING vehicle_id", (gone,))
        for stream in streams:
            _eventually(
                lambda s=stream: any(gone in batch.get("removed", []) for batch in list(s.batches)),
                30,
                "the deleted vehicle named in the stream",
            )
        fleet = httpx.get(f"http://127.0.0.1:{http_api}/api/v1/console/fleet").json()["vehicles"]["id"]
        assert gone not in fleet
        assert set(ids) - {gone} <= set(fleet)
    finally:
        for stream in streams:
            stream.close()
        _wind_down(vehicles, a=a, api=api)
    _stop(a, b, api)


def test_a_drop_pending_when_its_partition_moves_is_finished_by_the_new_owner(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """Two vehicles drop while worker a owns every partition; b joins and takes partitions 8-15 over
    before the debounce ends. b records the drop of the vehicle that stays away (stamped with the
    time it dropped), and the one that returns within the debounce is a flap there: no event, `since` kept.
    """
    debounce = {"FLEETHUB_INGEST_PRESENCE_DEBOUNCE_S": "12"}
    # Vehicles of partitions that move to b when it joins (a keeps the lowest, see cluster/leases.py).
    names = (f"van-{n:03d}" for n in range(1000))
    moving = [vid for vid in names if partition_of(vid, 16) >= 8][:2]
    a, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "a", env=debounce)
    _eventually(lambda: _owners(pg_url) == {"a": 16}, 20, "a holds every partition")
    away, back = (Vehicle(mosquitto, vid) for vid in moving)

    def twin(vid: str) -> tuple:
        return _rows(
            pg_url,
            "SELECT connected, (state->'connection'->>'since')::float FROM twins WHERE vehicle_id = %s",
            (vid,),
        )[0]

    def offline(vid: str) -> list[float]:
        sql = "SELECT extract(epoch FROM ts)::float FROM presence WHERE vehicle_id = %s AND NOT connected"
        return [r[0] for r in _rows(pg_url, sql, (vid,))]

    b = None
    try:
        for v in (away, back):
            v.send(1, 60.0, time.time())
        _eventually(lambda: len(_stored(pg_url)) == 2, 20, "both vehicles have twins")
        online_since = twin(back.vid)[1]
        dropped = time.time()
        for v in (away, back):
            v.client.publish(f"vehicles/{v.vid}/status", b"offline", qos=1).wait_for_publish(10)
        _eventually(lambda: not twin(away.vid)[0] and not twin(back.vid)[0], 10, "both twins show the drop")
        b, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "b", env=debounce)
        b.wait_for("partitions moved", 20)
        assert _owners(pg_url) == {"a": 8, "b": 8}
        moved_s = time.time() - dropped
        assert moved_s < 10, "the partitions moved too late for this test to mean anything"
        back.client.publish(f"vehicles/{back.vid}/status", b"online", qos=1).wait_for_publish(10)
        # The drop that lasts: recorded by b once the rest of the debounce ran out, at the time it happened.
        _eventually(lambda: len(offline(away.vid)) == 1, 20, "b records the drop")
        assert abs(offline(away.vid)[0] - dropped) < 2
        # By now the returning vehicle's debounce would have run out too: it was a flap.
        assert offline(back.vid) == []
        assert twin(back.vid) == (True, online_since)
        # Nothing left pending in any twin.
        assert _rows(pg_url, "SELECT count(*) FROM twins WHERE state->'connection' ? 'pending_drop'") == [(0,)]
    finally:
        _wind_down((away, back), a=a, b=b)
    assert b is not None  # started in the try, which ended without an error
    _stop(a, b)

"""Worker mode, the duties beside ingest: maintenance, notifications, scheduled reports, fleet jobs.

Two `fleethub serve --broker` processes on one PostgreSQL behind a real Mosquitto. Worker a
starts alone and sees every vehicle first, then b joins and takes half the partitions: a
still knows b's vehicles, which is where a worker that is not partition-aware would act
for vehicles it does not own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from cluster import partition_of
from tests.e2e.test_scale import Vehicle, _eventually, _owners, _rows, _stop, _wind_down, _worker, mosquitto
from tests.integration.notifications.servers import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

__all__ = ["mosquitto"]  # the fixture, shared with test_scale.py

FAST = {
    "FLEETHUB_MAINTENANCE_CHECK_INTERVAL_S": "0.5",
    "FLEETHUB_NOTIFICATIONS_POLL_INTERVAL_S": "0.2",
    "FLEETHUB_REPORTS_SCHEDULE_CHECK_S": "0.5",
    "FLEETHUB_COMMANDS_JOB_CHECK_S": "0.5",
}


class HoldingVehicle(Vehicle):
    """A vehicle that keeps its command results back while `hold` is set, until `release`."""

    def __init__(self, port: int, vid: str) -> None:
        self.hold = False
        self.held: list[mqtt.MQTTMessage] = []
        super().__init__(port, vid)

    def _message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.hold:
            self.held.append(msg)
            return
        super()._message(client, userdata, msg)

    def release(self) -> None:
        self.hold = False
        held, self.held = self.held, []
        for msg in held:
            super()._message(self.client, None, msg)


def _fast_worker(run_hub, tmp_path: Path, port: int, url: str, name: str):
    hub, http_port = _worker(run_hub, tmp_path, port, url, name, env=FAST)
    return hub, f"http://127.0.0.1:{http_port}"


def _raised_in(text: str, rule: str) -> set[str]:
    """The vehicles a worker's log says it raised an alert of `rule` for."""
    found = set()
    for line in text.splitlines():
        if '"alert raised"' in line and rule in line:
            found.add(json.loads(line)["vehicle_id"])
    return found


def _items(receiver: Receiver) -> list[dict]:
    with receiver.lock:
        bodies = [json.loads(r.body) for r in receiver.accepted]
    return [item for body in bodies for item in body["items"]]


def test_due_alerts_notifications_reports_and_jobs_happen_once_across_two_workers(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """Each due alert is raised once, by its owner; each is notified once, the report sent once; a job
    spanning both workers completes only when every vehicle answered."""
    receiver = Receiver().start()
    a, http_a = _fast_worker(run_hub, tmp_path, mosquitto, pg_url, "a")
    vehicles: list[HoldingVehicle] = []
    b = None
    try:
        _eventually(lambda: _owners(pg_url) == {"a": 16}, 20, "a holds every partition")
        vehicles = [HoldingVehicle(mosquitto, f"duty-{n:02d}") for n in range(12)]
        for v in vehicles:
            v.send(1, 50.0, time.time())
        _eventually(lambda: _rows(pg_url, "SELECT count(*) FROM twins")[0][0] == 12, 30, "every twin stored")
        b, http_b = _fast_worker(run_hub, tmp_path, mosquitto, pg_url, "b")
        _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "the partitions split 8/8")
        owner_of = {
            int(p): str(o) for p, o in _rows(pg_url, "SELECT part, owner FROM cluster_leases WHERE expires_at > now()")
        }
        owners = {v.vid: owner_of[partition_of(v.vid, 16)] for v in vehicles}
        lead = owner_of[0]
        assert {"a", "b"} <= set(owners.values())

        # A channel made on a, a schedule on b: every worker takes them from the database.
        channel = {
            "kind": "webhook",
            "url": receiver.url,
            "secret": "a-webhook-secret-of-some-length",
            "rules": ["maintenance.*"],
            "rate_per_hour": 36000,
            "burst": 1000,
        }
        assert httpx.put(f"{http_a}/api/v1/notifications/channels/ops", json=channel).status_code == 201
        seen = f"{http_b}/api/v1/notifications/channels/ops"
        _eventually(lambda: httpx.get(seen).status_code == 200, 10, "b has read the channel")
        schedule = {"name": "Inspection", "every_days": 1, "due_soon_days": 1}
        assert httpx.put(f"{http_b}/api/v1/maintenance/schedules/inspect", json=schedule).status_code in (200, 201)
        rule = "maintenance.inspect.due_soon"

        def alerts() -> list[tuple]:
            return _rows(pg_url, "SELECT id, vehicle_id FROM alerts WHERE rule = %s", (rule,))

        _eventually(lambda: len(alerts()) >= 12, 30, "a due-soon alert for every vehicle")
        _eventually(lambda: {i["id"] for i in _items(receiver)} >= {i for i, _ in alerts()}, 30, "every alert notified")
        time.sleep(2.0)  # four more checks and ten notification rounds: a repeat would show by now
        assert sorted(v for _, v in alerts()) == sorted(owners)
        notified = [i["id"] for i in _items(receiver) if i.get("rule") == rule]
        assert sorted(notified) == sorted(i for i, _ in alerts())
        for name, hub in (("a", a), ("b", b)):
            assert _raised_in(hub.text, rule) == {vid for vid, o in owners.items() if o == name}
            assert "write fenced off" not in hub.text

        report = {"fleet": "default", "channel": "ops", "period": "daily", "at_hour": 0}
        assert httpx.put(f"{http_a}/api/v1/reports/schedules/daily", json=report).status_code == 201
        _eventually(lambda: any("period" in i for i in _items(receiver)), 30, "the scheduled report sent")
        time.sleep(1.5)
        assert len([i for i in _items(receiver) if "period" in i]) == 1

        # The lead's vehicles answer at once; the others only when released.
        for v in vehicles:
            v.hold = owners[v.vid] != lead
        job = {"selector": {"vehicle_ids": [v.vid for v in vehicles]}, "name": "unlock", "rate": 100}
        created = httpx.post(f"{http_a}/api/v1/commands/", json=job)
        assert created.status_code == 202
        job_id = created.json()["id"]
        answered = sum(1 for o in owners.values() if o == lead)
        done = "SELECT count(*) FROM commands WHERE job_id = %s AND state = 'succeeded'"
        _eventually(lambda: _rows(pg_url, done, (job_id,))[0][0] == answered, 30, "the lead's vehicles answered")
        _eventually(lambda: all(v.held for v in vehicles if v.hold), 30, "the other vehicles got their command")
        time.sleep(1.5)  # three completion checks
        for http in (http_a, http_b):
            assert httpx.get(f"{http}/api/v1/commands/jobs/{job_id}").json()["state"] == "running"
        for v in vehicles:
            v.release()

        def state() -> str:
            return httpx.get(f"{http_b}/api/v1/commands/jobs/{job_id}").json()["state"]

        _eventually(lambda: state() == "completed", 30, "the job completed")
        assert _rows(pg_url, done, (job_id,))[0][0] == 12
    finally:
        receiver.stop()
        _wind_down(vehicles, a=a, b=b)
    assert b is not None  # started in the try, which ended without an error
    _stop(a, b)

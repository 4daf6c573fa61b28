"""Worker mode: an operator acknowledges, clears and cancels on a node that does not own the vehicle.

Real Mosquitto, a worker and an API node, PostgreSQL. The API node writes the alert or
command row itself, guarded by the state it read; the owner hears of it and rebuilds the
vehicle, so its memory follows: an acknowledged alert stays acknowledged when the owner
later clears it, a hand-cleared alert lets the rule raise a new one, a cancelled command
is never sent, and a request waiting for a command's answer gets it.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_scale import Vehicle, _eventually, _owners, _rows, _stop, _wind_down, _worker, mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

__all__ = ["mosquitto"]


def _alerts(url: str, vid: str) -> list[tuple[str, str, str | None]]:
    return [
        (str(i), str(s), by)
        for i, s, by in _rows(
            url,
            "SELECT id, state, doc->>'acknowledged_by' FROM alerts WHERE vehicle_id = %s ORDER BY raised_at",
            (vid,),
        )
    ]


def test_alerts_and_commands_changed_on_an_api_node_are_followed_by_the_owner(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    owner, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
    api, http_api = _worker(run_hub, tmp_path, mosquitto, pg_url, "api", role="api")
    base = f"http://127.0.0.1:{http_api}/api/v1"
    _eventually(lambda: _owners(pg_url) == {"a": 16}, 20, "worker a holds every partition")
    vehicle = Vehicle(mosquitto, "op-1")
    now = time.time()
    try:
        # An alert raised by the owner, acknowledged through the API node.
        vehicle.send(1, 10.0, now - 50)
        _eventually(lambda: len(_alerts(pg_url, "op-1")) == 1, 30, "the owner raised the alert")
        [(first, _, _)] = _alerts(pg_url, "op-1")
        acked = httpx.post(f"{base}/alerts/{first}/ack", json={"user": "dispatch", "note": "on it"}, timeout=30)
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "acknowledged"
        again = httpx.post(f"{base}/alerts/{first}/ack", json={"user": "dispatch"}, timeout=30)
        assert again.status_code == 409, again.text
        time.sleep(1.0)  # the owner hears of it (NOTIFY) and rebuilds the vehicle
        # The owner clears it by condition: from the acknowledged alert it rebuilt, not its old copy.
        vehicle.send(2, 60.0, now - 40)
        _eventually(lambda: _alerts(pg_url, "op-1")[0][1] == "cleared", 30, "the owner cleared the alert")
        assert _alerts(pg_url, "op-1") == [(first, "cleared", "dispatch")]

        # A second episode, cleared by hand through the API node: the owner forgets it, so
        # the next low reading raises a new alert (as in one hub) instead of being held back.
        vehicle.send(3, 9.0, now - 30)
        _eventually(lambda: len(_alerts(pg_url, "op-1")) == 2, 30, "a second alert")
        second = _alerts(pg_url, "op-1")[1][0]
        cleared = httpx.post(f"{base}/alerts/{second}/clear", json={"user": "dispatch"}, timeout=30)
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["state"] == "cleared"
        time.sleep(1.0)
        vehicle.send(4, 8.0, now - 20)
        _eventually(lambda: len(_alerts(pg_url, "op-1")) == 3, 30, "a third alert after the hand clear")
        states = [state for _, state, _ in _alerts(pg_url, "op-1")]
        assert states == ["cleared", "cleared", "active"]

        # Commands for a vehicle that is offline: one cancelled through the API node, one not.
        vehicle.client.publish("vehicles/op-1/status", b"offline-clean", qos=1).wait_for_publish(10)
        vehicle.close()
        _eventually(
            lambda: httpx.get(f"{base}/vehicles/op-1/twin").json()["connection"]["connected"] is False,
            30,
            "the vehicle is offline",
        )
        made = [
            httpx.post(f"{base}/vehicles/op-1/commands/", json={"name": name}, timeout=30).json()["id"]
            for name in ("unlock", "lock")
        ]
        gone = httpx.delete(f"{base}/vehicles/op-1/commands/{made[0]}", timeout=30)
        assert gone.status_code == 200, gone.text
        assert gone.json()["state"] == "cancelled"
        time.sleep(1.0)
        vehicle = Vehicle(mosquitto, "op-1")
        _eventually(lambda: len(vehicle.commands) >= 1, 30, "the other command reached the vehicle")
        _eventually(
            lambda: (
                dict(_rows(pg_url, "SELECT id, state FROM commands")) == {made[0]: "cancelled", made[1]: "succeeded"}
            ),
            30,
            "the cancelled command stays cancelled, the other succeeds",
        )
        time.sleep(0.5)
        assert [c["id"] for c in vehicle.commands] == [made[1]]
        # Waiting for the answer on a node that does not hold the command: it reads the owner's result.
        waited = httpx.post(f"{base}/vehicles/op-1/commands/?wait=20s", json={"name": "honk"}, timeout=30)
        assert waited.status_code == 200, waited.text
        assert waited.json()["state"] == "succeeded"
    finally:
        _wind_down([vehicle], a=owner, api=api)
    _stop(owner, api)

"""Worker mode: twin writes asked for on any node are applied once by the vehicle's owner.

Real Mosquitto, worker and API-node processes, PostgreSQL; the vehicle is a paho client
subscribed to its delta topic. The owner's own answer to a local call is the embedded
hub's (the same code path), so forwarded answers are compared with it.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cluster import partition_of
from tests.e2e.test_scale import _eventually, _owners, _rows, _stop, _wind_down, _worker, mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

__all__ = ["mosquitto"]


class DeltaListener:
    """A vehicle that only listens to its delta topic."""

    def __init__(self, port: int, vid: str) -> None:
        self.deltas: queue.Queue[dict] = queue.Queue()
        subscribed = threading.Event()
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=vid)
        client.on_message = lambda _c, _u, msg: self.deltas.put(json.loads(msg.payload))
        client.on_subscribe = lambda *_: subscribed.set()
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.subscribe(f"vehicles/{vid}/twin/delta", qos=1)
        assert subscribed.wait(10)
        self.client = client

    def next(self, wait_s: float = 10) -> dict:
        return self.deltas.get(timeout=wait_s)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _owned_by(url: str, owner: str, prefix: str) -> str:
    """A vehicle id whose partition `owner` holds."""
    held = {int(p) for (p,) in _rows(url, "SELECT part FROM cluster_leases WHERE owner = %s", (owner,))}
    return next(f"{prefix}-{n}" for n in range(1000) if partition_of(f"{prefix}-{n}", 16) in held)


def _desired(http: int, vid: str, patch: dict, **params: object) -> httpx.Response:
    headers = {"If-Match": str(params.pop("if_match"))} if "if_match" in params else {}
    url = f"http://127.0.0.1:{http}/api/v1/vehicles/{vid}/twin/desired"
    return httpx.patch(url, json=patch, params=params, headers=headers, timeout=30)


def test_writes_on_an_api_node_and_a_non_owner_are_applied_once_by_the_owner(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    """Provisioning, desired and tags patches via an API node and a non-owner worker: applied once, by the owner."""
    a, http_a = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
    b, http_b = _worker(run_hub, tmp_path, mosquitto, pg_url, "b")
    api, http_api = _worker(run_hub, tmp_path, mosquitto, pg_url, "api", role="api")
    _eventually(lambda: _owners(pg_url) == {"a": 8, "b": 8}, 20, "the partitions split 8/8")
    vid = _owned_by(pg_url, "b", "van")
    made = httpx.post(f"http://127.0.0.1:{http_api}/api/v1/vehicles/", json={"vehicle_id": vid, "fleet": "acme"})
    assert made.status_code == 201, made.text
    vehicle = DeltaListener(mosquitto, vid)
    try:
        at_owner = httpx.get(f"http://127.0.0.1:{http_b}/api/v1/vehicles/{vid}/twin").json()
        assert (at_owner["fleet"], at_owner["version"]) == ("acme", 1)

        # Through the API node, then through worker a (not the owner), with If-Match.
        first = _desired(http_api, vid, {"charge_limit": 80})
        assert first.status_code == 200, first.text
        assert vehicle.next() == {"version": 2, "delta": {"charge_limit": 80}}
        second = _desired(http_a, vid, {"mode": "eco"}, if_match=2)
        assert second.status_code == 200, second.text
        assert second.headers["ETag"] == '"3"'
        assert vehicle.next() == {"version": 3, "delta": {"charge_limit": 80, "mode": "eco"}}
        # The answer is the owner's twin document, as the owner serves it and as a local call answers.
        assert second.json() == httpx.get(f"http://127.0.0.1:{http_b}/api/v1/vehicles/{vid}/twin").json()
        assert second.json()["desired"] == {"charge_limit": 80, "mode": "eco"}
        assert first.json()["desired"] == {"charge_limit": 80}
        local = _desired(http_b, vid, {"mode": "sport"}, if_match=3)
        assert local.headers["ETag"] == '"4"'
        assert local.json() == httpx.get(f"http://127.0.0.1:{http_b}/api/v1/vehicles/{vid}/twin").json()
        assert vehicle.next()["version"] == 4
        # Applied once each: one version step and one audit entry per write.
        audited = _rows(
            pg_url, "SELECT count(*) FROM audit_log WHERE action = 'twin.desired' AND vehicle_id = %s", (vid,)
        )
        assert audited == [(3,)]

        # Refusals: the same problem document wherever the write was asked for.
        for check in (
            lambda http: _desired(http, vid, {"mode": "x"}, if_match=2),  # refused at the owner: 409
            lambda http: _desired(http, "nobody-here", {"mode": "x"}),  # 404 from whichever node owns it
            lambda http: _desired(http, vid, {"mode": "x"}, ttl_s=10**9),  # refused before forwarding: 422
        ):
            owner, forwarded = check(http_b), check(http_api)
            assert forwarded.status_code == owner.status_code
            assert forwarded.status_code in {404, 409, 422}
            assert forwarded.json() == owner.json()
        tags = httpx.patch(f"http://127.0.0.1:{http_api}/api/v1/vehicles/{vid}/tags", json={"depot": "north"})
        assert (tags.status_code, tags.json()["tags"], tags.json()["version"]) == (200, {"depot": "north"}, 5)
        assert httpx.get(f"http://127.0.0.1:{http_api}/api/v1/vehicles/{vid}/twin").json()["version"] == 5
        assert _rows(pg_url, "SELECT count(*) FROM cluster_requests") == [(0,)]
    finally:
        _wind_down([vehicle], a=a, b=b, api=api)
    _stop(a, b, api)


def test_a_write_nobody_can_apply_answers_503_and_is_never_applied_later(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no worker, a write through the API node answers 503 with Retry-After; the next worker never applies it."""
    monkeypatch.setenv("FLEETHUB_CLUSTER_FORWARD_TIMEOUT_S", "1.5")
    a, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
    api, http_api = _worker(run_hub, tmp_path, mosquitto, pg_url, "api", role="api")
    _eventually(lambda: _owners(pg_url) == {"a": 16}, 20, "a holds every partition")
    made = httpx.post(f"http://127.0.0.1:{http_api}/api/v1/vehicles/", json={"vehicle_id": "cab-1"})
    assert made.status_code == 201, made.text
    vehicle = DeltaListener(mosquitto, "cab-1")
    try:
        assert a.stop() == 0
        _eventually(lambda: _owners(pg_url) == {}, 10, "no partition has an owner")
        refused = _desired(http_api, "cab-1", {"charge_limit": 60})
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "owner_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        a, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
        _eventually(lambda: _owners(pg_url) == {"a": 16}, 20, "a back with every partition")
        # Positive control: a write now is applied and its delta arrives; the refused one never does.
        accepted = _desired(http_api, "cab-1", {"charge_limit": 70})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["version"] == 2
        assert vehicle.next() == {"version": 2, "delta": {"charge_limit": 70}}
        assert vehicle.deltas.empty()
        twin = _rows(pg_url, "SELECT version, state->'desired' FROM twins WHERE vehicle_id = 'cab-1'")
        assert twin == [(2, {"charge_limit": 70})]
        assert _rows(pg_url, "SELECT count(*) FROM cluster_requests") == [(0,)]
    finally:
        _wind_down([vehicle], a=a, api=api)
    _stop(a, api)

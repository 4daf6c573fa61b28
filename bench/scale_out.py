"""The `scale` scenario: 1, 2 and 3 `fleethub serve --broker` workers behind Mosquitto, against the embedded hub.

Every configuration stores into its own PostgreSQL database and loads the same 20 rules.
Two measures each:
- stored msg/s: 1,000 vehicles offering 1,500 msg/s for `measure_s`; the rate at which
  history rows are committed, counted in the database (behind Mosquitto the broker
  acknowledges at once, so the generator's own rate says nothing about storage), then
  how long the broker's backlog took to drain;
- publish-to-twin latency: a probe vehicle publishes 20 msg/s with its send time while
  the fleet reports 300 msg/s; a poller sees each row committed (history and twin commit
  in one transaction) and records the delay, p50/p99.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import procs
from bench.procs import BenchError, Server
from firmware_sim.load import Histogram, LoadPlan, LoadRun, Mode

# Short leases: a bench run is short, and a worker leaving must not hold partitions long.
_WORKER_ENV = {
    "FLEETHUB_AUTH_ENABLED": "false",
    "FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true",
    "FLEETHUB_CLUSTER_LEASE_S": "4",
    "FLEETHUB_CLUSTER_HEARTBEAT_S": "1",
}


@contextlib.contextmanager
def mosquitto_for_workers() -> Iterator[int]:
    """Mosquitto configured as docs/scale.md asks: persistence, large in-flight and queue limits."""
    port = procs.free_port()
    with tempfile.TemporaryDirectory(prefix="bench-scale-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {tmp}/\n"
            "max_inflight_messages 1000\nmax_queued_messages 1000000\nlog_dest stdout\n"
        )
        server = Server("mosquitto", [procs.MOSQUITTO, "-c", str(conf)])
        try:
            procs._wait_port(port, server)
            yield port
        finally:
            server.stop()


@contextlib.contextmanager
def workers(count: int, port: int, url: str, env: dict[str, str]) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for n in range(count):
            args = [sys.executable, "-m", "fleethub", "serve", "--broker", f"mqtt://127.0.0.1:{port}"]
            args += ["--database", url, "--http-port", "0", "--host", "127.0.0.1", "--worker-id", f"w{n + 1}"]
            args += ["--log-format", "json", "--log-level", "info"]
            server = Server(f"worker-{n + 1}", args, env={**_WORKER_ENV, **env})
            started.append(server)
            server.wait_for('"hub started"', timeout_s=60)
        _wait_balanced(url, count)
        yield started
    finally:
        for server in started:
            server.stop()


def _wait_balanced(url: str, count: int, timeout_s: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT owner, count(*) FROM cluster_leases WHERE expires_at > now() GROUP BY owner"
            ).fetchall()
        if len(rows) == count and sum(n for _, n in rows) == 64:
            return
        time.sleep(0.3)
    raise BenchError(f"the partitions did not spread over {count} workers")


class StoredCounter:
    """History rows committed, sampled every 0.25 s on a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StoredCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                (n,) = conn.execute("SELECT count(*) FROM history").fetchone() or (0,)
                self.samples.append((time.time(), int(n)))
                self._stop.wait(0.25)

    def at(self, t: float) -> int:
        before = [n for ts, n in self.samples if ts <= t]
        return before[-1] if before else 0

    def rate(self, start: float, end: float) -> float:
        return (self.at(end) - self.at(start)) / (end - start)


class Probe:
    """One vehicle publishing 20 msg/s with its send time, and a poller timing each row's commit."""

    def __init__(self, port: int, url: str, vid: str) -> None:
        self.port, self.url, self.vid = port, url, vid
        self.hist = Histogram()
        self.sent: dict[int, float] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._publish, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]

    def __enter__(self) -> Probe:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _publish(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.vid)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        seq = 0
        while not self._stop.is_set():
            seq += 1
            now = time.time()
            self.sent[seq] = now
            client.publish(f"vehicles/{self.vid}/telemetry", json.dumps({"probe": seq, "seq": seq, "ts": now}), qos=1)
            self._stop.wait(0.05)
        client.loop_stop()
        client.disconnect()

    def _poll(self) -> None:
        import psycopg

        last = 0
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT seq FROM history WHERE vehicle_id = %s AND seq > %s", (self.vid, last)
                ).fetchall()
                seen = time.time()
                for (seq,) in rows:
                    sent = self.sent.get(int(seq))
                    if sent is not None:
                        self.hist.add(seen - sent)
                    last = max(last, int(seq))
                self._stop.wait(0.01)


def _drained(counter: StoredCounter, timeout_s: float = 120.0) -> float:
    """Wait until the stored count stops growing (the broker's backlog is in); the seconds it took."""
    started = time.time()
    stable_since, last = started, counter.at(started)
    while time.time() - started < timeout_s:
        time.sleep(0.5)
        now = time.time()
        count = counter.at(now)
        if count != last:
            stable_since, last = now, count
        elif now - stable_since >= 2.0:
            return round(stable_since - started, 1)
    return round(time.time() - started, 1)


def measure(port: int, url: str, label: str, *, vehicles: int, offered: float, measure_s: float) -> dict[str, Any]:
    """Both measures against an MQTT port (Mosquitto with workers, or the embedded hub)."""
    out: dict[str, Any] = {"offered_msg_s": offered}
    # Open loop at a fixed offered rate: a broker that acknowledges at once would otherwise let the
    # generator and Mosquitto take the cores the workers need, and measure them instead.
    plan = LoadPlan(
        port=port,
        vehicles=vehicles,
        # One generator process offers about 2,000 msg/s on this machine.
        workers=1 if offered <= 2_000 else 2,
        mode=Mode.RATE,
        interval_s=vehicles / offered,
        inflight=8,
        ramp_s=2.0,
        warmup_s=3.0,
        measure_s=measure_s,
        prefix=f"load-{label}-",
    )
    with StoredCounter(url) as counter:
        with LoadRun(plan) as run:
            result = run.join()
        start, end = run.t0 + plan.measure_from, run.t0 + plan.measure_until
        out["stored_msg_s"] = round(counter.rate(start, end), 1)
        out["acknowledged_msg_s"] = round(result.throughput_msg_s, 1)
        out["backlog_drained_s"] = _drained(counter)
    # The summary table's column: for this scenario, what was stored, not what was acknowledged.
    out["throughput_msg_s"] = out["stored_msg_s"]
    steady_vehicles = max(10, int(offered / 5))
    steady = LoadPlan(
        port=port,
        vehicles=steady_vehicles,
        workers=1,
        mode=Mode.RATE,
        interval_s=1.0,
        inflight=2,
        ramp_s=2.0,
        warmup_s=3.0,
        measure_s=measure_s,
        prefix=f"rate-{label}-",
    )
    with Probe(port, url, f"probe-{label}") as probe, LoadRun(steady) as run2:
        run2.join()
    out["steady_load_msg_s"] = steady_vehicles
    out["publish_to_twin_ms"] = probe.hist.summary_ms()
    # The summary table's latency columns: publish to committed twin, under the steady load.
    out["latency_ms"] = out["publish_to_twin_ms"]
    out["load_average"] = _loadavg()
    return out


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def scale_scenario(scale: Any, tmp: Path, write_rules: Any) -> Any:
    """The scenario: the embedded hub, then 1, 2 and 3 workers, each on a fresh PostgreSQL database."""
    from bench.scenarios import ScenarioResult

    res = ScenarioResult(
        "scale", config={"measure_s": scale.measure_s, "rules": 20, "offered_msg_s": scale.scale_offered}
    )
    why_not = procs.postgres_available()
    if why_not:
        raise BenchError(why_not)
    rules = write_rules(tmp / "scale-rules.toml")
    env = {"FLEETHUB_RULES_FILE": str(rules)}
    vehicles = 50 if scale.quick else 1000
    offered = scale.scale_offered
    res.notes.append(
        "one machine: every worker, Mosquitto, PostgreSQL and the load generator share its cores, so more "
        "workers add coordination without adding CPU; the figures show the cost of worker mode, not its ceiling"
    )
    with procs.postgres_database("scale_embedded") as url, procs.fleethub(url, extra_env=env) as hub:
        _server, port, _http = hub
        run = measure(port, url, "emb", vehicles=vehicles, offered=offered, measure_s=scale.measure_s)
        res.runs.append({"system": "embedded", "kind": "offered", "workers": 0, **run})
    counts = (1,) if scale.quick else (1, 2, 3)
    for n in counts:
        with (
            procs.postgres_database(f"scale_w{n}") as url,
            mosquitto_for_workers() as port,
            workers(n, port, url, env),
        ):
            run = measure(port, url, f"w{n}", vehicles=vehicles, offered=offered, measure_s=scale.measure_s)
            system = f"{n} worker{'s' if n > 1 else ''} behind Mosquitto"
            res.runs.append({"system": system, "kind": "offered", "workers": n, **run})
    return res

"""The benchmark scenarios: each starts its systems as subprocesses, drives them, and stops them.

Every scenario returns a `ScenarioResult`: a status (`ok`, `skipped`, `failed`), notes
saying what was and was not measured, and one `run` per system and load shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bench import procs
from bench.procs import BenchError, Sampler
from firmware_sim.load import Histogram, LoadPlan, LoadResult, LoadRun, Mode, Payload, ensure_fd_limit, fd_limits

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scale:
    """Sizes and durations; `quick()` is the seconds-long variant the test suite runs."""

    publishers: int = 200
    inflight: int = 2
    workers: int = 2
    ramp_s: float = 2.0
    warmup_s: float = 3.0
    measure_s: float = 20.0
    sustained_vehicles: int = 4_000
    sustained_interval_s: float = 1.0
    connections: int = 15_000
    connection_workers: int = 4
    storm_window_s: float = 5.0
    storm_settle_s: float = 40.0
    api_background_vehicles: int = 1_000
    api_concurrency: int = 8
    peer_vehicles: int = 100
    peer_measure_s: float = 10.0
    naive_drain_s: float = 10.0
    # The rules-cost runs: as many vehicles as the hub's open-file limit comfortably allows.
    rules_vehicles: int = 15_000
    # 500 msg/s: well below saturation on two shared cores, so CPU per message compares.
    rules_interval_s: float = 30.0
    rules_count: int = 100
    # The scale scenario's open-loop rate per configuration (msg/s).
    scale_offered: float = 1_500.0
    quick: bool = False

    @classmethod
    def quick_scale(cls) -> Scale:
        return cls(
            publishers=20,
            workers=1,
            ramp_s=0.5,
            warmup_s=0.5,
            measure_s=2.0,
            sustained_vehicles=50,
            connections=200,
            connection_workers=2,
            storm_window_s=1.0,
            storm_settle_s=3.0,
            api_background_vehicles=20,
            api_concurrency=2,
            peer_vehicles=10,
            peer_measure_s=2.0,
            naive_drain_s=2.0,
            rules_vehicles=40,
            rules_interval_s=1.0,
            rules_count=20,
            scale_offered=200.0,
            quick=True,
        )


@dataclass
class ScenarioResult:
    scenario: str
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "status": self.status,
            "notes": self.notes,
            "config": self.config,
            "runs": self.runs,
        }


def _load_summary(result: LoadResult) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(result)
    return data


def _generator_health(result: LoadResult) -> dict[str, Any]:
    """Whether the load generator, not the system under test, could have been the limit."""
    busiest = max(result.worker_cpu_share) if result.worker_cpu_share else 0.0
    lag_p99 = result.loop_lag.get("p99_ms")
    return {
        "worker_cpu_share_max": busiest,
        "loop_lag_p99_ms": lag_p99,
        # A worker using most of a core, or waking up late, is at its limit.
        "saturated": busiest > 0.8 or (lag_p99 is not None and float(lag_p99) > 100.0),
    }


def _run(
    system: str, kind: str, plan: LoadPlan, sampler: Sampler | None, extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], LoadRun, LoadResult]:
    load_before = _loadavg()
    with LoadRun(plan) as run:
        result = run.join()
    window = (run.t0 + plan.measure_from, run.t0 + plan.measure_until)
    out: dict[str, Any] = {
        "system": system,
        "kind": kind,
        "throughput_msg_s": round(result.throughput_msg_s, 1),
        "latency_ms": result.latency,
        "server": sampler.window(*window) if sampler else None,
        "server_series": sampler.series(run.t0) if sampler else None,
        "generator": _generator_health(result),
        "load": _load_summary(result),
        # The machine's 1-minute load average before and after: other work on it skews every number.
        "machine_load": [load_before, _loadavg()],
        **(extra or {}),
    }
    return out, run, result


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _saturate_plan(scale: Scale, port: int, prefix: str, **kw: Any) -> LoadPlan:
    base: dict[str, Any] = {
        "port": port,
        "vehicles": scale.publishers,
        "workers": scale.workers,
        "mode": Mode.SATURATE,
        "inflight": scale.inflight,
        "ramp_s": scale.ramp_s,
        "warmup_s": scale.warmup_s,
        "measure_s": scale.measure_s,
        "prefix": prefix,
    }
    base.update(kw)
    return LoadPlan(**base)


def _sustained_plan(scale: Scale, port: int, prefix: str) -> LoadPlan:
    vehicles = scale.sustained_vehicles
    return LoadPlan(
        port=port,
        vehicles=vehicles,
        workers=scale.workers,
        mode=Mode.RATE,
        interval_s=scale.sustained_interval_s,
        inflight=4,
        ramp_s=max(scale.ramp_s, vehicles / 1_000),
        warmup_s=scale.warmup_s + scale.sustained_interval_s,
        measure_s=scale.measure_s,
        # A tenth of the fleet goes through a tunnel once and backfills on return.
        offline_fraction=0.1,
        offline_s=(2.0, max(3.0, scale.measure_s / 3)),
        prefix=prefix,
    )


def rules_wired() -> bool:
    """Whether this checkout's hub runs a rules engine that reads `rules.file`."""
    hub = (REPO / "fleethub" / "hub.py").read_text()
    return (REPO / "rules" / "engine.py").exists() and "rules_engine(" in hub


def write_rules(path: Path) -> Path:
    """Twenty alert rules over the simulated telemetry: speed bands, low battery, heading sectors."""
    rules = []
    for i, limit in enumerate(range(20, 70, 5)):
        rules.append((f"speed-over-{limit}", f"speed > {limit}", "warning" if i < 5 else "major"))
    for limit in (10, 20, 30, 40, 50):
        rules.append((f"soc-under-{limit}", f"soc < {limit}", "critical" if limit <= 20 else "minor"))
    for limit in (300, 310, 320, 330, 340):
        rules.append((f"heading-over-{limit}", f"heading > {limit}", "info"))
    text = "".join(
        f'[rules.{name}]\nwhen = "{when}"\nseverity = "{severity}"\nmessage = "{name}"\n\n'
        for name, when, severity in rules
    )
    path.write_text(text)
    return path


# Rule templates over what the simulated vehicles report, with thresholds a fleet would
# set: they hold rarely, so the runs measure evaluation, not a storm of alert writes.
_RULE_TEMPLATES = (
    "speed > {fast}",
    "soc < {low} and not charging",
    'speed > {fast} and inside("zone-{z}")',
    'left("zone-{z}") and speed > 5',
    'no_data_for("gps") > {minutes}m',
    "odometer_km > {km} and changed(ignition)",
    "abs(heading - 180) < {sector} and speed > {fast}",
    "doors.locked == false and speed > 10",
    "delta(soc) < -{drop}",
    "heading > {sector2} and speed > {fast}",
)


def write_many_rules(path: Path, count: int, seed: int = 1) -> Path:
    """`count` rules from `_RULE_TEMPLATES` and five zones inside Mexico City, as a rules file."""
    rng = random.Random(seed)
    parts = []
    for i in range(count):
        when = _RULE_TEMPLATES[i % len(_RULE_TEMPLATES)].format(
            fast=rng.randint(90, 130),
            low=rng.randint(3, 10),
            z=(i // len(_RULE_TEMPLATES)) % 5,
            minutes=rng.randint(2, 30),
            km=rng.randint(300_000, 900_000),
            sector=rng.randint(5, 30),
            drop=rng.randint(2, 5),
            sector2=rng.randint(200, 350),
        )
        parts.append(f'[rules.rule-{i:03d}]\nwhen = \'{when}\'\nseverity = "warning"\nmessage = "rule {i}"\n\n')
    for z in range(5):
        lat, lon = 19.30 + 0.05 * z, -99.20 + 0.05 * z
        parts.append(f'[zones.zone-{z}]\nkind = "circle"\nlat = {lat:.4f}\nlon = {lon:.4f}\nradius_m = 4000\n\n')
    path.write_text("".join(parts))
    return path


# -- (2) ceiling and (1) ingest ---------------------------------------------------------


def ceiling(scale: Scale) -> ScenarioResult:
    res = ScenarioResult("ceiling", config={"publishers": scale.publishers, "inflight": scale.inflight})
    res.notes.append("bare amqtt 0.12.1 with one plugin that only counts messages; PUBACK on receipt, nothing stored")
    with procs.amqtt_broker("noop") as (server, port), Sampler(server.pid) as sampler:
        run, _, _ = _run("amqtt-bare", "saturate", _saturate_plan(scale, port, "ceil-"), sampler)
        res.runs.append(run)
    return res


def ingest(scale: Scale, tmp: Path) -> ScenarioResult:
    res = ScenarioResult(
        "ingest",
        config={
            "publishers": scale.publishers,
            "inflight": scale.inflight,
            "sustained_vehicles": scale.sustained_vehicles,
            "sustained_interval_s": scale.sustained_interval_s,
        },
    )
    rules_file = write_rules(tmp / "rules.toml") if rules_wired() else None
    hub_env = {"FLEETHUB_RULES_FILE": str(rules_file)} if rules_file else {}
    if rules_file:
        res.notes.append(
            "every fleethub run loads 20 rules (speed bands, low battery, heading sectors) that raise and clear "
            "alerts as the vehicles move, on SQLite and on PostgreSQL alike"
        )
    else:
        res.notes.append("the hub has no rules engine in this checkout: ran without rules")
    res.notes.append(
        "latency is publish to PUBACK: fleethub acknowledges QoS 1 only after the twin change and history row "
        "are committed, and the twin is readable in memory before that, so it bounds publish-to-twin-visible"
    )
    backends: list[tuple[str, Any]] = [("sqlite", None)]
    why_not_pg = procs.postgres_available()
    if why_not_pg:
        res.notes.append(f"PostgreSQL skipped: {why_not_pg}")
    else:
        backends.append(("postgresql", "pg"))
    for backend, _ in backends:
        for kind in ("saturate", "sustained"):
            env = hub_env
            with _database(backend, tmp, f"ingest_{kind}") as url, procs.fleethub(url, extra_env=env) as hub:
                server, port, _http = hub
                with Sampler(server.pid) as sampler:
                    if kind == "saturate":
                        plan = _saturate_plan(scale, port, f"ing-{backend[:2]}-")
                    else:
                        plan = _sustained_plan(scale, port, f"sus-{backend[:2]}-")
                    extra = {"store": backend, "rules": 20 if rules_file else 0}
                    run, _, _ = _run(f"fleethub-{backend}", kind, plan, sampler, extra)
                res.runs.append(run)
    # MQTT 5 vehicles sending a topic alias instead of the topic after their first message.
    with _database("sqlite", tmp, "ingest_v5") as url, procs.fleethub(url, extra_env=hub_env) as hub:
        server, port, _http = hub
        with Sampler(server.pid) as sampler:
            plan = _saturate_plan(scale, port, "v5-sq-", mqtt5=True, topic_alias=True)
            extra = {"store": "sqlite", "rules": 20 if rules_file else 0, "mqtt": "5, topic aliases"}
            run, _, _ = _run("fleethub-sqlite-mqtt5", "saturate", plan, sampler, extra)
        res.runs.append(run)
    if rules_file:
        res.runs.append(_alert_latency(scale, tmp, hub_env))
    return res


def _alert_latency(scale: Scale, tmp: Path, hub_env: dict[str, str]) -> dict[str, Any]:
    """1,000 msg/s with 20 rules; an MQTT subscriber on alerts/# times each raised alert."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from kernel import parse_time

    hist = Histogram()
    counts = {"raised": 0, "other": 0}

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        now = time.time()
        try:
            body = msgspec.json.decode(msg.payload)
        except msgspec.DecodeError:
            return
        since = body.get("since") if isinstance(body, dict) else None
        if since is None or body.get("cleared_at") is not None or body.get("state") != "active":
            counts["other"] += 1
            return
        counts["raised"] += 1
        # `since` is the device time of the reading that made the condition true.
        hist.add(max(0.0, now - parse_time(since)))

    vehicles = scale.api_background_vehicles
    url = f"sqlite:///{tmp / f'alerts-{time.time_ns()}.db'}"
    with procs.fleethub(url, extra_env=hub_env) as (server, port, _http), Sampler(server.pid) as sampler:
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-alerts")
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("alerts/#", qos=1)
        sub.loop_start()
        try:
            plan = LoadPlan(
                port=port,
                vehicles=vehicles,
                workers=scale.workers,
                mode=Mode.RATE,
                interval_s=1.0,
                inflight=4,
                ramp_s=max(scale.ramp_s, vehicles / 1_000),
                warmup_s=scale.warmup_s + 1.0,
                measure_s=scale.measure_s,
                prefix="alr-",
            )
            run, _, _ = _run("fleethub-sqlite", "alerts", plan, sampler, {"store": "sqlite", "rules": 20})
        finally:
            sub.loop_stop()
            sub.disconnect()
    run["alerts_raised"] = counts["raised"]
    run["alert_events_other"] = counts["other"]
    run["alert_latency_ms"] = hist.summary_ms()
    run["alert_latency_note"] = "from the device time of the reading that raised the alert to its arrival on alerts/#"
    return run


class _Database:
    def __init__(self, backend: str, tmp: Path, label: str) -> None:
        self.backend, self.tmp, self.label = backend, tmp, label
        self._pg: Any = None

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            path = self.tmp / f"{self.label}-{time.time_ns()}.db"
            return f"sqlite:///{path}"
        self._pg = procs.postgres_database(self.label)
        url: str = self._pg.__enter__()
        return url

    def __exit__(self, *exc: object) -> None:
        if self._pg is not None:
            self._pg.__exit__(None, None, None)


def _database(backend: str, tmp: Path, label: str) -> _Database:
    return _Database(backend, tmp, label)


# -- (3) peer: amqtt's shadow plugin ----------------------------------------------------


def peer(scale: Scale, tmp: Path) -> ScenarioResult:
    res = ScenarioResult("peer", config={"vehicles": scale.peer_vehicles, "measure_s": scale.peer_measure_s})
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        res.status = "skipped"
        res.notes.append("SQLAlchemy is not installed: pip install -e '.[bench]'")
        return res
    res.notes.append(
        "amqtt.contrib.shadows.ShadowPlugin on SQLite (sqlite+aiosqlite), unchanged; shadow updates are QoS 1 "
        "PUBLISHes to $shadow/{vid}/telemetry/update. 'applied' counts shadow versions found in its database "
        "afterwards; the rest of the acknowledged updates were lost"
    )
    for kind, mode in (("persistent", Mode.SATURATE), ("reconnect-each", Mode.RECONNECT_EACH)):
        db_path = tmp / f"shadow-{kind}-{time.time_ns()}.db"
        url = f"sqlite+aiosqlite:///{db_path}"
        with procs.amqtt_broker("shadow", database_url=url) as (server, port), Sampler(server.pid) as sampler:
            plan = LoadPlan(
                port=port,
                vehicles=scale.peer_vehicles,
                workers=1,
                mode=mode,
                inflight=1,
                topic="$shadow/{vid}/telemetry/update",
                payload=Payload.SHADOW,
                ramp_s=scale.ramp_s,
                warmup_s=scale.warmup_s,
                measure_s=scale.peer_measure_s,
                prefix=f"sh{kind[0]}-",
            )
            run, load_run, result = _run("amqtt-shadow", kind, plan, sampler)
            # Let hook tasks still queued inside amqtt finish before counting.
            time.sleep(2.0)
            server.stop()
            counts = server.json_lines('"event"')
        applied, devices = _shadow_rows(db_path)
        final = counts[-1] if counts else {}
        # Updates/s the plugin really applied over the whole publishing time.
        publishing_s = plan.publish_until
        run.update(
            {
                "updates_sent": result.sent,
                "updates_acknowledged": result.acked,
                "updates_applied": applied,
                "devices_with_a_shadow": devices,
                "updates_lost": max(0, result.acked - applied),
                "hook_calls": final.get("received"),
                "plugin_errors": final.get("errors", {}),
                "applied_per_s": round(applied / publishing_s, 2),
                # What counts against fleethub: updates that reached the shadow store.
                "throughput_msg_s": round(applied / publishing_s, 2),
                "acknowledged_msg_s": run["throughput_msg_s"],
            }
        )
        res.runs.append(run)
        _ = load_run
    return res


def _shadow_rows(path: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT device_id) FROM shadows_shadow").fetchone()
    except sqlite3.Error:
        return 0, 0
    return int(row[0]), int(row[1])


# -- (4) naive: Mosquitto + a subscriber inserting into PostgreSQL ---------------------------


def naive(scale: Scale) -> ScenarioResult:
    res = ScenarioResult("naive", config={"publishers": scale.publishers, "inflight": scale.inflight})
    why_not = procs.postgres_available()
    if why_not or not Path(procs.MOSQUITTO).exists():
        res.status = "skipped"
        res.notes.append(why_not or "mosquitto is not installed: apt-get install mosquitto")
        return res
    res.notes.append(
        "Mosquitto (defaults, in memory) on a free port; one paho subscriber on vehicles/+/telemetry at QoS 1 "
        "inserting each message into PostgreSQL with autocommit. Throughput counts inserted rows; latency is "
        "publish to insert. Mosquitto acknowledges publishers before anything is stored"
    )
    with procs.postgres_database("naive") as url, procs.mosquitto() as (_mosq, port):
        sink = procs.Server("naive-sink", [_python(), "-m", "bench.naive_sink", "--port", str(port), "--dsn", url])
        try:
            sink.wait_for('"started"', timeout_s=30)
            with Sampler(sink.pid) as sampler:
                plan = _saturate_plan(scale, port, "naive-")
                run, load_run, result = _run("mosquitto+paho+postgresql", "saturate", plan, sampler)
            time.sleep(scale.naive_drain_s)
        finally:
            sink.stop()
        lines = sink.json_lines('"event"')
    start, end = load_run.t0 + plan.measure_from, load_run.t0 + plan.measure_until
    inserted_window = _count_between(lines, "inserted", start, end)
    final = lines[-1] if lines else {}
    latency = Histogram.from_dict(final.get("latency", {})).summary_ms()
    run.update(
        {
            "throughput_msg_s": round(inserted_window / plan.measure_s, 1),
            "broker_acknowledged_msg_s": round(result.throughput_msg_s, 1),
            "latency_ms": latency,
            "broker_ack_latency_ms": result.latency,
            "inserted_total": final.get("inserted"),
            "acknowledged_total": result.acked,
            "lost_after_ack": max(0, result.acked - int(final.get("inserted", 0))),
            "insert_errors": final.get("errors"),
            "server_note": "server CPU/RSS are the subscriber's (the broker is Mosquitto, in C)",
        }
    )
    res.runs.append(run)
    return res


def _count_between(lines: list[dict[str, Any]], key: str, start: float, end: float) -> int:
    """Counter growth between two times, interpolated from once-a-second samples."""

    def at(t: float) -> float:
        prev = None
        for line in lines:
            if line["t"] >= t:
                if prev is None:
                    return float(line[key])
                span = line["t"] - prev["t"]
                frac = (t - prev["t"]) / span if span else 1.0
                return float(prev[key] + (line[key] - prev[key]) * frac)
            prev = line
        return float(prev[key]) if prev else 0.0

    return round(at(end) - at(start))


def _python() -> str:
    import sys

    return sys.executable


# -- (5) connections --------------------------------------------------------------------


def connections(scale: Scale, tmp: Path) -> ScenarioResult:
    n = scale.connections
    workers = max(scale.connection_workers, math.ceil(n / 5_000))
    per_worker = math.ceil(n / workers)
    soft, hard = fd_limits()
    res = ScenarioResult(
        "connections",
        config={"connections": n, "workers": workers, "fd_soft_limit": soft, "fd_hard_limit": hard},
    )
    # The hub holds every connection in one process: it inherits our (raised) limit.
    try:
        hub_soft = ensure_fd_limit(n + 256)
    except Exception as exc:
        res.status = "failed"
        res.notes.append(str(exc))
        return res
    res.notes.append(
        f"open-file limit: soft {soft}, hard {hard}; the bench raises its soft limit to {hub_soft} before starting "
        f"the hub (which inherits it) and each of {workers} load workers raises its own for its ~{per_worker} sockets"
    )
    res.notes.append(
        "each vehicle reports every 30 s (so every connection has a twin); RSS per connection is the hub's RSS "
        "growth from before the ramp to after it, divided by the connections"
    )
    interval = 30.0
    ramp_s = max(scale.ramp_s, n / 800)
    plan = LoadPlan(
        port=0,
        vehicles=n,
        workers=workers,
        mode=Mode.RATE,
        interval_s=interval,
        inflight=2,
        ramp_s=ramp_s,
        connect_concurrency=64,
        connect_timeout_s=20.0,
        warmup_s=3.0,
        measure_s=max(3.0, scale.measure_s / 2),
        storm=True,
        storm_window_s=scale.storm_window_s,
        storm_settle_s=scale.storm_settle_s,
        prefix="conn-",
    )
    url = f"sqlite:///{tmp / f'connections-{time.time_ns()}.db'}"
    with procs.fleethub(url) as (server, port, _http), Sampler(server.pid, period_s=1.0) as sampler:
        time.sleep(1.0)
        before = sampler.now()
        plan = msgspec.structs.replace(plan, port=port)
        with LoadRun(plan) as load_run:
            ramped_at = load_run.wait_ramped(plan.ramp_s + plan.warmup_s + 60)
            time.sleep(2.0)
            after = sampler.now()
            result = load_run.join()
    if before is None or after is None:
        raise BenchError("could not read the hub's memory")
    connected = result.first_connects
    growth = after.rss - before.rss
    run = {
        "system": "fleethub-sqlite",
        "kind": "connections",
        "connections_target": n,
        "connections_reached": connected,
        "all_connected": ramped_at is not None,
        "ramp_s": result.ramp_s,
        "connect_rate_per_s": None if result.connect_rate_per_s is None else round(result.connect_rate_per_s, 1),
        "connect_failures": result.connect_failures,
        "connect_errors": result.connect_errors,
        "hub_rss_before_mib": round(before.rss / 2**20, 1),
        "hub_rss_after_mib": round(after.rss / 2**20, 1),
        "rss_per_connection_kib": round(growth / max(1, connected) / 1024, 1),
        "storm_dropped": result.storm_dropped,
        "storm_reconnected": result.storm_reconnected,
        "storm_s": None if result.storm_s is None else round(result.storm_s, 2),
        "storm_window_s": plan.storm_window_s,
        "throughput_msg_s": round(result.throughput_msg_s, 1),
        "latency_ms": result.latency,
        "server": sampler.window(load_run.t0, load_run.t0 + plan.end),
        "server_series": sampler.series(load_run.t0),
        "generator": _generator_health(result),
        "load": _load_summary(result),
    }
    res.runs.append(run)
    if ramped_at is None:
        res.notes.append(f"only {connected} of {n} vehicles connected within the ramp's time limit")
    return res


# -- (6) API under ingest load ----------------------------------------------------------


def api(scale: Scale, tmp: Path) -> ScenarioResult:
    res = ScenarioResult(
        "api",
        config={"background_vehicles": scale.api_background_vehicles, "concurrency": scale.api_concurrency},
    )
    try:
        import httpx
    except ImportError:
        res.status = "skipped"
        res.notes.append("httpx is not installed: pip install -e '.[bench]'")
        return res
    res.notes.append(
        f"{scale.api_concurrency} concurrent HTTP clients (httpx, keep-alive) alternate GET twin and a history "
        f"query (last 100 rows, 3 fields) of random vehicles while {scale.api_background_vehicles} vehicles report "
        "every second at QoS 1"
    )
    url = f"sqlite:///{tmp / f'api-{time.time_ns()}.db'}"
    vehicles = scale.api_background_vehicles
    with procs.fleethub(url) as (server, port, http_port), Sampler(server.pid) as sampler:
        plan = LoadPlan(
            port=port,
            vehicles=vehicles,
            workers=scale.workers,
            mode=Mode.RATE,
            interval_s=1.0,
            inflight=4,
            ramp_s=max(scale.ramp_s, vehicles / 1_000),
            warmup_s=scale.warmup_s + 1.0,
            measure_s=scale.measure_s,
            prefix="api-",
        )
        with LoadRun(plan) as load_run:
            start = load_run.t0 + plan.measure_from
            time.sleep(max(0.0, start - time.time()))
            ids = [plan.vehicle_id(i) for i in range(vehicles)]
            http = asyncio.run(
                _http_load(httpx, f"http://127.0.0.1:{http_port}", ids, scale.api_concurrency, plan.measure_s)
            )
            result = load_run.join()
        window = sampler.window(start, start + plan.measure_s)
        series = sampler.series(load_run.t0)
    for endpoint, stats in http.items():
        res.runs.append(
            {
                "system": "fleethub-sqlite",
                "kind": endpoint,
                "requests_per_s": stats["requests_per_s"],
                "errors": stats["errors"],
                "status_codes": stats["status_codes"],
                "latency_ms": stats["latency_ms"],
                "throughput_msg_s": round(result.throughput_msg_s, 1),
                "ingest_latency_ms": result.latency,
                "server": window,
                "server_series": series,
                "generator": _generator_health(result),
            }
        )
    return res


async def _http_load(
    httpx: Any, base: str, ids: list[str], concurrency: int, duration_s: float
) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {
        name: {"hist": Histogram(), "errors": 0, "codes": {}, "n": 0} for name in ("get_twin", "history")
    }
    rng = random.Random(7)
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: Any, turn: int) -> None:
        while time.monotonic() < deadline:
            vid = rng.choice(ids)
            if turn % 2 == 0:
                name, path = "get_twin", f"/api/v1/vehicles/{vid}/twin"
            else:
                name, path = "history", f"/api/v1/vehicles/{vid}/history?fields=soc,speed,gps&order=desc&limit=100"
            turn += 1
            entry = stats[name]
            started = time.perf_counter()
            try:
                resp = await client.get(path)
                code = str(resp.status_code)
                entry["codes"][code] = entry["codes"].get(code, 0) + 1
                if resp.status_code >= 500:
                    entry["errors"] += 1
            except httpx.HTTPError:
                entry["errors"] += 1
                continue
            entry["hist"].add(time.perf_counter() - started)
            entry["n"] += 1

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        await asyncio.gather(*(client_loop(client, i) for i in range(concurrency)))
    return {
        name: {
            "requests_per_s": round(entry["n"] / duration_s, 1),
            "errors": entry["errors"],
            "status_codes": entry["codes"],
            "latency_ms": entry["hist"].summary_ms(),
        }
        for name, entry in stats.items()
    }


# -- rule evaluation's share of ingest (issue "Rules engine", performance) --------------


def rules_cost(scale: Scale, tmp: Path) -> ScenarioResult:
    """The same fleet and rate through the hub without rules and with many; CPU per message of each."""
    n = scale.rules_vehicles
    workers = max(scale.connection_workers if not scale.quick else 1, math.ceil(n / 5_000))
    res = ScenarioResult(
        "rules",
        config={"vehicles": n, "interval_s": scale.rules_interval_s, "rules": scale.rules_count, "workers": workers},
    )
    try:
        ensure_fd_limit(n + 256)
    except Exception as exc:
        res.status = "failed"
        res.notes.append(str(exc))
        return res
    if not rules_wired():
        res.status = "skipped"
        res.notes.append("the hub has no rules engine in this checkout")
        return res
    rules_file = write_many_rules(tmp / "many-rules.toml", scale.rules_count)
    res.notes.append(
        f"{n:,} vehicles (one twin each; the open-file limit keeps one hub below 20,000 sockets) report every "
        f"{scale.rules_interval_s:g} s at QoS 1 through the whole hub, once without rules and once with "
        f"{scale.rules_count} (speed and battery thresholds, zones, no_data_for, changed, delta); the hub's CPU "
        "seconds per acknowledged message are compared"
    )
    for count in (0, scale.rules_count):
        env = {"FLEETHUB_RULES_FILE": str(rules_file)} if count else {}
        url = f"sqlite:///{tmp / f'rules-{count}-{time.time_ns()}.db'}"
        with procs.fleethub(url, extra_env=env) as (server, port, _http), Sampler(server.pid) as sampler:
            plan = LoadPlan(
                port=port,
                vehicles=n,
                workers=workers,
                mode=Mode.RATE,
                interval_s=scale.rules_interval_s,
                inflight=2,
                ramp_s=max(scale.ramp_s, n / 800),
                connect_concurrency=64,
                connect_timeout_s=20.0,
                # The ramp leaves a backlog of first reports and twin creations: let it drain.
                warmup_s=scale.warmup_s + scale.rules_interval_s + (0 if scale.quick else 15),
                measure_s=scale.measure_s,
                prefix="rul-",
            )
            run, _, _ = _run("fleethub-sqlite", f"rules-{count}", plan, sampler, {"store": "sqlite", "rules": count})
        run["alerts"] = _count_rows(url, "alerts") if count else 0
        cpu = (run["server"] or {}).get("cpu_percent")
        rate = run["throughput_msg_s"]
        run["cpu_us_per_msg"] = round(cpu / 100.0 / rate * 1e6, 1) if cpu and rate else None
        res.runs.append(run)
    return res


def _count_rows(sqlite_url: str, table: str) -> int | None:
    try:
        with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return None


def make_tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="fleethub-bench-"))


def remove_tmp(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

"""Broker store benchmark: restoring the broker's state at start, and the cost of its group commits.

    .venv/bin/python -m bench.broker_store [--backend sqlite postgresql] [--sessions 10000]
        [--queued 100000] [--groups 1 10 100 1000] [--pg-url postgresql://...] [--out FILE.json]

1. Restore: fills a fresh database with --sessions persistent sessions (two subscriptions
   each) holding --queued QoS 1 messages between them (200-byte alert payloads, MQTT 5
   properties on every tenth), 1,000 retained messages and one in-flight message per
   session; then opens the database again, as a starting hub does, and times `load`.
2. Group commits: the changes of a QoS 1 alert fanned out to 100 offline sessions
   (Enqueue), then delivered (Dequeue + PutInflight, then AckInflight), committed in
   groups of 1, 10, 100 and 1,000 packets: changes per second and time per commit.
3. With --serve: `fleethub serve` started on the filled database and on an empty one,
   until it logs "hub started": the difference is what the restore adds to a start.

PostgreSQL runs in a schema of its own, dropped at the end. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from broker.stores import (
    AckInflight,
    BrokerStore,
    Change,
    Dequeue,
    Enqueue,
    Inflight,
    InflightState,
    Message,
    PutInflight,
    PutSession,
    Queued,
    QueueLimits,
    Retain,
    SessionRecord,
    Subscribe,
    Subscription,
    broker_store,
)
from kernel import Database, PostgresDatabase, SqliteDatabase

PAYLOAD = (b'{"id":"a-%08d","rule":"speed-over-90","vehicle":"veh-00042","severity":"major",' + b"x" * 120)[:200]
# Content type and one user property, encoded as the broker does (length first, as on the wire),
# so a database this fills can be served by a hub.
PROPS = b"!\x03\x00\x10application/json&\x00\x04site\x00\x05north"
NOW = time.time()
LIMITS = QueueLimits(max_messages=100_000, max_bytes=1 << 30)


@contextlib.asynccontextmanager
async def _database(backend: str, where: str) -> AsyncIterator[Database]:
    db: Database = SqliteDatabase(f"sqlite:///{where}") if backend == "sqlite" else PostgresDatabase(where)
    async with db:
        yield db


def _message(n: int) -> Message:
    return Message(
        topic=f"alerts/default/major/speed-over-90/veh-{n % 20_000:05d}",
        payload=PAYLOAD,
        qos=1,
        properties=PROPS if n % 10 == 0 else b"",
    )


async def _fill(store: BrokerStore, sessions: int, queued: int) -> float:
    started = time.perf_counter()
    batch: list[Change] = []
    seq = 0
    per_session = queued // sessions
    for s in range(sessions):
        client = f"dash-{s:06d}"
        batch += [
            PutSession(SessionRecord(client, 5, 86_400, NOW + 3600, f"user-{s % 50}", NOW)),
            Subscribe(client, Subscription(f"alerts/fleet-{s % 20}/#", 1)),
            Subscribe(client, Subscription("alerts/+/critical/#", 1, no_local=True, subscription_id=7)),
        ]
        for _ in range(per_session):
            seq += 1
            batch.append(Enqueue(client, Queued(seq, _message(seq))))
        seq += 1
        batch.append(PutInflight(client, Inflight(seq, 1, InflightState.PUBLISH_SENT, _message(seq))))
        if len(batch) >= 10_000:
            await store.apply(batch)
            batch = []
    batch += [Retain(Message(f"fleet/{r}/status", b'{"open":true}', 1, retain=True)) for r in range(1000)]
    await store.apply(batch)
    return time.perf_counter() - started


async def restore(backend: str, where: str, sessions: int, queued: int) -> dict[str, Any]:
    async with _database(backend, where) as db:
        fill_s = await _fill(broker_store(db, LIMITS), sessions, queued)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        async with _database(backend, where) as db:
            opened = time.perf_counter()
            snapshot = await broker_store(db, LIMITS).load(time.time())
            loaded = time.perf_counter()
        runs.append({"open_s": opened - started, "load_s": loaded - opened})
        assert len(snapshot.sessions) == sessions
        assert sum(len(s.queue) for s in snapshot.sessions) == sessions * (queued // sessions)
    best = min(runs, key=lambda r: r["load_s"])
    return {
        "sessions": sessions,
        "queued_messages": sessions * (queued // sessions),
        "retained": 1000,
        "fill_s": round(fill_s, 2),
        "open_s": round(best["open_s"], 3),
        "load_s": round(best["load_s"], 3),
        "load_s_runs": [round(r["load_s"], 3) for r in runs],
    }


async def group_commits(backend: str, where: str, groups: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    async with _database(backend, where) as db:
        store = broker_store(db, LIMITS)
        subscribers = [f"fan-{n:03d}" for n in range(100)]
        await store.apply([PutSession(SessionRecord(c, 4, 86_400, None)) for c in subscribers])
        seq = 10_000_000
        for group in groups:
            packets = max(200, group * 4)
            # Each packet: one alert queued for every subscriber, as if they were all offline.
            changes_done = 0
            times = []
            started = time.perf_counter()
            for start in range(0, packets, group):
                batch: list[Change] = []
                for _ in range(min(group, packets - start)):
                    seq += 1
                    sub = subscribers[seq % len(subscribers)]
                    message = _message(seq)
                    # A packet: queued, then sent (queue -> in flight), then acknowledged.
                    batch += [
                        Enqueue(sub, Queued(seq, message)),
                        Dequeue(sub, seq),
                        PutInflight(sub, Inflight(seq, seq % 65535 + 1, InflightState.PUBLISH_SENT, message)),
                        AckInflight(sub, seq % 65535 + 1),
                    ]
                t0 = time.perf_counter()
                await store.apply(batch)
                times.append(time.perf_counter() - t0)
                changes_done += len(batch)
            elapsed = time.perf_counter() - started
            rows.append(
                {
                    "packets_per_commit": group,
                    "changes_per_commit": group * 4,
                    "commits": len(times),
                    "changes_per_s": round(changes_done / elapsed),
                    "commit_ms_median": round(statistics.median(times) * 1000, 2),
                    "commit_ms_max": round(max(times) * 1000, 2),
                }
            )
    return rows


def _serve_start_s(database: str) -> float:
    """Seconds from starting `fleethub serve` on `database` until it logs "hub started"."""
    env = {
        **os.environ,
        "FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true",
        "FLEETHUB_AUTH_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }
    args = ["serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--database", database]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleethub", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "hub started" in line:
                return time.perf_counter() - started
        raise RuntimeError(f"fleethub serve exited with {proc.wait()} before it started")
    finally:
        proc.terminate()
        proc.wait(30)


def serve_start(filled: str, empty: str) -> dict[str, Any]:
    """`fleethub serve` start-up on the filled database and on an empty one: the difference is the restore."""
    runs = {
        "filled_s": [_serve_start_s(filled) for _ in range(2)],
        "empty_s": [_serve_start_s(empty) for _ in range(2)],
    }
    return {name: round(min(times), 2) for name, times in runs.items()} | {
        "restore_s": round(min(runs["filled_s"]) - min(runs["empty_s"]), 2)
    }


@contextlib.contextmanager
def _pg_schema(url: str) -> Any:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-c search_path={schema},public')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "scenario": "broker-store",
        "date": time.strftime("%Y-%m-%d"),
        # The load average says how much else the machine was doing: the numbers are only as quiet as it was.
        "machine": {
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "backends": {},
    }
    for backend in args.backend:
        with tempfile.TemporaryDirectory(prefix="fleethub-bench-") as tmp, contextlib.ExitStack() as stack:
            if backend == "sqlite":
                restore_where, commits_where = f"{tmp}/restore.db", f"{tmp}/commits.db"
            else:
                restore_where = stack.enter_context(_pg_schema(args.pg_url))
                commits_where = stack.enter_context(_pg_schema(args.pg_url))
            result["backends"][backend] = {
                "restore": await restore(backend, restore_where, args.sessions, args.queued),
                "group_commits": await group_commits(backend, commits_where, args.groups),
            }
            if args.serve:
                empty = f"{tmp}/empty.db" if backend == "sqlite" else stack.enter_context(_pg_schema(args.pg_url))
                async with _database(backend, empty):
                    pass
                url = (lambda where: f"sqlite:///{where}") if backend == "sqlite" else (lambda where: where)
                result["backends"][backend]["serve_start"] = serve_start(url(restore_where), url(empty))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 10, 100, 1000], help="packets per commit")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--serve", action="store_true", help="also time `fleethub serve` starting on the filled database"
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

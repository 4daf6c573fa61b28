"""What answering an external broker costs: logins, topic checks and the Mosquitto export.

    .venv/bin/python -m bench.broker_auth [--vehicles 200] [--seconds 5] [--concurrency 8]

Provisions vehicles (`fleethub vehicles import`), starts `fleethub serve` on SQLite with
`auth.broker_secret` set (logging every request at info, as by default), and over HTTP:

- EMQX logins of distinct vehicles (each an argon2 check), then the same again (answered
  from the verification cache, as in a reconnect storm);
- EMQX authorization checks and RabbitMQ topic checks, as many as `--concurrency`
  clients get answered in `--seconds`;
- `fleethub export mosquitto-auth` of all vehicles, a process of its own (checks every
  secret with argon2).

Prints rates and latency percentiles; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench import procs
from security import CLI, MemorySecurityStore, SecurityService

SECRET = "bench-" * 8


async def _timed(calls: list[Callable[[], Awaitable[object]]], concurrency: int) -> list[float]:
    latencies: list[float] = []
    pending = list(reversed(calls))

    async def worker() -> None:
        while pending:
            call = pending.pop()
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def _for(seconds: float, call: Callable[[], Awaitable[object]], concurrency: int) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _report(what: str, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{what:<44} {len(ordered) / elapsed:8.0f}/s   p50 {statistics.median(ordered) * 1000:6.1f} ms"
        f"   p99 {p99 * 1000:6.1f} ms   ({len(ordered)} requests)"
    )


def _fleethub(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "fleethub", *argv], check=True, capture_output=True)


async def _argon2_cpu_ms(rounds: int = 10) -> float:
    """CPU time of one vehicle login (one argon2 check), which a busy machine's wall clock would hide."""
    service = SecurityService(MemorySecurityStore(), verify_cache_s=0)
    made = await service.provision("car", "bench", actor=CLI)
    started = time.process_time()
    for _ in range(rounds):
        await service.login_vehicle("car", made.secret)
    return (time.process_time() - started) / rounds * 1000


async def run(vehicles: int, seconds: float, concurrency: int) -> None:
    print(f"{'one argon2 check (CPU time)':<44} {await _argon2_cpu_ms():8.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        source, secrets_csv = Path(tmp) / "vehicles.csv", Path(tmp) / "secrets.csv"
        source.write_text("vehicle_id\n" + "".join(f"car-{i:05d}\n" for i in range(vehicles)))
        _fleethub(
            "vehicles", "import", str(source), "--fleet", "bench", "--output", str(secrets_csv), "--database", url
        )
        with secrets_csv.open(newline="") as fh:
            secrets = {row["vehicle_id"]: row["secret"] for row in csv.DictReader(fh)}
        env = {
            "FLEETHUB_AUTH_BROKER_SECRET": SECRET,
            # One address logs everything in: the per-address and per-name limits would measure themselves.
            "FLEETHUB_ABUSE_CONNECT_RATE_PER_CLIENT_PER_S": "0",
        }
        with procs.fleethub(url, extra_env=env) as (_, _mqtt, http_port):
            base = f"http://127.0.0.1:{http_port}/broker-auth"
            limits = httpx.Limits(max_connections=concurrency)
            async with httpx.AsyncClient(base_url=base, auth=("broker", SECRET), limits=limits, timeout=60) as http:

                def login(vid: str, secret: str) -> Callable[[], Awaitable[object]]:
                    body = {"username": vid, "password": secret, "clientid": vid, "peerhost": "10.0.0.1"}
                    return lambda: http.post("/emqx/authn", json=body)

                calls = [login(vid, secret) for vid, secret in secrets.items()]
                for label in ("EMQX logins, argon2 each", "EMQX logins again, from the verify cache"):
                    started = time.perf_counter()
                    latencies = await _timed(calls, concurrency)
                    _report(label, latencies, time.perf_counter() - started)

                authz = {"username": "car-00000", "clientid": "car-00000", "action": "publish"}
                authz["topic"] = "vehicles/car-00000/telemetry"
                latencies = await _for(seconds, lambda: http.post("/emqx/authz", json=authz), concurrency)
                _report("EMQX authorization checks", latencies, seconds)

                topic = {
                    "username": "car-00000",
                    "vhost": "/",
                    "resource": "topic",
                    "name": "amq.topic",
                    "permission": "write",
                    "routing_key": "vehicles.car-00000.telemetry",
                    "variable_map.client_id": "car-00000",
                }
                latencies = await _for(seconds, lambda: http.post("/rabbitmq/topic", data=topic), concurrency)
                _report("RabbitMQ topic checks", latencies, seconds)

        started = time.perf_counter()
        out = str(Path(tmp) / "mosquitto")
        _fleethub("export", "mosquitto-auth", "--out", out, "--secrets", str(secrets_csv), "--database", url)
        elapsed = time.perf_counter() - started
        print(f"{'fleethub export mosquitto-auth (a process)':<44} {elapsed:8.2f} s for {vehicles} vehicles")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_auth", description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    asyncio.run(run(args.vehicles, args.seconds, args.concurrency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

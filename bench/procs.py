"""The processes under test: started on free ports, watched for CPU and memory, always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # the bench extra is not installed: read /proc instead
    psutil = None

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class BenchError(Exception):
    """A benchmark cannot run as set up; the message says what to fix."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A subprocess whose output is read line by line in the background."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.output.append(line)
                self.lines.put(line)

    def wait_for(self, needle: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if needle in line:
                return line
        tail = "".join(self.output[-20:])
        raise BenchError(f"{self.name} did not say {needle!r} within {timeout_s:.0f} s; its last output:\n{tail}")

    def json_lines(self, needle: str) -> list[dict[str, Any]]:
        out = []
        for line in list(self.output):
            if needle in line:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode


@dataclass
class Sample:
    t: float
    cpu_s: float
    rss: int


@dataclass
class Sampler:
    """Samples one process's CPU time and resident memory every `period_s`."""

    pid: int
    period_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name=f"sampler-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = read_process(self.pid)
            if sample is None:
                return
            self.samples.append(sample)
            self._stop.wait(self.period_s)

    def now(self) -> Sample | None:
        sample = read_process(self.pid)
        if sample is not None:
            self.samples.append(sample)
        return sample

    def window(self, start: float, end: float) -> dict[str, float | None]:
        """CPU use (share of one core) and RSS between two wall-clock times."""
        inside = [s for s in self.samples if start <= s.t <= end]
        if len(inside) < 2:
            return {"cpu_percent": None, "rss_mib": None, "rss_peak_mib": None}
        first, last = inside[0], inside[-1]
        cpu = (last.cpu_s - first.cpu_s) / (last.t - first.t) if last.t > first.t else None
        return {
            "cpu_percent": None if cpu is None else round(cpu * 100.0, 1),
            "rss_mib": round(last.rss / 2**20, 1),
            "rss_peak_mib": round(max(s.rss for s in inside) / 2**20, 1),
        }

    def series(self, t0: float) -> list[tuple[float, float, float]]:
        """(seconds since t0, CPU percent since the previous sample, RSS MiB) for charts."""
        out = []
        for prev, cur in zip(self.samples, self.samples[1:], strict=False):
            dt = cur.t - prev.t
            if dt > 0:
                out.append((round(cur.t - t0, 2), round((cur.cpu_s - prev.cpu_s) / dt * 100, 1), cur.rss / 2**20))
        return out


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_process(pid: int) -> Sample | None:
    """CPU seconds and RSS bytes of `pid`, via psutil when installed, else /proc."""
    try:
        if psutil is not None:
            proc = psutil.Process(pid)
            with proc.oneshot():
                times = proc.cpu_times()
                return Sample(time.time(), times.user + times.system, proc.memory_info().rss)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
        cpu = (int(stat[11]) + int(stat[12])) / _CLOCK_TICKS
        return Sample(time.time(), cpu, int(statm[1]) * _PAGE)
    except (OSError, IndexError, ValueError):
        return None
    except Exception as exc:  # psutil.NoSuchProcess and friends
        if psutil is not None and isinstance(exc, psutil.Error):
            return None
        raise


# -- the systems under test ----------------------------------------------------------


@contextlib.contextmanager
def fleethub(database_url: str, *, extra_env: dict[str, str] | None = None) -> Iterator[tuple[Server, int, int]]:
    """`fleethub serve` on free ports; yields the process and its MQTT and HTTP ports.

    In development mode (anonymous MQTT, no API tokens), like the peers it is compared with,
    and without the per-vehicle message rate and per-IP connect rate limits: every load
    worker connects from 127.0.0.1 and a saturating publisher sends far more than a
    vehicle does, so those limits would measure themselves, not the pipeline.
    """
    env = {
        "FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true",
        "FLEETHUB_AUTH_ENABLED": "false",
        "FLEETHUB_ABUSE_MESSAGE_RATE_PER_S": "0",
        "FLEETHUB_ABUSE_CONNECT_RATE_PER_IP_PER_S": "0",
        **(extra_env or {}),
    }
    server = Server(
        "fleethub",
        [
            sys.executable,
            "-m",
            "fleethub",
            "serve",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
            "--database",
            database_url,
            "--log-format",
            "json",
            "--log-level",
            "info",
        ],
        env=env,
    )
    try:
        started = json.loads(server.wait_for('"hub started"', timeout_s=60))
        yield server, int(started["mqtt_port"]), int(started["http_port"])
    finally:
        server.stop()


@contextlib.contextmanager
def amqtt_broker(plugin: str, *, database_url: str | None = None) -> Iterator[tuple[Server, int]]:
    """Bare amqtt (see `bench.amqtt_server`) with a no-op or the shadow plugin."""
    port = free_port()
    args = [sys.executable, "-m", "bench.amqtt_server", "--port", str(port), "--plugin", plugin]
    if database_url:
        args += ["--database", database_url]
    server = Server(f"amqtt-{plugin}", args)
    try:
        server.wait_for('"started"', timeout_s=60)
        yield server, port
    finally:
        server.stop()


@contextlib.contextmanager
def mosquitto() -> Iterator[tuple[Server, int]]:
    if not Path(MOSQUITTO).exists():
        raise BenchError("mosquitto is not installed: apt-get install mosquitto")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        # Defaults a team would keep: in-memory, anonymous on loopback, default queue limits.
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n")
        server = Server("mosquitto", [MOSQUITTO, "-c", str(conf)])
        try:
            _wait_port(port, server)
            yield server, port
        finally:
            server.stop()


def _wait_port(port: int, server: Server, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited: {''.join(server.output[-10:])}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise BenchError(f"{server.name} did not listen on port {port}")


def postgres_available() -> str | None:
    """None when PostgreSQL answers at BENCH_PG_DSN, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_DSN} ({type(exc).__name__}); set BENCH_PG_DSN"
    return None


@contextlib.contextmanager
def postgres_database(label: str) -> Iterator[str]:
    """A fresh database for one run, dropped afterwards; yields its URL."""
    import psycopg

    name = f"bench_{label}_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""A PostgreSQL server of a test's own, on an ephemeral port, that the test may stop, kill and restart.

The shared server (tests/postgres.py) must stay up for every other test; outage tests
run `initdb` once and then `postgres` themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.postgres import _as_cluster_owner, _binary, _free_port


class PgInstance:
    def __init__(self, root: Path, prefix: list[str], postgres: str, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.sockets = root / "run"
        self._prefix = prefix
        self._postgres = postgres
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_s: float = 30) -> None:
        args = [
            *self._prefix,
            self._postgres,
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ]
        # Its own process group: a kill takes the postmaster and every backend at once.
        with (self.root / "log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.url, connect_timeout=1):
                    return
            except psycopg.Error:
                time.sleep(0.05)
        raise AssertionError(f"postgres did not start: {(self.root / 'log').read_text()[-2000:]}")

    def stop(self) -> None:
        """A clean ("fast") shutdown: sessions are ended, the server checkpoints and exits."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """A crash: every server process gets SIGKILL; the next start recovers from the WAL."""
        self._signal(signal.SIGKILL, group=True)

    def _signal(self, sig: int, *, group: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if group:
            os.killpg(proc.pid, sig)
        else:
            # The postmaster itself (the process started may be `runuser` in front of it).
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(postmaster, sig)
        proc.wait(30)
        if group:
            # Backends of a killed postmaster may linger a moment; the next start needs them gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.2)


@pytest.fixture
def pg_instance() -> Iterator[PgInstance]:
    initdb, postgres = _binary("initdb"), _binary("postgres")
    if not (initdb and postgres):
        message = "no initdb/postgres binaries for a PostgreSQL of the test's own"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    prefix, user = _as_cluster_owner()
    root = Path(tempfile.mkdtemp(prefix="fleethub-pg-own-"))
    (root / "run").mkdir()
    shutil.chown(root, user)
    shutil.chown(root / "run", user)
    subprocess.run(
        [*prefix, initdb, "-D", str(root / "data"), "-U", "postgres", "-A", "trust"], check=True, capture_output=True
    )
    (root / "log").touch()
    shutil.chown(root / "log", user)
    instance = PgInstance(root, prefix, postgres, _free_port())
    instance.start()
    try:
        yield instance
    finally:
        instance.kill()
        shutil.rmtree(root, ignore_errors=True)

"""Run the `fleethub` CLI as a real subprocess and read what it says."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class HubProcess:
    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, module: str = "fleethub"
    ) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.output.append(line)
                self.lines.put(line)

    def exit_code(self, wait_s: float = 30) -> int:
        """Wait for the process to exit on its own; all its output is then in `text`."""
        code = self.proc.wait(wait_s)
        self._reader.join(5)
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, needle: str, wait_s: float = 30) -> str:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not seen; output:\n{''.join(self.output)}")

    def started(self) -> dict:
        """Wait for the JSON 'hub started' log line and return it (it names the bound ports)."""
        return json.loads(self.wait_for('"hub started"'))

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(wait_s)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def run_hub(tmp_path: Path) -> Iterator:
    started: list[HubProcess] = []

    def start(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, module: str = "fleethub"
    ) -> HubProcess:
        # In the test's own folder by default: a default path such as var/fleethub.db is then the
        # test's, never the checkout's shared with other workers.
        hub = HubProcess(list(args), env=env, cwd=cwd or tmp_path, module=module)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.kill()

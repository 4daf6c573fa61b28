"""`python -m firmware_sim` as a process: progress on stderr, a clean exit on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.firmware_sim.harness import Mosquitto

ROOT = Path(__file__).resolve().parents[3]


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while text not in path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"{text!r} did not appear on stderr:\n{path.read_text()}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_runs_until_signalled_and_exits_0(mosquitto: Mosquitto, tmp_path: Path, sig: signal.Signals) -> None:
    """The CLI connects its vehicles, prints progress lines, and exits 0 on SIGINT or SIGTERM."""
    stderr = tmp_path / "stderr.txt"
    argv = [
        sys.executable, "-m", "firmware_sim", "--vehicles", "3", "--interval", "0.2", "--port", str(mosquitto.port),
        "--prefix", f"c{uuid.uuid4().hex[:6]}-", "--ramp", "0.2", "--progress", "0.3", "--city", "singapore",
    ]  # fmt: skip
    with stderr.open("wb") as err:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait_for(stderr, "3/3 connected", process)
        process.send_signal(sig)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = stderr.read_text()
    assert " msg/s, 0 desired applied" in output
    assert "stopped: 0/3 connected" in output

"""A run leaves no process behind: the session-end check every worker makes on what its tests started.

Each test process (the only one, or each xdist worker) stamps its environment with a marker of its
own before any test runs; every program a test starts inherits it, including daemons that detach
(`pg_ctl start`, brokers started with `start_new_session`), which a parent/child walk would miss.
When the session's fixtures are torn down, processes still carrying the marker get a grace period to
exit, and the ones that do not are killed and reported as an error of the run.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

MARKER = "FLEETHUB_TEST_PROCESS_MARK"
GRACE_S = 10.0


def _stamp() -> str:
    mark = uuid.uuid4().hex
    os.environ[MARKER] = mark
    return mark


def _carrying(mark: str) -> list[psutil.Process]:
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER) == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {proc.pid}"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Set up first, torn down last: after every other session fixture has stopped what it started."""
    mark = _stamp()
    yield
    deadline = time.monotonic() + GRACE_S
    left = [p for p in _carrying(mark) if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if _alive(p)]
    if not left:
        return
    described = [_describe(p) for p in left]
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=5)
    pytest.fail("processes the tests started were still running at the end (now killed):\n" + "\n".join(described))

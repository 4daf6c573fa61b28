"""`python -m bench.broker_store` runs end to end on small numbers and reports what it restored."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_the_broker_store_benchmark_runs_on_sqlite(tmp_path) -> None:
    """A small run restores every session and message it wrote and times each group size."""
    out = tmp_path / "result.json"
    args = ["--backend", "sqlite", "--sessions", "20", "--queued", "200", "--groups", "1", "10", "--out", str(out)]
    subprocess.run([sys.executable, "-m", "bench.broker_store", *args], check=True, capture_output=True, timeout=120)
    result = json.loads(out.read_text())["backends"]["sqlite"]
    assert (result["restore"]["sessions"], result["restore"]["queued_messages"]) == (20, 200)
    assert result["restore"]["load_s"] > 0
    assert [row["packets_per_commit"] for row in result["group_commits"]] == [1, 10]
    assert all(row["changes_per_s"] > 0 for row in result["group_commits"])

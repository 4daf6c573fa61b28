"""`python -m bench --quick` keeps working: every scenario leaves a result file with the expected keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# `scale` (several processes behind Mosquitto) is left to tests/e2e/test_scale.py: its start-up alone takes minutes.
SCENARIOS = ("ceiling", "ingest", "peer", "naive", "api", "connections", "rules")


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_quick_bench_writes_results_summary_and_charts(tmp_path: Path) -> None:
    """A quick run writes one JSON file per scenario, SUMMARY.md and, with matplotlib, the charts."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", *SCENARIOS, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for scenario in SCENARIOS:
        files = list(out.glob(f"*-{scenario}.json"))
        assert len(files) == 1, f"no result file for {scenario}: {sorted(p.name for p in out.iterdir())}"
        doc = json.loads(files[0].read_text())
        assert {"scenario", "status", "notes", "config", "runs", "machine", "date", "quick"} <= doc.keys()
        assert doc["scenario"] == scenario
        assert doc["quick"] is True
        assert doc["status"] in ("ok", "skipped")
        if doc["status"] == "ok":
            assert doc["runs"], scenario
            for run in doc["runs"]:
                assert {"system", "kind", "throughput_msg_s"} <= run.keys()
    summary = (out / "SUMMARY.md").read_text()
    assert "| scenario | system |" in summary
    assert "## Aims" in summary
    rules = json.loads(next(out.glob("*-rules.json")).read_text())
    if rules["status"] == "ok":
        # One run without rules and one with them, each with the hub's CPU per message.
        assert sorted(run["rules"] for run in rules["runs"]) == [0, 20]
        assert all(run["cpu_us_per_msg"] is not None for run in rules["runs"])
        assert "## What rules add to a message" in summary
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "throughput.png").stat().st_size > 0
    assert (out / "latency.png").stat().st_size > 0

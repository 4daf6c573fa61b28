"""The operations kit (ops/): the dashboard and alerting rules use only metrics a running hub exposes,
the rules pass promtool, and the systemd unit passes systemd-analyze."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import need_program

pytestmark = pytest.mark.e2e

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "grafana" / "fleethub-dashboard.json"
RULES = OPS / "prometheus" / "fleethub-alerts.yml"
UNIT = OPS / "systemd" / "fleethub.service"

_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def _exposed_series(text: str) -> set[str]:
    """Every series name the text format can carry, from its TYPE lines (a labelled metric with no sample yet too)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        names.update(f"{name}{suffix}" for suffix in _SUFFIXES.get(kind, ()))
    return names


def _used(text: str) -> set[str]:
    return set(re.findall(r"\bfleethub_[a-z0-9_]+", text))


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"]
    assert dashboard["title"] == "fleethub"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    return exprs


def _scrape(args: list[str], tmp: Path, env: dict[str, str] | None = None) -> set[str]:
    """Start the hub with `args`, wait until it has ingested and committed, and read /metrics."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleethub", *args, "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0",
         "--log-format", "json", "--database", f"sqlite:///{tmp}/hub.db"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "FLEETHUB_AUTH_PUBLIC_METRICS": "true", **(env or {})},
    )  # fmt: skip
    try:
        base = None
        for line in proc.stdout:
            found = re.search(r'"http_port":\s*(\d+)', line)
            if found:
                base = f"http://127.0.0.1:{found[1]}"
                break
        assert base, "the hub did not start"
        with httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(120):
                text = http.get("/metrics").text
                if args[0] == "serve" or re.search(
                    r"^fleethub_ingest_messages_accepted_total [1-9]", text, re.MULTILINE
                ):
                    break
                time.sleep(0.25)
            else:
                pytest.fail("the demo accepted no telemetry")
        return _exposed_series(text)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> set[str]:
    """/metrics of `fleethub demo` (simulated vehicles reporting), and of a secure `serve` with the endpoints
    for an external broker (EMQX, RabbitMQ), which add metrics of their own."""
    demo = _scrape(["demo", "--vehicles", "3", "--interval", "0.5"], tmp_path_factory.mktemp("demo"))
    secret = {"FLEETHUB_AUTH_BROKER_SECRET": "ops-kit-test-" * 3}
    serve = _scrape(["serve"], tmp_path_factory.mktemp("serve"), env=secret)
    assert "fleethub_ingest_commit_seconds_bucket" in demo
    return demo | serve


def test_every_metric_of_the_dashboard_is_exposed_by_a_running_hub(exposed: set[str]) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    used = set().union(*(_used(e) for e in exprs))
    assert "fleethub_ingest_commit_seconds_bucket" in used
    assert used - exposed == set()


def test_every_metric_of_the_alerting_rules_is_exposed_by_a_running_hub(exposed: set[str]) -> None:
    used = _used(RULES.read_text(encoding="utf-8"))
    assert "fleethub_ingest_queue_depth" in used
    assert used - exposed == set()


def test_a_misspelt_metric_would_be_caught(exposed: set[str]) -> None:
    """The positive control for the two checks above."""
    assert _used("rate(fleethub_ingest_messages_acepted_total[1m])") - exposed == {
        "fleethub_ingest_messages_acepted_total"
    }


def test_promtool_checks_and_tests_the_alerting_rules() -> None:
    promtool = need_program("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "fleethub-alerts.test.yml"],
        capture_output=True, text=True, check=False, cwd=RULES.parent,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the unit is checked where systemd is)")
    # verify wants ExecStart's program to exist: point it at one that does, the rest unchanged.
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/fleethub/bin/fleethub serve" in text
    unit = tmp_path / "fleethub.service"
    unit.write_text(text.replace("/opt/fleethub/bin/fleethub", sys.executable))
    verified = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stderr.strip() == ""
    # Exposure on systemd's 0-10 scale; --threshold is in tenths: at most 2.0 ("OK").
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(unit)], capture_output=True, text=True, check=False
    )
    assert security.returncode == 0, security.stdout[-2000:]

"""A newcomer's path through the docs: demo, then a secure `serve` with a first admin and a simulated fleet."""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import need_program

pytestmark = pytest.mark.e2e


def _cli(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "fleethub", *args], capture_output=True, text=True, check=True, cwd=cwd, timeout=60
    )
    return done.stdout


async def _poll(check, wait_s: float = 30):
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_demo_keeps_its_own_database_and_starts_each_part_once(run_hub, tmp_path) -> None:
    """`demo` without --database writes var/demo.db, never var/fleethub.db; a taken port costs no second start."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        demo = run_hub(
            "demo", "--host", "127.0.0.1", "--mqtt-port", str(taken), "--http-port", "0", "--vehicles", "2",
            "--log-format", "json", cwd=tmp_path,
        )  # fmt: skip
        demo.wait_for(f"MQTT port {taken} is taken")
        example = demo.wait_for('"charge_limit"')
        demo.wait_for("Press Ctrl-C to stop")
        assert demo.stop() == 0
    # The simulator starts each vehicle at 80, 90 or 100: the example must change something.
    limit = int(re.search(r'"charge_limit": (\d+)', example).group(1))
    assert limit not in (80, 90, 100)
    assert 50 <= limit <= 100
    # The README's quick start shows the same change, and says what the vehicle then reports.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert set(re.findall(r'"charge_limit": ?(\d+)', readme)) <= {str(limit), "120"}
    assert f'"charge_limit":{limit}' in readme
    assert (tmp_path / "var" / "demo.db").is_file()
    assert not (tmp_path / "var" / "fleethub.db").exists()
    started = [e for e in _json_lines(demo.text) if e.get("event") == "command service started"]
    assert len(started) == 1, demo.text


async def test_a_newcomer_goes_from_the_demo_to_a_secure_serve_with_a_logged_in_simulated_fleet(
    run_hub, tmp_path
) -> None:
    """Follows docs/security.md: first admin, vehicles import, `fleethub sim --secrets`; no demo leftovers."""
    demo = run_hub(
        "demo", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--vehicles", "2", cwd=tmp_path
    )
    demo.wait_for("Press Ctrl-C to stop")
    assert demo.stop() == 0

    serve_args = ("serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json")
    first = run_hub(*serve_args, cwd=tmp_path)
    ports = first.started()
    hint = json.loads(first.wait_for("no users yet"))
    assert hint["create_admin"] == "fleethub users add admin --role admin --database sqlite:///var/fleethub.db"
    base = f"http://127.0.0.1:{ports['http_port']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/api/v1/vehicles")).status_code == 401
    assert first.stop() == 0

    # The command exactly as the hint prints it, from the directory the hub runs in.
    made = _cli(*hint["create_admin"].split()[1:], cwd=tmp_path)
    token = re.search(r"API token: (\S+)", made).group(1)
    (tmp_path / "vehicles.csv").write_text("vehicle_id,depot\ncar-1,north\ncar-2,south\ncar-3,north\n")
    _cli("vehicles", "import", "vehicles.csv", "--fleet", "acme", "--output", "secrets.csv", cwd=tmp_path)

    hub = run_hub(*serve_args, cwd=tmp_path)
    ports = hub.started()
    sim = run_hub(
        "sim", "--secrets", "secrets.csv", "--host", "127.0.0.1", "--port", str(ports["mqtt_port"]),
        "--interval", "0.5", "--ramp", "0.2", "--progress", "1", cwd=tmp_path,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=10) as http:

        async def three_reporting():
            page = (await http.get("/api/v1/vehicles", params={"connected": "true"}, headers=headers)).json()
            ids = sorted(v["vehicle_id"] for v in page["items"])
            assert ids == ["car-1", "car-2", "car-3"]
            twin = (await http.get("/api/v1/vehicles/car-1/twin", headers=headers)).json()
            assert "soc" in twin["reported"]
            return twin

        twin = await _poll(three_reporting)
        assert twin["fleet"] == "acme"
        assert twin["tags"] == {"depot": "north"}
        # Nothing of the demo came along: no demo vehicles, no demo rules.
        everyone = (await http.get("/api/v1/vehicles", headers=headers)).json()["items"]
        assert sorted(v["vehicle_id"] for v in everyone) == ["car-1", "car-2", "car-3"]
        assert (await http.get("/api/v1/rules", headers=headers)).json()["items"] == []
    assert sim.stop() == 0
    assert hub.stop() == 0
    assert "no users yet" not in hub.text


async def test_a_simulator_without_secrets_is_told_why_and_retries_slowly(run_hub, tmp_path) -> None:
    """Against a secure hub, `fleethub sim` without --secrets logs the refusal with a hint and does not hammer."""
    hub = run_hub(
        "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json",
        "--database", f"sqlite:///{tmp_path}/hub.db", env={"FLEETHUB_AUTH_PUBLIC_METRICS": "true"},
    )  # fmt: skip
    ports = hub.started()
    sim = run_hub(
        "sim", "--vehicles", "3", "--host", "127.0.0.1", "--port", str(ports["mqtt_port"]), "--ramp", "0",
        "--progress", "1", cwd=tmp_path,
    )  # fmt: skip
    refused = json.loads(sim.wait_for("refused vehicles' logins"))
    assert "--secrets" in refused["hint"]
    # Five progress lines (about five seconds) later each vehicle has tried once: the refusal back-off
    # starts at 15-30 s, where the connection back-off (1 s, doubling) would have tried three times each.
    for _ in range(5):
        sim.wait_for("connected")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=10) as http:
        text = (await http.get("/metrics")).text
    assert sim.stop() == 0
    assert hub.stop() == 0
    counts = re.findall(r"^fleethub_mqtt_(?:logins_refused|limit_violations)_total\{[^}]*\} (\S+)$", text, re.M)
    assert 3 <= sum(float(c) for c in counts) <= 5, counts


async def test_the_load_generator_logs_in_with_a_secrets_file(run_hub, tmp_path) -> None:
    """`python -m firmware_sim.load --secrets` drives a secure hub: every vehicle connects and is acknowledged."""
    db = f"sqlite:///{tmp_path}/hub.db"
    (tmp_path / "fleet.csv").write_text("vehicle_id\n" + "".join(f"load-{i}\n" for i in range(4)))
    _cli(
        "vehicles", "import", "fleet.csv", "--fleet", "bench", "--output", "secrets.csv", "--database", db, cwd=tmp_path
    )
    hub = run_hub(
        "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json", "--database", db
    )
    ports = hub.started()
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable, "-m", "firmware_sim.load", "--secrets", "secrets.csv", "--port", str(ports["mqtt_port"]),
            "--workers", "1", "--interval", "0.2", "--ramp", "0.2", "--warmup", "0.2", "--measure", "1",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert hub.stop() == 0
    assert result["first_connects"] == 4, result
    assert result["connect_failures"] == 0, result
    assert result["acked"] > 0, result


def _paho_example() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    return text.split("<!-- paho-example -->\n```python\n", 1)[1].split("```", 1)[0]


async def test_the_mqtt_login_examples_of_the_docs_work(run_hub, tmp_path) -> None:
    """mosquitto_pub with -i/-u/-P and the paho example log in and are stored; without -i it is refused."""
    mosquitto_pub = need_program("mosquitto_pub")
    db = f"sqlite:///{tmp_path}/hub.db"
    secrets = {}
    for vid in ("veh-0001", "veh-0002"):
        added = _cli("vehicles", "add", vid, "--fleet", "acme", "--database", db, cwd=tmp_path)
        secrets[vid] = re.search(r"MQTT password: (\S+)", added).group(1)
    token = re.search(
        r"API token: (\S+)", _cli("users", "add", "ann", "--role", "admin", "--database", db, cwd=tmp_path)
    )
    hub = run_hub(
        "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-format", "json", "--database", db
    )
    ports = hub.started()
    port = str(ports["mqtt_port"])

    def pub(*extra: str, payload: str) -> subprocess.CompletedProcess:
        args = [mosquitto_pub, "-h", "127.0.0.1", "-p", port, *extra, "-q", "1"]
        args += ["-t", "vehicles/veh-0001/telemetry", "-m", payload]
        return subprocess.run(args, check=False, capture_output=True, text=True, timeout=30)

    refused = pub("-u", "veh-0001", "-P", secrets["veh-0001"], payload='{"soc": 1}')
    assert refused.returncode != 0
    assert "not authori" in (refused.stderr + refused.stdout).lower()
    sent = pub("-i", "veh-0001", "-u", "veh-0001", "-P", secrets["veh-0001"], payload='{"soc": 64.5}')
    assert sent.returncode == 0, sent.stderr

    paho = (tmp_path / "paho_example.py").write_text(_paho_example().replace('"veh-0001"', '"veh-0002"'))
    assert paho > 0
    env = {
        **os.environ,
        "VEHICLE_SECRET": secrets["veh-0002"],
        "FLEETHUB_HOST": "127.0.0.1",
        "FLEETHUB_MQTT_PORT": port,
    }
    ran = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "paho_example.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=10, headers=headers
    ) as http:
        for vid in ("veh-0001", "veh-0002"):
            twin = (await http.get(f"/api/v1/vehicles/{vid}/twin")).json()
            assert twin["reported"]["soc"] == 64.5, (vid, twin)
    assert hub.stop() == 0
